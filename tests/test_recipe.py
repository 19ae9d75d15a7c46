"""Recipes, the compress/evaluate/report commands, resumability, reports."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfcompress import cli
from tfcompress import recipe as recipe_mod
from tfcompress.recipe import Recipe, RecipeError
from tfcompress.report import Record, Report

WORDS_POS = ["good", "great", "fine", "lovely", "superb"]
WORDS_NEG = ["bad", "awful", "dull", "poor", "weak"]
FILLER = ["the", "film", "plot", "was", "a", "story", "and", "it"]


def write_dataset(path, n=600, seed=0, sep="\t"):
    rng = np.random.default_rng(seed)
    lines = [f"text{sep}label"]
    for _ in range(n):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(FILLER, size=6)) + [rng.choice(WORDS_POS if label else WORDS_NEG)]
        rng.shuffle(words)
        lines.append(" ".join(words) + sep + ("positive" if label else "negative"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def fit_shapes(fits):
    """A Keras callback that appends `(epochs, batches per epoch)` of every
    `fit` it joins to `fits`."""
    from tfcompress import keras

    class FitShapes(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            fits.append((self.params["epochs"], self.params["steps"]))

    return FitShapes()


def small_recipe(tmp_path, **overrides):
    write_dataset(tmp_path / "train.tsv")
    write_dataset(tmp_path / "dev.tsv", n=120, seed=1)
    config = {
        "name": "tiny",
        "seed": 3,
        "deterministic": False,
        "data": {"train": str(tmp_path / "train.tsv"), "dev": str(tmp_path / "dev.tsv")},
        "text": {"max_len": 12},
        "model": {"build": {"embedding_dim": 8, "units": 8, "dropout": 0.0}},
        "steps": [
            {"train": {"epochs": 3, "batch_size": 32}},
            {"prune": {"target_sparsity": 0.6, "epochs": 1, "batch_size": 32}},
            {"quantize": {"epochs": 1, "batch_size": 32}},
            {"export": {"modes": ["dynamic", "float32"], "latency_runs": 20}},
        ],
    }
    config.update(overrides)
    return config


# ------------------------------------------------------------------ validation


def _yaml(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "body,pattern",
    [
        ("data: {train: t.tsv}\nsteps: [train]\nlearning: 3\n", r"r.yaml, line 3, key 'learning': unknown key 'learning'. Fix: use one of: data, deterministic, model"),
        ("data: {train: t.tsv}\nsteps:\n  - train: {epochs: two}\n", r"line 3, key 'steps\[0\].train.epochs': 'two' is not valid here. Fix: give an integer >= 1"),
        ("data: {train: t.tsv}\nsteps:\n  - prune: {target_sparsity: 1.5}\n", r"key 'steps\[0\].prune.target_sparsity': 1.5 is not valid here. Fix: give a number in \[0, 1\)"),
        ("data: {train: t.tsv}\nsteps:\n  - squeeze: {}\n", r"unknown step 'squeeze'. Fix: use one of: train, sensitivity, auto, factorize, shrink, prune, cluster, quantize, distill, export"),
        ("data: {train: t.tsv}\nsteps: []\n", r"key 'steps': a recipe needs a non-empty list of steps"),
        ("data: {train: t.tsv}\nsteps: [quantize, prune]\n", r"pruning cannot follow quantize.*Fix: prune first"),
        ("data: {train: missing.tsv}\nsteps: [train]\n", r"key 'data.train': 'missing.tsv' does not exist"),
        ("data: {train: t.tsv}\nsteps:\n  - export: {modes: [int4]}\n", r"modes': \['int4'\] is not valid here. Fix: give a non-empty list of 'float32'"),
        ("data: {train: t.tsv}\nmodel: {build: {units: 8, heads: 2}}\nsteps: [train]\n", r"key 'model.build.heads': unknown model argument 'heads'"),
        ("data: {train: t.tsv}\ntext: {preprocessor: {tokenizer: spacy}}\nsteps: [train]\n", r"key 'text.preprocessor': TextPreprocessor\(tokenizer='spacy'\)"),
        # Two keys describe the same check (a mapping) in their own words: each keeps its own.
        ("data: {train: t.tsv}\ntext: {preprocessor: 5}\nsteps: [train]\n", r"key 'text.preprocessor': 5 is not valid here. Fix: give a mapping of TextPreprocessor arguments$"),
        ("data: {train: t.tsv}\nsteps:\n  - distill: {student: 5}\n", r"key 'steps\[0\].distill.student': 5 is not valid here. Fix: give a mapping of model builder arguments$"),
        ("data: {train: t.tsv}\nsteps:\n  - prune: {structure: '2:4', block_size: [1, 4]}\n", r"structure and block_size conflict"),
        ("data: {train: t.tsv}\nsteps:\n  - prune: {structure: '1:4', target_sparsity: 0.8}\n", r"structure '1:4' fixes the sparsity at 0.25.*Fix: drop target_sparsity"),
        ("data: {train: t.tsv\n", r"r.yaml, line \d+: invalid YAML"),
        ("data: {train: t.tsv}\nsteps: [export, {export: {name: model}}]\n", r"another export step already writes 'model'"),
        ("data: {train: t.tsv}\ntext: {tokenizer: tok.json}\nsteps: [train]\n", r"key 'text.tokenizer': 'tok.json' does not exist.*Fix: give the tokenizer's path"),
        ("data: {train: t.tsv}\ntext: {padding: post}\nsteps: [train]\n", r"key 'text.padding': text.padding says how a given tokenizer's ids were padded.*Fix: drop text.padding"),
        ("data: {train: t.tsv}\ntext: {truncating: middle}\nsteps: [train]\n", r"key 'text.truncating': 'middle' is not valid here. Fix: give one of None, 'pre', 'post'"),
        ("data: {train: t.tsv, labels: [pos]}\nsteps: [train]\n", r"key 'data.labels'.*two or more distinct label names"),
        ("data: {train: t.tsv}\nmodel: {load: m.keras, trust_code: yes please}\nsteps: [train]\n", r"key 'model.trust_code'"),
        ("data: {task: language_model, corpus: builtin}\ntext: {tokenizer: t.tsv}\nsteps: [train]\n", r"a tokenizer applies to classification recipes"),
    ],
)
def test_bad_recipes_are_refused_before_training_with_file_key_and_fix(tmp_path, body, pattern):
    (tmp_path / "t.tsv").write_text("text\tlabel\nok\t1\n")
    with pytest.raises(RecipeError, match=pattern):
        Recipe.load(_yaml(tmp_path, body))


def test_defaults_are_filled_and_json_is_read(tmp_path):
    (tmp_path / "t.tsv").write_text("text\tlabel\nok\t1\n")
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"data": {"train": "t.tsv"}, "steps": ["train", {"export": {}}]}))
    r = Recipe.load(path)
    assert r.steps == [
        ("train", {"epochs": 1, "patience": 2, "max_epochs": 20, "min_epochs": 1, "monitor": "loss", "choose": "one_se", "batch_size": 128, "learning_rate": None, "max_steps": None, "refit": True}),
        ("export", {"name": "model", "modes": ["dynamic"], "representative_samples": 300, "sparse": "auto", "latency_runs": 200, "recurrent": "auto", "verify_threshold": None}),
    ]
    assert r.config["precision"] == "float32" and r.config["text"]["max_size"] == 20000
    assert Recipe.from_dict(r.to_dict(), base_dir=str(tmp_path)).config == r.config
    with pytest.raises(RecipeError, match=r"<dict>: a recipe is a mapping"):
        Recipe.from_dict(["train"])


def test_classifier_build_and_student_accept_embedding_vocab_size(tmp_path):
    (tmp_path / "t.tsv").write_text("text\tlabel\nok\t1\n")
    student = {"embedding_dim": 8, "units": 8, "embedding_vocab_size": 50}
    r = Recipe.from_dict(
        {"data": {"train": "t.tsv"}, "model": {"build": dict(student)}, "steps": ["train", {"distill": {"student": student}}]},
        base_dir=str(tmp_path),
    )
    assert r.config["model"]["build"]["embedding_vocab_size"] == 50
    assert dict(r.steps)["distill"]["student"] == student


# ------------------------------------------------------------------ running


def test_python_api_runs_a_recipe_end_to_end(tmp_path):
    import matplotlib
    from tensorflow.python.framework import config as tf_config

    out = tmp_path / "out"
    logs = []
    backend, deterministic = matplotlib.get_backend(), tf_config.is_op_determinism_enabled()
    matplotlib.use("svg")  # the caller's choice, which the report's plot must leave alone
    try:
        report = recipe_mod.run(small_recipe(tmp_path), out, log=logs.append)
        assert (matplotlib.get_backend().lower(), tf_config.is_op_determinism_enabled()) == ("svg", deterministic)
    finally:
        matplotlib.use(backend)
    files = set(os.listdir(out))
    assert {"model.tflite", "model.json", "model-float32.tflite", "model-float32.json", "model.vocab.txt", "model.preprocessing.json", "model-float32.vocab.txt", "model-float32.preprocessing.json"} <= files
    assert {"report.json", "report.md", "report.png"} <= files
    steps = [r.step for r in report.records]
    assert steps == ["train", "prune 60%", "quantize (8-bit QAT)", "export model dynamic", "export model float32"]
    accuracy = {r.step: r.value for r in report.records}
    assert accuracy["train"] > 0.9  # the keywords decide the label
    assert accuracy["export model dynamic"] >= accuracy["quantize (8-bit QAT)"] - 0.05
    sparse = report.records[1]
    assert sparse.nonzero is not None and sparse.nonzero < 0.6 * sparse.params
    assert any("[4/4 export] done" in line for line in logs)
    meta = json.loads((out / "model.json").read_text())
    assert meta["labels"] == ["negative", "positive"]
    # A second run resumes every step from its checkpoint.
    again = recipe_mod.run(small_recipe(tmp_path), out, log=logs.append)
    assert [r.value for r in again.records] == [r.value for r in report.records]
    assert sum("resumed" in line for line in logs) == 5


def test_a_different_recipe_in_the_same_folder_is_refused(tmp_path):
    from tensorflow.python.framework import config as tf_config

    out = tmp_path / "out"
    config = small_recipe(tmp_path, deterministic=True, steps=[{"train": {"epochs": 1}}])
    before = tf_config.is_op_determinism_enabled()
    recipe_mod.run(config, out, log=lambda *_: None)
    assert tf_config.is_op_determinism_enabled() == before  # turned on for the run, then restored
    changed = small_recipe(tmp_path, deterministic=True, steps=[{"train": {"epochs": 2}}])
    with pytest.raises(RecipeError, match=r"holds a run of a different recipe.*restart"):
        recipe_mod.run(changed, out, log=lambda *_: None)
    recipe_mod.run(changed, out, log=lambda *_: None, restart=True)


def test_loaded_model_of_the_wrong_shape_is_refused(tmp_path):
    from tfcompress import keras

    inp = keras.Input((5,))
    keras.Model(inp, keras.layers.Dense(2)(inp)).save(tmp_path / "m.keras")
    config = small_recipe(tmp_path, model={"load": str(tmp_path / "m.keras")}, steps=[{"prune": {}}])
    with pytest.raises(RecipeError, match=r"model.load: the model takes input \(None, 5\) \(float32\).*Embedding"):
        recipe_mod.run(config, tmp_path / "out", log=lambda *_: None)


# ------------------------------------------------------------------ command line


def _cli(*args, cwd=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "tfcompress", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


@pytest.mark.slow
def test_compress_evaluate_and_report_commands(tmp_path, capsys):
    write_dataset(tmp_path / "train.csv", sep=",")
    write_dataset(tmp_path / "dev.csv", n=100, seed=2, sep=",")
    out = tmp_path / "out"
    proc = _cli("compress", tmp_path / "train.csv", "--dev", tmp_path / "dev.csv", "--out", out, "--epochs", "3", "--steps", "train,prune,export", "--max-len", "12")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[3/3 export] done" in proc.stdout
    assert "    epoch 3/3: loss " in proc.stdout and "val_accuracy" in proc.stdout  # not a terminal: one line per epoch
    assert "NodeDef mentions attribute" not in proc.stderr  # TF's tf.data determinism rewrite, avoided at the source
    assert (out / "model.tflite").exists() and (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    ev = _cli("evaluate", out / "model.tflite", tmp_path / "dev.csv", "--json", "--runs", "20")
    assert ev.returncode == 0, ev.stderr[-3000:]
    figures = json.loads(ev.stdout)
    exported = Report.load(out).records[-1]
    assert figures["examples"] == 100 and figures["accuracy"] == pytest.approx(exported.value)
    assert figures["accuracy"] > 0.6  # chance is 0.5; 80% pruning of a model trained on 600 texts
    # The rest in this process (each command above paid a TensorFlow start-up of its own).
    (out / "report.md").unlink()
    assert cli.main(["report", str(out)]) == 0
    assert (out / "report.md").exists() and "export model dynamic" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        cli.main(["compress", str(tmp_path / "train.csv"), "--steps", "train,squash", "--out", str(out)])
    assert bad.value.code == 2 and "unknown step(s) squash" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: {train: train.csv}\nsteps: [{train: {epochs: 0}}]\n")
    assert cli.main(["compress", "--recipe", str(broken), "--out", str(tmp_path / "o2")]) == 2
    assert "broken.yaml, line 2, key 'steps[0].train.epochs'" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()  # refused before anything ran


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A deterministic recipe run once without interruption: (recipe path, output folder)."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    config = small_recipe(tmp_path, deterministic=True)
    config["steps"][-1] = {"export": {"modes": ["dynamic", "float32"], "latency_runs": 0}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config))
    clean = _cli("compress", "--recipe", path, "--out", tmp_path / "clean", "--quiet")
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert clean.stdout == ""
    return path, tmp_path / "clean"


# One run killed again and again, each resume killed at the next point; the last resume finishes.
# (file to wait for, seconds after it): 0 kills at the step boundary, > 0 inside the next step. Each
# file appears only after the previous kill, so every kill lands where its name says.
KILL_POINTS = {
    "after data": (".run/00-data/done.json", 0.0),
    "inside prune": (".run/01-train/done.json", 1.5),  # after train resumed from the data checkpoint
    "inside quantize": (".run/02-prune/done.json", 1.0),  # after prune reran from its start
    # Resumes from quantize's checkpoint (the quantize -> export boundary) with the first file and its
    # JSON written and the float32 one being converted.
    "inside export": ("model.json", 0.0),
}


@pytest.mark.slow
def test_a_run_killed_at_every_point_resumes_to_the_same_outputs_and_leaves_no_partial_files(uninterrupted, tmp_path):
    path, clean = uninterrupted
    out = tmp_path / "killed"
    for point, (trigger, delay) in KILL_POINTS.items():
        proc = subprocess.Popen(
            [sys.executable, "-m", "tfcompress", "compress", "--recipe", str(path), "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 300
            while not (out / trigger).exists():
                assert proc.poll() is None and time.monotonic() < deadline, f"the run ended before the kill {point!r}"
                time.sleep(0.05)
            time.sleep(delay)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert not (out / "model-float32.tflite").exists(), point
    resumed = _cli("compress", "--recipe", path, "--out", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[data] resumed" in resumed.stdout and "quantize] resumed from its checkpoint" in resumed.stdout

    a, b = Report.load(clean), Report.load(out)
    assert [r.step for r in a.records] == [r.step for r in b.records]
    for ra, rb in zip(a.records, b.records):
        assert (ra.step, ra.value, ra.params, ra.nonzero) == (rb.step, rb.value, rb.params, rb.nonzero)
    for name in ("model.tflite", "model.json", "model-float32.tflite", "model-float32.json", "model.vocab.txt", "model.preprocessing.json", "model-float32.vocab.txt", "model-float32.preprocessing.json"):
        assert (clean / name).read_bytes() == (out / name).read_bytes(), name  # identical files
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".partial") or ".old-" in p.name]
    assert leftovers == [] and not (out / ".tfcompress-lock").exists()


# ------------------------------------------------------------------ report


def test_report_round_trip_markdown_plot_and_notebook_view(tmp_path):
    report = Report("demo", meta={"data": "x"})
    report.add(step="train", params=1000, bytes=4000, gzip_bytes=3600, metric="accuracy", value=0.83)
    report.add(Record("export dynamic", "tflite", None, 1000, 800, "accuracy", 0.829, True, 0.2, None, "model.tflite"))
    written = report.save(tmp_path)
    assert [os.path.basename(p) for p in written] == ["report.json", "report.md", "report.png"]
    again = Report.load(tmp_path)
    assert again.to_dict() == report.to_dict()
    md = (tmp_path / "report.md").read_text()
    assert "| export dynamic | tflite |" in md and "![size versus quality](report.png)" in md
    assert "report.png" not in report._repr_markdown_()
    assert "0.8290" in report.to_text()
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        Record.from_dict({"step": "x", "colour": 1})
    with pytest.raises(FileNotFoundError, match=r"no report.json here"):
        Report.load(tmp_path / "nowhere")


def test_report_plot_has_plain_kib_ticks_and_numbers_that_do_not_collide():
    report = Report("sentiment")
    rows = [("your model (as loaded)", "keras", 3715, 0.838), ("prune 80%", "keras", 905, 0.83), ("quantize (8-bit QAT)", "keras", 903, 0.829),
            ("export model dynamic", "tflite", 267, 0.820), ("export model float32", "tflite", 890, 0.829), ("export model int8", "tflite", 268, 0.8195)]
    for step, kind, kib, value in rows:
        report.add(step=step, kind=kind, bytes=int(kib * 1100), gzip_bytes=int(kib * 1024), metric="accuracy", value=value)
    fig = report.figure()
    fig.canvas.draw()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["200", "500", "1,000", "2,000", "5,000"]
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))  # no 3x10^1-style minor labels
    numbers = [t for t in ax.texts if t.get_text().isdigit()]
    assert [t.get_text() for t in numbers] == ["1", "2", "3", "4", "5", "6"]
    boxes = [t.get_window_extent() for t in numbers]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    key = "".join(t.get_text() for t in fig.texts)
    assert all(f"{n}  {step}" in key for n, (step, *_) in enumerate(rows, start=1))
