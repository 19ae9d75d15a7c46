"""Helpers shared by the benchmark scripts.

Every benchmark runs its baseline and its candidate in the same process, prints
the figures and their ratios, and (with `--markdown FILE`) writes a Markdown
section that `benchmarks/run_all.py` assembles into BENCHMARKS.md.
"""

import argparse
import os
import pathlib
import platform
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if (SHARED / "nltk_data").is_dir():
    os.environ.setdefault("NLTK_DATA", str(SHARED / "nltk_data"))


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--markdown", help="also write the results as a Markdown section to this file")
    p.add_argument("--quick", action="store_true", help="smaller run, for checking the script works")
    return p


def require_shared():
    if not (DATA / "sst2" / "train.tsv").exists():
        sys.exit(f"This benchmark needs ../shared/data beside the repository ({DATA} not found).")


def sst2(limit=None):
    """(train, dev) LabeledTexts from ../shared/data/sst2."""
    from tfcompress import text

    require_shared()
    train = text.load_texts(DATA / "sst2" / "train.tsv")
    dev = text.load_texts(DATA / "sst2" / "dev.tsv", label_names=train.label_names)
    if limit:
        train = text.LabeledTexts(train.texts[:limit], train.labels[:limit], train.label_names)
    return train, dev


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def mean_spread(values):
    """'0.842 ± 0.004' (mean ± standard deviation; ± half-range for n=2)."""
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    spread = statistics.stdev(values) if len(values) > 2 else (max(values) - min(values)) / 2
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def command_line():
    args = " ".join(sys.argv[1:])
    args = " ".join(a for a in args.split() if not a.startswith("--markdown") and not a.endswith(".md"))
    return f"python benchmarks/{pathlib.Path(sys.argv[0]).name} {args}".strip()


def emit(args, title, body):
    """Prints a section and writes it to --markdown if given."""
    section = f"## {title}\n\nCommand: `{command_line()}`\n\n{body.strip()}\n"
    print("\n" + section)
    if args.markdown:
        pathlib.Path(args.markdown).write_text(section, encoding="utf-8")


def machine():
    import importlib.metadata as md

    versions = []
    for name in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "nltk", "ai-edge-litert", "numpy"):
        try:
            versions.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": ", ".join(versions),
    }
