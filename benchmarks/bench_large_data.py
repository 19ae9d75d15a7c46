"""Peak memory and time of `tfcompress compress` on large data: a 100 MB
character corpus (language model) and a 1 M-line labelled file (classifier).

Each run is a fresh `python -m tfcompress compress` process, as a user would
start it. Memory is sampled every 0.2 s over the process and every process it
starts (NLTK preprocessing workers, the TFLite converter): "peak, all" is the
largest sum seen, "peak, main" the main process's own high-water mark
(VmHWM). The baseline is the same run on a tenth of the data, in the same
script: memory should grow with the data by the corpus ids (4 bytes a
character) or the encoded texts, not by the training windows.

The data is made from ../shared/data, in a temporary folder: the corpus is
Tiny Shakespeare and Alice in Wonderland repeated to the size asked; the
labelled file is SST-2's training sentences repeated, the k-th copy of a
sentence with its (k mod length)-th word left out, so that lines differ and no
cache can answer for a copy. Neither makes a better model than the original
data: these runs measure memory and time, not accuracy.
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

from common import DATA, emit, parser, require_shared, table

LM_RECIPE = """\
name: big-corpus
data: {{task: language_model, corpus: {corpus}}}
model: {{build: {{embedding_dim: 24, units: 96, num_layers: 2, dropout: 0.0}}}}
steps:
  - train: {{epochs: 1, max_steps: {steps}}}
  - prune: {{epochs: 1, max_steps: {steps}}}
  - quantize: {{epochs: 1, max_steps: {steps}}}
  - export: {{modes: [dynamic]}}
"""


def make_corpus(path, megabytes):
    parts = [(DATA / "charlm" / name).read_text(encoding="utf-8") for name in ("tinyshakespeare.txt", "alice_in_wonderland_pg11.txt")]
    block = "\n".join(parts)
    want = megabytes * 1_000_000
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < want:
            piece = block[: want - written]
            f.write(piece)
            written += len(piece)
    return os.path.getsize(path)


def make_lines(path, count):
    lines = (DATA / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [line.split("\t") for line in lines[1:]]
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + "\n")
        for i in range(count):
            k, (sentence, label) = divmod(i, len(rows))[0], rows[i % len(rows)]
            words = sentence.split()
            if k and len(words) > 1:
                del words[k % len(words)]
            f.write(" ".join(words) + "\t" + label + "\n")
    return os.path.getsize(path)


def _tree_rss(root):
    """RSS bytes of `root` and its descendants, and root's VmHWM."""
    children = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(pid))
        except (OSError, IndexError, ValueError):
            continue
    total, hwm, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                    elif line.startswith("VmHWM:") and pid == root:
                        hwm = int(line.split()[1]) * 1024
        except OSError:
            continue
    return total, hwm


def run(cmd, cwd):
    """Runs `cmd`; returns (seconds, peak tree RSS, peak main RSS, output)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"tree": 0, "main": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            tree, hwm = _tree_rss(proc.pid)
            peak["tree"], peak["main"] = max(peak["tree"], tree), max(peak["main"], hwm)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = []
    for line in proc.stdout:
        stamp = f"{time.perf_counter() - start:7.1f}s {line.rstrip()}"
        lines.append(stamp)
        print(stamp, flush=True)
    proc.wait()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n" + "\n".join(lines[-40:]))
    return seconds, peak["tree"], peak["main"], lines


def phases(lines):
    """Seconds from the start to the end of data preparation and of each step."""
    marks = []
    for line in lines:
        seconds, text = line.split("s ", 1)
        if "] done" in text or text.lstrip().startswith("[data]"):
            marks.append(f"{text.strip().split(']')[0].lstrip('[')} {float(seconds):.0f}")
    return "; ".join(marks)


def main():
    p = parser(__doc__)
    p.add_argument("--megabytes", type=int, default=100, help="corpus size (default 100)")
    p.add_argument("--lines", type=int, default=1_000_000, help="labelled lines (default 1,000,000)")
    p.add_argument("--max-steps", type=int, default=300, help="training batches of each language-model step")
    args = p.parse_args()
    require_shared()
    if args.quick:
        args.megabytes, args.lines, args.max_steps = 10, 50_000, 20
    tfcompress = [sys.executable, "-m", "tfcompress", "compress"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for megabytes in (args.megabytes // 10, args.megabytes):
            corpus = tmp / f"corpus-{megabytes}.txt"
            size = make_corpus(corpus, megabytes)
            recipe = tmp / f"lm-{megabytes}.yaml"
            recipe.write_text(LM_RECIPE.format(corpus=corpus, steps=args.max_steps), encoding="utf-8")
            seconds, tree, main_rss, lines = run([*tfcompress, "--recipe", str(recipe), "--out", str(tmp / f"lm-{megabytes}")], tmp)
            corpus.unlink()
            rows.append([f"character corpus, {size / 1e6:.0f} MB (`--recipe`, {args.max_steps} batches a step)", f"{seconds:.0f}", f"{tree / 2**30:.2f}", f"{main_rss / 2**30:.2f}", phases(lines)])
            print(rows[-1], flush=True)
        for count in (args.lines // 10, args.lines):
            data = tmp / f"lines-{count}.tsv"
            size = make_lines(data, count)
            seconds, tree, main_rss, lines = run([*tfcompress, str(data), "--epochs", "1", "--out", str(tmp / f"cls-{count}")], tmp)
            data.unlink()
            rows.append([f"labelled file, {count:,} lines, {size / 1e6:.0f} MB (`--epochs 1`)", f"{seconds:.0f}", f"{tree / 2**30:.2f}", f"{main_rss / 2**30:.2f}", phases(lines)])
            print(rows[-1], flush=True)
    body = f"""
Fresh `python -m tfcompress compress` process per row (TensorFlow import included); memory sampled
every 0.2 s. Target: peak under 4 GiB. The smaller row of each pair is the baseline: the same run
on a tenth of the data. "Phases" are seconds from the start to the end of each part (`[data]` is
reading, preprocessing and encoding).

The language-model rows bound training with `max_steps` (a full epoch of a 100 MB corpus is 33 M
windows) and use the demo's model (2 × LSTM(96); the default 3 × LSTM(512) costs minutes per dev
evaluation on this CPU, whatever the corpus size). The classifier rows train one epoch per step
over every line (train, prune, quantize), then export and evaluate on the 10% dev split.

{table(["run", "seconds", "peak GiB, all processes", "peak GiB, main", "phases (s)"], rows)}

Before this change a language-model run built every training window as arrays and stored them:
for the 100 MB corpus (window 40, stride 3) that is 33 M × 41 int32, 5.4 GB, held in memory and
written through a second in-memory copy. Now it keeps the corpus ids (4 bytes a character) and
makes windows as they are read (`text.CharWindows`).
"""
    emit(args, "Large data: peak memory and time of `compress`", body)


if __name__ == "__main__":
    main()
