"""Wall-clock time of `tfcompress demo` and `tfcompress demo --quick`.

Each runs as a fresh process, as a user would run it (TensorFlow import
included). Targets (issue 8): default ≤ 5 minutes, --quick ≤ 60 seconds on
this 2-core machine.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from common import emit, parser, table


def main():
    args = parser(__doc__).parse_args()
    rows = []
    for quick, target in ((True, 60), (False, 300)):
        if args.quick and not quick:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "tfcompress", "demo", "--out", os.path.join(tmp, "demo")] + (["--quick"] if quick else [])
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            with open(os.path.join(tmp, "demo", "report.json")) as f:
                records = {r["step"]: r for r in json.load(f)["records"]}
        compressed = records["export compressed dynamic"]
        rows.append(
            [
                "tfcompress demo" + (" --quick" if quick else ""),
                f"{seconds:.0f}",
                f"≤ {target}",
                "yes" if seconds <= target else "**no**",
                f"{records['train']['value']:.2f} → {compressed['value']:.2f}",
                f"{records['train']['gzip_bytes'] / 1024:.0f} → {compressed['gzip_bytes'] / 1024:.0f}",
            ]
        )
        print(rows[-1], flush=True)
    body = f"""
Fresh process each, TensorFlow import included. Bits per character (dev) and gzip KiB: trained Keras
model → pruned + QAT model exported to TFLite (dynamic range).

{table(["command", "seconds", "target", "met", "bits/char", "gzip KiB"], rows)}
"""
    emit(args, "Demo run time (issue 8)", body)


if __name__ == "__main__":
    main()
