"""Runs every benchmark and writes BENCHMARKS.md (machine, versions, commands, figures).

Usage: python benchmarks/run_all.py [--quick] [--only NAME ...]

Each benchmark runs in its own process (its baseline and candidate inside it)
and writes its Markdown section; this script assembles them in order. It needs
../shared beside the repository (SST-2 and NLTK data).
"""

import argparse
import datetime
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import REPO, machine, require_shared  # noqa: E402

BENCHMARKS = [
    "bench_text_throughput",
    "bench_sst2_preprocessing",
    "bench_pruning_qat",
    "bench_export",
    "bench_distillation",
    "bench_acceleration",
    "bench_demo",
]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small runs, to check the scripts (figures are not meaningful)")
    p.add_argument("--only", nargs="*", help="run only these benchmarks")
    p.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    args = p.parse_args()
    require_shared()
    names = args.only or BENCHMARKS
    sections = []
    timings = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            out = os.path.join(tmp, name + ".md")
            cmd = [sys.executable, str(HERE / f"{name}.py"), "--markdown", out] + (["--quick"] if args.quick else [])
            print(f"== {name}", flush=True)
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=str(HERE), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            timings.append((name, time.perf_counter() - start))
            if proc.returncode != 0 or not os.path.exists(out):
                sections.append(f"## {name}\n\n**Failed** (exit status {proc.returncode}); see its output.\n")
                continue
            with open(out, encoding="utf-8") as f:
                sections.append(f.read())
    m = machine()
    header = f"""# Benchmarks

Produced by `python benchmarks/run_all.py{' --quick' if args.quick else ''}` on {datetime.date.today().isoformat()}
(every benchmark below, each in its own process; total {sum(t for _, t in timings) / 60:.0f} minutes).
Each benchmark runs its baseline and its candidate in the same process and reports ratios.

- Machine: {m['cpu']}, {m['cores']} cores, no GPU; {m['platform']}
- Python {m['python']}; {m['versions']}
- Data: SST-2 (GLUE) train 67,349 phrases / dev 872 sentences, and Python's bundled documentation
  (`pydoc_data`) for the character model; see ../shared/data/SOURCES.md.

"""
    if args.quick:
        header += "**Quick mode: small slices of the data; the figures are not meaningful.**\n\n"
    text = header + "\n".join(sections)
    pathlib.Path(args.output).write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
