"""`sensitivity.analyze` and the `sensitivity` recipe step: one layer changed
at a time, each figure the model's real metric after exactly that change."""

import json

import numpy as np
import pytest

from test_recipe import write_dataset
from tfcompress import keras, metrics, recipe, sensitivity
from tfcompress.sensitivity import cluster_array, prune_array, quantize_array


def test_the_changes_do_what_they_say():
    w = np.random.default_rng(0).normal(size=(40, 30)).astype("float32")
    pruned = prune_array(w, 0.8)
    assert np.count_nonzero(pruned == 0) == 960 and np.abs(pruned[pruned != 0]).min() >= np.abs(w[pruned == 0]).max()
    q8 = quantize_array(w, 8)
    scale = np.abs(w).max() / 127
    assert len(np.unique(q8)) <= 255 and np.abs(q8 - w).max() <= scale / 2 + 1e-6
    assert len(np.unique(quantize_array(w, 4))) <= 15
    c8 = cluster_array(w, 8)
    assert len(np.unique(c8)) <= 8
    even = np.linspace(w.min(), w.max(), 8)  # k-means beats its own evenly spaced start
    nearest = even[np.abs(w.reshape(-1, 1) - even).argmin(1)].reshape(w.shape)
    assert np.square(c8 - w).mean() < np.square(nearest - w).mean()


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(1)
    x = rng.integers(2, 50, size=(1200, 10)).astype("int32")
    y = (x[:, -3:] < 20).any(1).astype("int32")  # the class: a small id among the last three tokens
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((10,), dtype="int32"),
            # Named: automatic names depend on what the worker built before.
            keras.layers.Embedding(50, 8, name="embedding"),
            keras.layers.LSTM(8, name="lstm"),
            keras.layers.Dense(2, activation="softmax", name="dense"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x[:1000], y[:1000], epochs=6, batch_size=32, verbose=0)
    return model, x[1000:], y[1000:]


def test_each_row_is_the_metric_after_exactly_that_change_and_weights_come_back(trained):
    model, x, y = trained
    before = [w.copy() for w in model.get_weights()]
    table = sensitivity.analyze(model, x, y, sparsities=[0.5, 0.9], bits=[8, 4], clusters=[4])
    assert list(table.layers) == [layer.name for layer in model.layers]  # embedding, lstm, dense
    assert len(table.rows) == 3 * 5 and table.evaluations == 16 and table.examples == 200
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)
    base = metrics.accuracy(model.predict(x, verbose=0), y)
    assert table.baseline == base
    lstm = model.layers[1]
    kernel, recurrent = (v.numpy() for v in (lstm.cell.kernel, lstm.cell.recurrent_kernel))
    lstm.cell.kernel.assign(prune_array(kernel, 0.9))
    lstm.cell.recurrent_kernel.assign(prune_array(recurrent, 0.9))
    by_hand = metrics.accuracy(model.predict(x, verbose=0), y)
    lstm.cell.kernel.assign(kernel)
    lstm.cell.recurrent_kernel.assign(recurrent)
    assert table.loss(lstm.name, "prune", 0.9) == pytest.approx((base - by_hand) * 100)
    assert table.loss(lstm.name, "quantize", 8) == pytest.approx(0, abs=1.0)  # 8 bits barely move a trained model
    markdown = table.to_markdown()
    assert "| layer | params | prune 50% | prune 90% | 8 bits | 4 bits | 4 clusters |" in markdown
    assert table.baseline > 0.9 and table.most_sensitive().loss > 5  # a trained model, hurt by 90% of zeros
    assert "no fine-tuning" in markdown and "16 evaluations of 200 examples" in markdown
    again = sensitivity.SensitivityTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.to_markdown() == markdown


def test_bad_arguments_and_wrapped_models_are_refused(trained):
    from tfcompress import pruning

    model, x, y = trained
    with pytest.raises(ValueError, match=r"sparsities must be fractions in \(0, 1\). Received: sparsities=\[0.5, 1.0\] \(1.0 is not\)"):
        sensitivity.analyze(model, x, y, sparsities=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"layers=\['nope'\]: no layer 'nope' with weights to measure"):
        sensitivity.analyze(model, x, y, layers=["nope"])
    with pytest.raises(ValueError, match="metric must be 'accuracy' or 'bits/char'"):
        sensitivity.analyze(model, x, y, metric="f1")
    with pytest.raises(ValueError, match="has compression wrappers .* analyze the model before pruning"):
        sensitivity.analyze(pruning.prune(model, 0.5), x, y)


