"""Recipe steps are registered units: a new step is one class; the run shows
progress and writes TensorBoard logs."""

import re
import glob
import os

import numpy as np
import pytest

from tfcompress import cli, recipe
from tfcompress.recipe import Flag, Recipe, RecipeError, Step, StepResult, schema

from test_recipe import small_recipe


class CountZeros(Step):
    """A step written outside tfcompress: records the share of zero weights."""

    name = "count_zeros"
    summary = "record the share of zero weights (the model is unchanged)"
    schema = {"label": (schema.str_or_none, None), "at_least": (schema.unit, 0.0)}
    flags = (Flag("--zeros-label", "label", str, None, "the row label of count_zeros"),)
    saves_model = False

    def validate(self, args, earlier, config, fail):
        if not any(name == "train" for name, _ in earlier):
            fail(["label"], "count_zeros needs a model trained before it", "put a train step first")
        return args

    def run(self, ctx, args):
        model = ctx.require_model()
        weights = np.concatenate([w.reshape(-1) for w in model.get_weights()])
        share = float(np.mean(weights == 0))
        record = ctx.keras_record(args["label"] or "zeros", model, f"zeros {share:.1%}")
        return StepResult(None, [record])


@pytest.fixture
def count_zeros():
    recipe.register_step(CountZeros)
    try:
        yield CountZeros
    finally:
        recipe.unregister_step("count_zeros")


def test_a_new_step_is_one_registered_class(tmp_path, count_zeros):
    config = small_recipe(tmp_path, steps=[{"train": {"epochs": 1, "batch_size": 32}}, {"count_zeros": {"label": "after training"}}])
    checked = Recipe.from_dict(config)
    assert checked.steps[1] == ("count_zeros", {"label": "after training", "at_least": 0.0})
    # its schema, its own checks and the list of step names come from the registry
    with pytest.raises(RecipeError, match=r"key 'steps\[1\].count_zeros.at_least': 2 is not valid here. Fix: give a number in \[0, 1\]"):
        Recipe.from_dict({**config, "steps": [{"train": {}}, {"count_zeros": {"at_least": 2}}]})
    with pytest.raises(RecipeError, match=r"key 'steps\[0\].count_zeros.label': count_zeros needs a model trained before it. Fix: put a train step first"):
        Recipe.from_dict({**config, "steps": [{"count_zeros": {}}]})
    with pytest.raises(RecipeError, match=r"unknown step 'squeeze'. Fix: use one of: train, sensitivity, auto, factorize, shrink, prune, cluster, quantize, distill, export, count_zeros"):
        Recipe.from_dict({**config, "steps": ["squeeze"]})

    logs = []
    report = recipe.run(checked, tmp_path / "out", log=logs.append)
    assert [r.step for r in report.records] == ["train", "after training"]
    assert report.records[1].notes.startswith("zeros ")
    assert not os.path.exists(tmp_path / "out" / ".run" / "02-count_zeros" / "model.keras")  # saves_model = False
    again = recipe.run(checked, tmp_path / "out", log=logs.append)  # resumes both steps
    assert [r.value for r in again.records] == [r.value for r in report.records]

    # the command line lists it and derives its flag
    parser = cli.build_parser()
    help_text = parser._subparsers._group_actions[0].choices["compress"].format_help()
    assert "count_zeros  record the share of zero weights" in help_text and "--zeros-label" in help_text


def test_the_registry_refuses_what_could_not_work():
    class NoName(Step):
        pass

    class Clash(Step):
        name = "prune"

    class BadFlag(Step):
        name = "bad_flag"
        flags = (Flag("--x", "x", int, 1, "sets a key the step does not have"),)

    with pytest.raises(ValueError, match=r"NoName.name must be an identifier"):
        recipe.register_step(NoName)
    with pytest.raises(ValueError, match=r"a recipe step named 'prune' is already registered \(Prune\). Fix: choose another name"):
        recipe.register_step(Clash)
    with pytest.raises(ValueError, match=r"BadFlag flag --x sets 'x', which is not in its schema"):
        recipe.register_step(BadFlag)
    with pytest.raises(TypeError, match=r"register_step takes a Step subclass"):
        recipe.register_step(dict)
    assert recipe.step_names() == ["train", "sensitivity", "auto", "factorize", "shrink", "prune", "cluster", "quantize", "distill", "export"]


