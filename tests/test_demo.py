"""`tfcompress demo --quick` runs end to end on built-in data and learns."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_quick_demo_runs_learns_and_writes_everything(tmp_path):
    env = dict(os.environ)
    env.pop("NLTK_DATA", None)  # the demo needs no NLTK data and no network
    proc = subprocess.run(
        [sys.executable, "-m", "tfcompress", "demo", "--quick", "--out", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "demo"
    for name in ("compressed.tflite", "compressed.json", "student.tflite", "vocab.txt", "report.json", "report.md", "report.png", "samples.txt"):
        assert (out / name).exists(), name
    for phrase in ("[6/6 export] done", "original (Keras, float32):", "compressed (TFLite):", "student (TFLite):", "bits/char"):
        assert phrase in proc.stdout
    records = {r["step"]: r for r in json.loads((out / "report.json").read_text())["records"]}
    unigram_bits = 4.6  # of the built-in corpus' characters
    assert records["train"]["value"] < unigram_bits - 0.5
    assert records["export compressed dynamic"]["value"] < unigram_bits - 0.5
    assert records["export compressed dynamic"]["gzip_bytes"] < records["train"]["gzip_bytes"] / 3
    assert records["prune 50%"]["nonzero"] < 0.55 * records["prune 50%"]["params"]
    assert not list(out.rglob("*.partial"))