def test_rows_are_measured_on_the_embedding_alone_as_prune_rows_makes_them(trained):
    from tfcompress import budget, embeddings

    model, x, y = trained
    before = [w.copy() for w in model.get_weights()]
    counts = budget.token_counts(model, x)
    table = sensitivity.analyze(model, x, y, sparsities=[], bits=[], clusters=[], rows=[0.5, 0.2], counts=counts)
    assert [(r.layer, r.kind, r.setting) for r in table.rows] == [("embedding", "rows", 0.5), ("embedding", "rows", 0.2)]
    assert table.evaluations == 3 and table.settings("rows") == [0.5, 0.2]  # mildest first
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)
    for keep in (0.5, 0.2):  # each row: the metric of the model prune_rows makes (ids from 24, or 9, share one row)
        small = embeddings.prune_rows(model, keep=keep, counts=counts)
        assert table.loss("embedding", "rows", keep) == pytest.approx(sensitivity.loss_between(table.baseline, metrics.accuracy(small.predict(x, verbose=0), y), "accuracy"))
    # The class is whether an id below 20 is among the last three: ids 24 and up can share a row, ids 10-19 cannot.
    assert table.loss("embedding", "rows", 0.5) < 1.0 < table.loss("embedding", "rows", 0.2)
    assert "| 50% of rows | 20% of rows |" in table.to_markdown()
    with pytest.raises(ValueError, match=r"rows must be fractions in \(0, 1\). Received: rows=\[0.5, 1.0\] \(1.0 is not\)"):
        sensitivity.analyze(model, x, y, rows=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"counts has 3 entries; layer 'embedding' has 50 rows. Fix: one count per id"):
        sensitivity.analyze(model, x, y, rows=[0.5], counts=[1, 2, 3])
    with pytest.raises(ValueError, match=r"rows: layer 'embedding', the model's embedding table, is not among the layers measured. Fix: include it in layers"):
        sensitivity.analyze(model, x, y, rows=[0.5], layers=["lstm"])
    no_table = keras.Sequential([keras.Input((10, 3)), keras.layers.LSTM(4), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ValueError, match=r"rows: model '.*' has no rows to keep fewer of: the model has no Embedding. Fix: leave rows out"):
        sensitivity.analyze(no_table, np.zeros((4, 10, 3), "float32"), np.zeros(4, "int64"), rows=[0.5])
    with pytest.raises(ValueError, match=r"rows: model '.*' has no rows to keep fewer of: the model has no Embedding"):
        budget.token_counts(no_table, np.zeros((4, 10), "int64"))


def test_a_keras3_model_is_measured_too(trained):
    import keras as keras3

    _, x, y = trained
    model = keras3.Sequential([keras3.Input((10,), dtype="int32"), keras3.layers.Embedding(50, 4), keras3.layers.GRU(4), keras3.layers.Dense(2, activation="softmax")])
    table = sensitivity.analyze(model, x, y, sparsities=[0.5], bits=[8], clusters=[])
    assert len(table.rows) == 6 and {r.kind for r in table.rows} == {"prune", "quantize"}


@pytest.mark.slow
def test_the_recipe_step_measures_on_the_selection_split_and_reports_a_table(tmp_path):
    write_dataset(tmp_path / "train.tsv")
    write_dataset(tmp_path / "dev.tsv", n=120, seed=1)
    config = {
        "data": {"train": str(tmp_path / "train.tsv"), "dev": str(tmp_path / "dev.tsv")},
        "text": {"max_len": 12},
        "model": {"build": {"embedding_dim": 8, "units": 8, "dropout": 0.0}},
        "steps": [{"train": {"epochs": 3, "batch_size": 32}}, {"sensitivity": {"sparsities": [0.5, 0.9], "bits": [8], "clusters": [8]}}, "export"],
    }
    report = recipe.run(config, tmp_path / "out", log=lambda line: None)
    assert report.meta["selection examples"] == 60  # the step chooses on data, so a split is carved
    assert "step 2 sensitivity chose on a split carved from the training data" in report.meta["selection"]
    row = next(r for r in report.records if r.step == "sensitivity (model unchanged)")
    assert "13 evaluations of 60 examples" in row.notes  # 3 layers x 4 changes, and the baseline
    table = sensitivity.SensitivityTable.load(tmp_path / "out" / ".run" / "02-sensitivity" / "sensitivity.json")
    assert table.examples == 60 and len(table.rows) == 12
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Sensitivity (step 2)" in markdown and "![sensitivity](sensitivity-2.png)" in markdown
    assert (tmp_path / "out" / "sensitivity-2.png").stat().st_size > 1000
    again = recipe.run(config, tmp_path / "out", log=lambda line: None)  # resumed: the section is kept
    assert again.sections == report.sections and again.records == report.records
