"""Large corpora: a language model's training windows are made as they are
read, from the corpus ids; only the ids are kept in memory and on disk."""

import collections
import json
import math

import numpy as np
import pytest

from tfcompress import recipe as recipe_mod
from tfcompress.recipe import RecipeError, context
from tfcompress.text import CharWindows, char_windows


def _rows(a):
    return sorted(map(tuple, np.asarray(a).tolist()))


def test_char_windows_made_on_reading_equal_the_arrays():
    ids = (np.arange(1000) * 7) % 37
    windows = CharWindows(ids, 10, 3)
    x, y = char_windows(ids, 10, 3)
    assert len(windows) == len(x) == 330 and windows.nbytes == 330 * 11 * 4
    tx, ty = windows.take(np.arange(len(windows)))
    assert np.array_equal(tx, x) and np.array_equal(ty, y)
    tx, ty = windows.take([5, 0, 329])
    assert np.array_equal(tx, x[[5, 0, 329]]) and np.array_equal(ty, y[[5, 0, 329]])
    with pytest.raises(IndexError, match=r"out of range \[0, 330\)"):
        windows.take([330])

    per_epoch = math.ceil(330 / 16)
    batches = list(windows.dataset(16, epochs=2, seed=5))
    assert len(batches) == 2 * per_epoch
    epochs = [np.concatenate([b[0].numpy() for b in part]) for part in (batches[:per_epoch], batches[per_epoch:])]
    targets = [np.concatenate([b[1].numpy() for b in part]) for part in (batches[:per_epoch], batches[per_epoch:])]
    for ex, ey in zip(epochs, targets):
        # every window exactly once per epoch, each with its own next character
        assert _rows(ex) == _rows(x)
        assert _rows(np.column_stack([ex, ey])) == _rows(np.column_stack([x, y]))
    assert not np.array_equal(epochs[0], epochs[1]), "each epoch has its own order"
    again = np.concatenate([b[0].numpy() for b in list(windows.dataset(16, epochs=2, seed=5))[:per_epoch]])
    assert np.array_equal(again, epochs[0]), "the order is fixed by the seed"
    ordered = np.concatenate([b[0].numpy() for b in windows.dataset(16)])
    assert np.array_equal(ordered, x), "seed=None keeps corpus order"


@pytest.mark.slow
def test_a_language_model_run_stores_corpus_ids_and_trains_on_windows_made_as_read(tmp_path, monkeypatch, charlm_dir):
    # Force the path a 100 MB corpus takes (no window arrays at all) on a small one.
    monkeypatch.setattr(context, "WINDOWS_IN_MEMORY", 0)
    config = {
        "name": "lm",
        "seed": 1,
        "deterministic": False,
        "data": {"task": "language_model", "corpus": str(charlm_dir / "alice_in_wonderland_pg11.txt"), "max_chars": 30_000, "window": 12, "stride": 2},
        "model": {"build": {"embedding_dim": 16, "units": 48, "num_layers": 1, "dropout": 0.0}},
        "steps": [
            {"train": {"epochs": 2, "batch_size": 64, "learning_rate": 0.006}},
            {"distill": {"student": {"units": 24, "embedding_dim": 12, "num_layers": 1}, "epochs": 2, "batch_size": 64, "learning_rate": 0.006}},
            {"export": {"modes": ["dynamic"], "latency_runs": 0}},
        ],
    }
    out = tmp_path / "out"
    recipe_mod.run(config, out, log=lambda *_: None)

    data = out / ".run" / "00-data"
    with np.load(data / "arrays.npz") as arrays:
        assert sorted(arrays.files) == ["ids_train", "x_dev", "y_dev"]
        assert arrays["ids_train"].shape == (28_500,) and arrays["ids_train"].dtype == np.int32
    corpus = (charlm_dir / "alice_in_wonderland_pg11.txt").read_text(encoding="utf-8")[:30_000]
    counts = collections.Counter(corpus[:28_500])
    p = {c: n / 28_500 for c, n in counts.items()}
    dev = corpus[28_500 + 12 :]
    unigram_bits = -np.mean([math.log2(p.get(c, 1 / 28_500)) for c in dev])

    records = {r["step"]: r for r in json.loads((out / "report.json").read_text())["records"]}
    assert records["train"]["metric"] == "bits/char"
    assert records["train"]["value"] < unigram_bits - 0.3, (records["train"]["value"], unigram_bits)
    assert records["distill -> student"]["value"] < unigram_bits - 0.2, (records["distill -> student"]["value"], unigram_bits)
    assert abs(records["export model dynamic"]["value"] - records["distill -> student"]["value"]) < 0.05

    # Resuming reads the stored ids back as windows: nothing runs again.
    lines = []
    recipe_mod.run(config, out, log=lines.append)
    assert any("[data] resumed" in line for line in lines)


def test_int8_calibration_takes_a_sample_of_windows_not_all_of_them():
    from tfcompress.recipe import Recipe

    ids = (np.arange(5000) * 11) % 53
    windows = CharWindows(ids, 20, 3)
    ctx = context.RunContext(
        recipe=Recipe.from_dict({"seed": 4, "data": {"task": "language_model", "corpus": "builtin"}, "steps": ["train"]}),
        data={"x_train": windows, "y_train": None, "x_dev": None, "y_dev": None},
        encoder=None, vocab=None, meta={"task": "language_model"}, strategy=None, precision="float32", out="", state_dir="",
    )
    sample = ctx.calibration_inputs(100)
    assert sample.shape == (100, 20) and sample.dtype == np.int32
    assert set(map(tuple, sample.tolist())) <= set(map(tuple, char_windows(ids, 20, 3)[0].tolist()))
    assert np.array_equal(sample, ctx.calibration_inputs(100)), "the seed fixes the sample"
    assert ctx.calibration_inputs(10_000).shape == (len(windows), 20)  # a small corpus gives all it has


def test_a_checkpoint_of_another_format_is_refused_with_the_fix(tmp_path):
    out = tmp_path / "out"
    (out / ".run").mkdir(parents=True)
    (out / ".run" / "recipe.json").write_text(json.dumps({"fingerprint": "x", "source": "old.yaml", "config": {}}))
    config = {"data": {"task": "language_model", "corpus": "builtin", "max_chars": 5000, "window": 8}, "steps": ["train"]}
    with pytest.raises(RecipeError, match=r"saved by another version of tfcompress \(checkpoint format 1, this version reads 2\).*Fix: restart from scratch \(restart=True, --restart\)"):
        recipe_mod.run(config, out, log=lambda *_: None)
    assert not (out / ".tfcompress-lock").exists()
