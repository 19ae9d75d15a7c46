"""Runs every benchmark and writes BENCHMARKS.md (machine, versions, commands, figures).

Usage: python benchmarks/run_all.py [--quick] [--only NAME ...]

Each benchmark runs in its own process (its baseline and candidate inside it)
and writes its Markdown section to benchmarks/results/NAME.md (each section is
stamped with the date, duration, machine and versions of its run); this script then assembles
every section there, in order, into BENCHMARKS.md. `--only NAME ...` re-runs
just those benchmarks and keeps the other sections as they were (each still
says when it was produced). It needs ../shared beside the repository (SST-2
and NLTK data).
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import REPO, machine, require_shared  # noqa: E402

BENCHMARKS = [
    "bench_text_throughput",
    "bench_sst2_preprocessing",
    "bench_pruning_qat",
    "bench_export",
    "bench_smaller",
    "bench_smaller_shrink",
    "bench_smaller_per_channel",
    "bench_faster",
    "probe_low_bits",
    "bench_auto_epochs",
    "bench_auto_epochs_floor",
    "bench_auto_epochs_norefit",
    "bench_auto_epochs_accuracy",
    "bench_auto_epochs_train",
    "bench_auto_epochs_train_4000",
    "bench_auto_epochs_train_one_se",
    "bench_auto_epochs_lm",
    "bench_sensitivity",
    "bench_budget_defaults",
    "bench_budget_rows_first",
    "bench_budget_rows",
    "probe_vocab_rows",
    "bench_budget_fine_foods",
    "bench_budget_fine_foods_auto",
    "bench_budget_fine_foods_teacher",
    "bench_budget_fine_foods_rows",
    "bench_budget_verified",
    "bench_budget_norefit25",
    "bench_budget_default5",
    "bench_budget_default5b",
    "probe_default_gap",
    "probe_epochs_for_compression",
    "probe_epoch_proxies",
    "probe_self_distill",
    "bench_budget_teacher2",
    "bench_budget_teacher",
    "bench_budget",
    "bench_budget_phrases",
    "bench_budget_margin0",
    "bench_budget_norefit",
    "bench_budget_refit",
    "bench_budget_unshrunk",
    "bench_budget_uniform",
    "bench_budget_split25",
    "bench_budget_dense_refit",
    "probe_selection",
    "bench_distillation",
    "bench_transfer",
    "bench_transfer_ensemble",
    "bench_your_models",
    "bench_acceleration",
    "bench_demo",
    "bench_large_data",
]

# Sections made by another benchmark's script with other arguments: name -> (script, arguments).
VARIANTS = {
    "bench_auto_epochs_floor": ("bench_auto_epochs", ["--min-epochs", "fixed", "--seeds", "3"]),
    "bench_auto_epochs_norefit": ("bench_auto_epochs", ["--refit", "no"]),
    "bench_auto_epochs_accuracy": ("bench_auto_epochs", ["--monitor", "accuracy", "--refit", "no"]),
    "bench_auto_epochs_train": ("bench_auto_epochs", ["--auto-steps", "train", "--min-epochs", "fixed", "--seeds", "3"]),
    "bench_auto_epochs_train_4000": ("bench_auto_epochs", ["--auto-steps", "train", "--min-epochs", "fixed", "--seeds", "3", "--train-sample", "4000"]),
    "bench_auto_epochs_train_one_se": ("bench_auto_epochs", ["--auto-steps", "train", "--min-epochs", "fixed", "--seeds", "3"]),
    "bench_auto_epochs_lm": ("bench_auto_epochs", ["--corpus", "alice", "--auto-steps", "train", "--min-epochs", "fixed", "--seeds", "2"]),
    "bench_smaller_shrink": ("bench_smaller", ["--rows", "shrink"]),
    "bench_smaller_per_channel": ("bench_smaller", ["--rows", "per_channel"]),
    "bench_budget_uniform": ("bench_budget", ["--rows", "0.5-uniform", "--seeds", "3"]),
    "bench_budget_split25": ("bench_budget", ["--rows", "0.5-25%-as-given", "--seeds", "3"]),
    "bench_budget_dense_refit": ("bench_budget", ["--rows", "0.5,0.5-25%", "--seeds", "3"]),
    "bench_budget_defaults": ("bench_budget", ["--rows", "default,0.5-25%,1.0-25%,tfidf", "--seeds", "3"]),
    "bench_budget_fine_foods": ("bench_budget", ["--data", "fine-foods", "--rows", "default,0.5-25%,1.0-25%,tfidf", "--seeds", "3"]),
    "bench_budget_fine_foods_auto": ("bench_budget", ["--data", "fine-foods", "--rows", "default-acc,0.5-25%-auto,1.0-25%-auto", "--seeds", "3"]),
    "bench_budget_fine_foods_teacher": ("bench_budget", ["--data", "fine-foods", "--rows", "0.5-25%,0.5-25%-teacher,1.0-25%-teacher", "--seeds", "3"]),
    "bench_budget_fine_foods_rows": ("bench_budget", ["--data", "fine-foods", "--rows", "0.5-25%-teacher-rows", "--seeds", "3"]),
    "bench_budget_verified": ("bench_budget", ["--rows", "0.5-25%-verified,1.0-25%-verified", "--seeds", "3"]),
    "bench_budget_norefit25": ("bench_budget", ["--rows", "0.5-25%-norefit", "--seeds", "3"]),
    "bench_budget_default5": ("bench_budget", ["--rows", "default", "--seeds", "5"]),
    "bench_budget_default5b": ("bench_budget", ["--rows", "default", "--seeds", "5", "--first-seed", "5"]),
    "probe_default_gap": ("probe_default_gap", ["--seeds", "0,1,7"]),
    "probe_epochs_for_compression": ("probe_epochs_for_compression", ["--seeds", "5"]),
    "probe_epoch_proxies": ("probe_epoch_proxies", ["--seeds", "5"]),
    "probe_vocab_rows": ("probe_vocab_rows", ["--seeds", "2"]),
    "bench_budget_rows": ("bench_budget", ["--rows", "0.5-25%-teacher-rows", "--seeds", "3"]),
    "bench_budget_rows_first": ("bench_budget", ["--rows", "0.5-25%-teacher-rows", "--seeds", "3"]),
    "bench_budget_teacher": ("bench_budget", ["--rows", "0.5-25%,0.5-25%-teacher", "--seeds", "3"]),
    "bench_budget_teacher2": ("bench_budget", ["--rows", "0.5-25%-teacher-uniform,1.0-25%-teacher", "--seeds", "3"]),
    "bench_budget_phrases": ("bench_budget", ["--rows", "0.5,1.0"]),
    "bench_budget_margin0": ("bench_budget", ["--rows", "0.5-margin0", "--seeds", "3"]),
    "bench_budget_norefit": ("bench_budget", ["--rows", "0.5-norefit,1.0-norefit", "--seeds", "3"]),
    "bench_budget_refit": ("bench_budget", ["--rows", "0.5,0.5-norefit", "--seeds", "3"]),
    "bench_budget_unshrunk": ("bench_budget", ["--rows", "0.5-unshrunk", "--seeds", "3"]),
    "bench_transfer_ensemble": ("bench_transfer", ["--seeds", "3", "--size", "3x", "--ensemble", "2", "--rows", "transfer,ensemble,updates"]),
}

RESULTS = HERE / "results"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small runs, to check the scripts (figures are not meaningful)")
    p.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these benchmarks, keep the other sections")
    p.add_argument("--output", help="default: BENCHMARKS.md (with --quick, a file in a temporary folder)")
    p.add_argument("--assemble", action="store_true", help="run nothing; re-assemble BENCHMARKS.md from benchmarks/results")
    args = p.parse_args()
    require_shared()
    m = machine()
    results = pathlib.Path(tempfile.mkdtemp()) if args.quick else RESULTS
    results.mkdir(exist_ok=True)
    failed = []
    for name in [] if args.assemble else (args.only or BENCHMARKS):
        out = results / f"{name}.md"
        script, extra = VARIANTS.get(name, (name, []))
        cmd = [sys.executable, str(HERE / f"{script}.py"), *extra, "--markdown", str(out)] + (["--quick"] if args.quick else [])
        print(f"== {name}", flush=True)
        before = out.stat().st_mtime_ns if out.exists() else None
        proc = subprocess.run(cmd, cwd=str(HERE), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        if proc.returncode != 0 or not out.exists() or out.stat().st_mtime_ns == before:
            failed.append(name)
            print(f"{name} failed (exit status {proc.returncode}); its previous section, if any, is kept", flush=True)
    sections = []
    for name in BENCHMARKS:
        path = results / f"{name}.md"
        if path.exists():
            sections.append(path.read_text(encoding="utf-8"))
        else:
            sections.append(f"## {name}\n\nNot run yet: `python benchmarks/run_all.py --only {name}`.\n")
    header = f"""# Benchmarks

Produced by `python benchmarks/run_all.py{' --quick' if args.quick else ''}`: every benchmark below, each in
its own process, each section stamped with the date and duration of its run (`--only NAME` re-runs one
and keeps the rest). Each benchmark runs its baseline and its candidate in the same process and reports ratios.

- Machines: 2-core VMs without a GPU. Each section's stamp names the CPU it ran on; sections may come
  from different machines of the same size (Intel Xeon, AMD EPYC), whose speeds differ (the same demo took
  174 s on one and 381 s on the other), so compare timings only within a section.
- Last assembled on: {m['cpu']}, {m['cores']} cores; Python {m['python']}; {m['versions']}
- Data: SST-2 (GLUE) train 67,349 phrases / dev 872 sentences, and Python's bundled documentation
  (`pydoc_data`) for the character model; see ../shared/data/SOURCES.md.

"""
    if args.quick:
        header += "**Quick mode: small slices of the data; the figures are not meaningful.**\n\n"
    text = header + "\n".join(sections)
    output = pathlib.Path(args.output or (results / "BENCHMARKS.md" if args.quick else REPO / "BENCHMARKS.md"))
    tmp = output.with_name(output.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, output)
    print(f"wrote {output}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