def test_a_run_shows_each_epoch_and_writes_tensorboard_logs(tmp_path):
    import tensorflow as tf

    from tfcompress import keras

    class Count(keras.callbacks.Callback):
        epochs = 0

        def on_epoch_end(self, epoch, logs=None):
            Count.epochs += 1

    config = small_recipe(
        tmp_path,
        steps=[{"train": {"epochs": 2, "batch_size": 32}}, {"prune": {"target_sparsity": 0.5, "epochs": 1, "batch_size": 32}}],
    )
    logs = []
    report = recipe.run(config, tmp_path / "out", log=logs.append, callbacks=[Count()], tensorboard=tmp_path / "tb")
    epoch_lines = [line for line in logs if "epoch " in line]
    assert len(epoch_lines) == 3 and epoch_lines[0].startswith("    epoch 1/2: loss ")
    assert "val_accuracy" in epoch_lines[0] and epoch_lines[2].startswith("    epoch 1/1: ")
    assert Count.epochs == 3  # the user's callback saw every training step

    def tags(folder):
        found = set()
        for path in glob.glob(str(tmp_path / "tb" / folder / "**" / "events.out.tfevents.*"), recursive=True):
            for event in tf.compat.v1.train.summary_iterator(path):
                found |= {v.tag for v in event.summary.value}
        return found

    assert {"epoch_loss", "epoch_accuracy"} <= tags("01-train")
    assert any(t.endswith("/mask:0/sparsity") for t in tags("02-prune")), tags("02-prune")  # TFMOT's per-layer sparsity
    assert {"accuracy", "gzip KiB", "report"} <= tags("report")
    assert len(report.records) == 2


def test_array_predictions_equal_keras_predict_under_op_determinism():
    import tensorflow as tf

    from tfcompress import models
    from tfcompress._keras import predict

    model = models.lstm_classifier(50, max_len=8, embedding_dim=4, units=4)
    x = np.random.default_rng(0).integers(0, 50, (1000, 8)).astype("int32")
    expected = model.predict(x, batch_size=256, verbose=0)
    tf.config.experimental.enable_op_determinism()  # what recipes run under (and leave on)
    np.testing.assert_array_equal(predict(model, x, batch_size=256), expected)
    assert predict(model, x[:0], batch_size=256).shape == (0, 2)


def test_factorize_and_cluster_steps_keep_their_structure_to_the_file(tmp_path):
    """train -> factorize -> prune -> cluster -> quantize -> export: the
    report says what each step did, and the exported file's weight matrices
    hold at most 8 values per quantization channel, 60% of them zero."""
    from tfcompress import export

    config = small_recipe(
        tmp_path,
        model={"build": {"embedding_dim": 16, "units": 8, "dropout": 0.0}},
        steps=[
            {"train": {"epochs": 3, "batch_size": 32}},
            {"factorize": {"rank": 4, "epochs": 1, "batch_size": 32}},
            {"prune": {"target_sparsity": 0.6, "epochs": 1, "batch_size": 32}},
            {"cluster": {"clusters": 8, "epochs": 1, "batch_size": 32}},
            {"quantize": {"epochs": 1, "batch_size": 32}},
            {"export": {"modes": ["dynamic"], "latency_runs": 20}},
        ],
    )
    report = recipe.run(config, tmp_path / "out")
    steps = [r.step for r in report.records]
    assert steps == ["train", "factorize rank 4", "prune 60%", "cluster 8", "quantize (8-bit QAT)", "export model dynamic"]
    notes = {r.step: r.notes for r in report.records}
    assert notes["factorize rank 4"].startswith("embedding rank 4: ") and "SVD start error" in notes["factorize rank 4"]
    assert "at most 8 values per weight, zeros kept" in notes["cluster 8"]
    values = {r.step: r.value for r in report.records}
    assert values["export model dynamic"] > 0.85  # the keywords decide the label
    weights = [w for w in export.file_weights(tmp_path / "out" / "model.tflite") if len(w["shape"]) == 2]
    assert len(weights) == 4, [w["name"] for w in weights]  # embedding, projection, kernel, recurrent kernel
    for w in weights:
        assert (w["distinct"] if w["sparse"] else w["distinct_per_channel"]) <= 8, w["name"]
    zeros = sum(w["zeros"] for w in weights) / sum(w["size"] for w in weights)
    assert abs(zeros - 0.6) <= 0.02, zeros


def test_the_cluster_step_clusters_per_channel(tmp_path):
    config = small_recipe(
        tmp_path,
        steps=[{"train": {"epochs": 1, "batch_size": 32}}, {"cluster": {"clusters": 4, "per_channel": True, "epochs": 1, "batch_size": 32}}],
    )
    report = recipe.run(config, tmp_path / "out")
    record = report.records[-1]
    assert record.step == "cluster 4 per channel"
    assert record.notes.startswith("3 layers, at most 4 values per channel"), record.notes
    with pytest.raises(RecipeError, match=r"key 'steps\[1\].cluster.per_channel': 'yes' is not valid here"):
        Recipe.from_dict({**config, "steps": ["train", {"cluster": {"per_channel": "yes"}}]})


def test_factorize_and_cluster_steps_are_checked_and_have_flags(tmp_path):
    config = small_recipe(tmp_path)
    with pytest.raises(RecipeError, match=r"factorize needs exactly one of rank or max_error. Fix: give rank: 16"):
        Recipe.from_dict({**config, "steps": ["train", "factorize"]})
    with pytest.raises(RecipeError, match=r"factorize must come before prune, cluster and quantize"):
        Recipe.from_dict({**config, "steps": ["train", "prune", {"factorize": {"rank": 4}}]})
    with pytest.raises(RecipeError, match=r"clustering cannot follow quantize"):
        Recipe.from_dict({**config, "steps": ["train", "quantize", "cluster"]})
    with pytest.raises(RecipeError, match=r"key 'steps\[1\].cluster.clusters': 1 is not valid here. Fix: give an integer in \[2, 256\]"):
        Recipe.from_dict({**config, "steps": ["train", {"cluster": {"clusters": 1}}]})
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["compress"].format_help()
    assert "--clusters" in help_text and "--embedding-rank" in help_text
    assert re.search(r"\n  cluster +cluster each weight", help_text) and re.search(r"\n  factorize +replace the embedding table", help_text)


def test_shrink_step_distils_into_fewer_units_and_exports(tmp_path):
    """train -> shrink (half the units, Taylor scores, distilled from the model
    before) -> export: a smaller LSTM in the file, still answering like Keras."""
    from tfcompress import export

    config = small_recipe(
        tmp_path,
        model={"build": {"embedding_dim": 16, "units": 8, "dropout": 0.0}},
        steps=[
            {"train": {"epochs": 3, "batch_size": 32}},
            {"shrink": {"units": 0.5, "criterion": "taylor", "distill": True, "epochs": 2, "batch_size": 32}},
            {"export": {"modes": ["dynamic"], "latency_runs": 20}},
        ],
    )
    report = recipe.run(config, tmp_path / "out")
    assert [r.step for r in report.records] == ["train", "shrink 50%", "export model dynamic"]
    notes = {r.step: r.notes for r in report.records}
    assert notes["shrink 50%"].startswith("embedding 16->8, lstm_0 8->4; ") and "criterion taylor; distilled from the model before" in notes["shrink 50%"]
    assert " M multiply-adds; " in notes["shrink 50%"]
    values = {r.step: r.value for r in report.records}
    assert values["export model dynamic"] > 0.85  # the keywords decide the label
    shapes = {tuple(w["shape"]) for w in export.file_weights(tmp_path / "out" / "model.tflite", min_size=1)}
    # embedding 8 wide; the LSTM's 4 gates x 4 units, reading 8 inputs and its 4 units; logits reading 4 units
    assert {(20, 8), (16, 8), (16, 4), (2, 4)} <= shapes, shapes


def test_shrink_step_is_checked_and_has_a_flag(tmp_path):
    config = small_recipe(tmp_path)
    with pytest.raises(RecipeError, match=r"shrink cannot follow prune .* Fix: move shrink before prune, cluster and quantize"):
        Recipe.from_dict({**config, "steps": ["train", "prune", "shrink"]})
    with pytest.raises(RecipeError, match=r"key 'steps\[1\].shrink.units': 2 is not valid here. Fix: give a number in \(0, 1\) \(the fraction of units kept\)"):
        Recipe.from_dict({**config, "steps": ["train", {"shrink": {"units": 2}}]})
    Recipe.from_dict({**config, "steps": ["train", {"shrink": {"units": {"lstm_0": 4, "Embedding": 0.5}}}]})
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["compress"].format_help()
    assert "--shrink" in help_text and re.search(r"\n  shrink +remove whole units", help_text)
