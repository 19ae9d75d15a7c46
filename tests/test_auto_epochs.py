"""`epochs: auto`: train until the selection split stops improving, best epoch kept."""

import numpy as np
import pytest

from test_recipe import _cli, fit_shapes, write_dataset
from tfcompress import keras, recipe
from tfcompress.recipe import Recipe, RecipeError
from tfcompress.training import BestEpoch


def _tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    return model


def _drive(stop, model, values):
    """Runs `stop` over epochs whose selection metric is `values`; before each
    epoch's end the model's weights are set to the epoch number, so the weights
    left at the end say which epoch was restored."""
    stop.set_model(model)
    stop.set_params({"epochs": 10})
    stop.on_train_begin()
    for epoch, value in enumerate(values):
        model.set_weights([np.full_like(w, epoch + 1) for w in model.get_weights()])
        stop.on_epoch_end(epoch, {"val_accuracy": value, "loss": 1.0})
        if model.stop_training:
            break
    stop.on_train_end()
    return int(model.get_weights()[0].flat[0])


def test_best_epoch_stops_after_patience_and_restores_the_best_weights():
    model = _tiny_model()
    stop = BestEpoch("val_accuracy", patience=2)
    assert _drive(stop, model, [0.6, 0.8, 0.7, 0.75, 0.9]) == 2  # stopped after epoch 4: epoch 5 never ran
    assert (stop.epochs_run, stop.best_epoch, stop.stopped_early, stop.restored) == (4, 2, True, True)
    assert stop.summary() == (
        "4 epochs (at most 10), best 2 (val_accuracy 0.8000); stopped: no improvement in 2 epoch(s); weights of epoch 2 restored"
    )


def test_best_epoch_restores_even_when_the_last_epoch_ends_the_run():
    """Keras' EarlyStopping keeps the last weights when the run reaches its last epoch."""
    model = _tiny_model()
    stop = BestEpoch("val_accuracy", patience=5)
    assert _drive(stop, model, [0.6, 0.8, 0.7]) == 2
    assert not stop.stopped_early and stop.restored and "reached the last epoch" in stop.summary()
    assert _drive(BestEpoch("val_accuracy", patience=5), _tiny_model(), [0.6, 0.7, 0.8]) == 3  # the last was best


def test_epochs_before_the_first_candidate_neither_win_nor_use_patience():
    stop = BestEpoch("val_accuracy", patience=1, first_candidate=3)
    assert _drive(stop, _tiny_model(), [0.9, 0.95, 0.5, 0.6, 0.55]) == 4
    assert (stop.best_epoch, stop.epochs_run) == (4, 5)


def test_best_epoch_minimises_losses_and_names_a_missing_value():
    stop = BestEpoch("val_loss", patience=1)
    assert stop.mode == "min"
    with pytest.raises(KeyError, match=r"watches 'val_loss', but the epoch logged only \['loss'\]. Fix: pass validation_data"):
        stop.set_model(_tiny_model())
        stop.on_train_begin()
        stop.on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        BestEpoch(patience=0)


def _one_unit(p):
    """A model whose one sigmoid output is `p` for every input: its bias set to logit(p)."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros")])
    model.set_weights([np.zeros((1, 1)), np.array([np.log(p / (1 - p))])])
    return model


def _drive_outputs(stop, outputs, y):
    """Runs `stop` over epochs in which the model outputs `outputs[i]` for every example,
    logging the mean loss Keras would; returns the output of the epoch restored."""
    model = _one_unit(0.5)
    stop.set_model(model)
    stop.set_params({"epochs": 10})
    stop.on_train_begin()
    for epoch, p in enumerate(outputs):
        model.set_weights(_one_unit(p).get_weights())
        loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        stop.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            break
    stop.on_train_end()
    return float(model.predict_on_batch(np.zeros((1, 1)))[0, 0])


def test_one_se_keeps_the_fewest_epochs_within_one_paired_standard_error_of_the_best():
    # 70% positives: a constant output is best at 0.7; 0.69 is within a hair of it, 0.5 far from it
    y = (np.arange(1000) % 10 < 7).astype(np.float32)
    x = np.zeros((1000, 1), np.float32)
    outputs = [0.5, 0.69, 0.7, 0.6, 0.55]
    best = BestEpoch("val_loss", patience=2)
    assert _drive_outputs(best, outputs, y) == pytest.approx(0.7, abs=1e-6)
    assert (best.best_epoch, best.epochs_run) == (3, 5)
    stop = BestEpoch("val_loss", patience=2, choose="one_se", examples=(x, y))
    assert _drive_outputs(stop, outputs, y) == pytest.approx(0.69, abs=1e-6)
    assert (stop.best_epoch, stop.lowest_epoch, stop.epochs_run, stop.restored) == (2, 3, 5, True)
    # per example, 0.69 against 0.7 costs log(0.7/0.69) on a positive and log(0.31/0.3) less on a negative
    diff = np.where(y == 1, np.log(0.7 / 0.69), np.log(0.3 / 0.31))
    mean, se = stop.within
    assert mean == pytest.approx(diff.mean(), rel=1e-3) and se == pytest.approx(diff.std(ddof=1) / np.sqrt(1000), rel=1e-3)  # float32 outputs
    assert mean < se
    assert "best 3 (val_loss 0.6109); stopped: no improvement in 2 epoch(s); kept 2, the fewest epochs within one standard error" in stop.summary()
    # a lead larger than the split can blur is kept: 0.5 against 0.7 is many standard errors worse
    far = BestEpoch("val_loss", patience=2, choose="one_se", examples=(x, y))
    assert _drive_outputs(far, [0.5, 0.7, 0.6, 0.55], y) == pytest.approx(0.7, abs=1e-6)
    assert (far.best_epoch, far.lowest_epoch) == (2, 2)
    # an accuracy monitor compares who is right: every epoch above 0.5 predicts 1, all equally right
    acc = BestEpoch("val_accuracy", patience=1, choose="one_se", examples=(x, y))
    acc.set_model(_one_unit(0.5))
    acc.on_train_begin()
    for epoch, (p, value) in enumerate([(0.6, 0.7), (0.9, 0.71)]):  # the logged values differ, the examples do not
        acc.model.set_weights(_one_unit(p).get_weights())
        acc.on_epoch_end(epoch, {"val_accuracy": value})
    acc.on_train_end()
    assert (acc.best_epoch, acc.lowest_epoch) == (1, 2)


def test_one_se_needs_the_examples():
    with pytest.raises(ValueError, match=r"choose='one_se' scores each epoch example by example: pass examples=\(x, y\)"):
        BestEpoch("val_loss", choose="one_se")
    with pytest.raises(ValueError, match="choose must be one of best, one_se"):
        BestEpoch("val_loss", choose="fewest")


def _tiny_recipe(tmp_path):
    """A tiny classifier recipe on 600 training and 120 dev examples (steps to add)."""
    write_dataset(tmp_path / "train.tsv")
    write_dataset(tmp_path / "dev.tsv", n=120, seed=1)
    return {
        "seed": 1,
        "data": {"train": str(tmp_path / "train.tsv"), "dev": str(tmp_path / "dev.tsv")},
        "text": {"max_len": 12},
        "model": {"build": {"embedding_dim": 8, "units": 8, "dropout": 0.0}},
    }


def _chosen(section, index):
    """The epochs step `index` chose, from the report's first-run table."""
    row = next(line for line in section.splitlines() if line.startswith(f"| {index} |"))
    return int(row.split("|")[3])


@pytest.mark.slow
def test_a_recipe_with_auto_epochs_chooses_on_a_selection_split_then_runs_the_chain_again(tmp_path):
    config = _tiny_recipe(tmp_path)
    config["steps"] = [
        {"train": {"epochs": "auto", "min_epochs": 2, "max_epochs": 5, "patience": 1, "batch_size": 32}},
        {"prune": {"target_sparsity": 0.5, "epochs": "auto", "max_epochs": 3, "patience": 1, "batch_size": 32, "monitor": "accuracy"}},
        {"quantize": {"epochs": 1, "batch_size": 32}},
    ]
    lines = []
    report = recipe.run(config, tmp_path / "out", log=lines.append)
    assert report.meta["selection examples"] == 60 and report.meta["train examples"] == 540  # 10% of 600 set aside
    assert "dev figures come from data no choice has seen" in report.meta["selection"]
    assert any("selection split: 60 examples carved from training" in line for line in lines)
    # First run: each auto step chooses on the split; its models are in a section, not handed on.
    first = report.sections["Epochs chosen on the selection split"]
    train_first = next(line for line in first.splitlines() if line.startswith("| 1 | train |"))
    assert "epochs (at most 5), best" in train_first and "(val_loss " in train_first and "stopped:" in train_first
    assert "(val_accuracy " in next(line for line in first.splitlines() if line.startswith("| 2 | prune 50% |"))
    train_epochs, prune_epochs = _chosen(first, 1), _chosen(first, 2)
    assert train_epochs >= 2  # min_epochs 2: epoch 1 is never kept
    assert prune_epochs >= 2  # the sparsity ramp (2 epochs) ends before any candidate
    assert report.meta["epochs chosen (step 1 train)"] == train_epochs and report.meta["epochs chosen (step 2 prune)"] == prune_epochs
    # Then the chain again from the start with those counts on all 600; nothing chooses on it.
    log = "\n".join(lines)
    assert f"[refit] steps 1-2 again from the start on train + selection (600 examples), epochs as chosen (step 1 train: {train_epochs}, step 2 prune: {prune_epochs})" in log
    assert "[1/3 train-refit] running" in log and "[2/3 prune-refit] running" in log and "no refit" not in log
    train, prune, quantize = report.records
    assert train.notes == (
        f"{train_epochs} epoch(s), the count chosen on the selection split (see 'Epochs chosen on the selection split'); "
        "steps 1-2 run again on train + selection (600 examples)"
    )
    assert prune.notes.startswith("sparsity 50.0%; ") and f"{prune_epochs} epoch(s), the count chosen" in prune.notes
    assert "epochs (at most" not in quantize.notes and "the count chosen" not in quantize.notes  # fixed epochs
    assert "on train + selection (600 examples)" in report.meta["refit"]
    again = recipe.run(config, tmp_path / "out", log=lines.append)  # resumed: the same split, runs and figures
    assert again.records == report.records and again.sections == report.sections


@pytest.mark.slow
def test_a_step_refits_alone_when_a_later_step_chooses_otherwise(tmp_path):
    """With a step that chooses on the split in other ways (here `sensitivity`)
    there is no chain run: an auto step before it keeps the split unseen (no
    refit), the last step to choose refits alone."""
    config = _tiny_recipe(tmp_path)
    config["steps"] = [
        {"train": {"epochs": "auto", "max_epochs": 3, "patience": 1, "batch_size": 32}},
        {"sensitivity": {"sparsities": [0.5], "bits": [8], "clusters": [8]}},
        {"prune": {"target_sparsity": 0.5, "epochs": "auto", "max_epochs": 3, "patience": 1, "batch_size": 32}},
    ]
    lines = []
    report = recipe.run(config, tmp_path / "out", log=lines.append)
    assert "Epochs chosen on the selection split" not in report.sections and "refit" not in report.meta
    train, prune = report.records[0], report.records[-1]
    assert "epochs (at most 3), best" in train.notes
    assert "; no refit: step 2 sensitivity, step 3 prune still choose on the selection split" in train.notes
    assert "[train] no refit: step 2 sensitivity, step 3 prune still choose" in "\n".join(lines)
    best_prune_epoch = int(prune.notes.split(", best ")[1].split(" ")[0])
    assert prune.notes.endswith(f"; then refit: {best_prune_epoch} epoch(s) from the step's start on train + selection (600 examples)")
    assert any(f"[prune] refit: {best_prune_epoch} epoch(s)" in line for line in lines)


@pytest.mark.slow
def test_steps_after_the_last_choice_train_on_train_and_selection(tmp_path):
    """One auto step refits alone; the fixed steps after it, which nothing measures
    for a choice any more, train on the selection split too."""
    config = _tiny_recipe(tmp_path)
    config["steps"] = [
        {"train": {"epochs": "auto", "min_epochs": 2, "max_epochs": 3, "patience": 1, "batch_size": 32}},
        {"prune": {"target_sparsity": 0.5, "epochs": 1, "batch_size": 32}},
        {"quantize": {"epochs": 1, "batch_size": 32}},
        {"export": {"modes": ["dynamic"], "latency_runs": 1}},
    ]
    fits, lines = [], []
    report = recipe.run(config, tmp_path / "out", log=lines.append, callbacks=[fit_shapes(fits)])
    # 540 examples in batches of 32 while train chooses, then 600 for its refit and every later step
    assert [batches for _, batches in fits] == [17, 19, 19, 19]
    assert "then refit: " in report.records[0].notes and "refit" not in report.meta
    said = "step 2 prune, step 3 quantize on train + selection (600 examples): no step after step 1 train chooses on the split"
    assert report.meta["after choices"] == said and f"[data] {said}" in lines


@pytest.mark.slow
def test_a_language_model_and_its_distilled_student_stop_on_their_own_loss(tmp_path):
    config = {
        "data": {"task": "language_model", "corpus": "builtin", "max_chars": 20000, "window": 20, "stride": 5},
        "model": {"build": {"embedding_dim": 8, "units": 16, "num_layers": 1, "dropout": 0.0}},
        "steps": [
            {"train": {"epochs": "auto", "max_epochs": 2, "patience": 1, "batch_size": 64}},
            {"distill": {"epochs": "auto", "max_epochs": 2, "patience": 1, "batch_size": 64, "student": {"units": 8}}},
        ],
    }
    report = recipe.run(config, tmp_path / "out", log=lambda *_: None)
    assert report.meta["selection examples"] == len(range(0, 19000 // 10 - 20, 7))  # the training part's last 10%
    train, student = report.records
    assert "epochs (at most 2), best" in train.notes and "(val_loss " in train.notes
    assert "epochs (at most 2), best" in student.notes and "(val_student_loss " in student.notes
    assert "refit" not in train.notes + student.notes  # a language model's selection split is the end of its corpus
    assert train.metric == "bits/char" and student.value < 6.0  # below log2(vocabulary): it learned


def test_a_teacher_comes_from_the_chain_second_run_once_it_began(tmp_path):
    from tfcompress.recipe.context import RunContext

    ctx = RunContext(
        recipe=None, data={}, encoder=None, vocab=None, meta={"task": "classification"}, strategy=None, precision="float32",
        out=str(tmp_path), state_dir=str(tmp_path), steps=[("train", {}), ("distill", {})], index=2, chain_end=2,
    )
    ctx.load = lambda path: path  # the path the teacher would be loaded from
    assert ctx.checkpoint_of("train") == str(tmp_path / "01-train" / "model.keras")
    ctx.chain_rerun = True
    assert ctx.checkpoint_of("train") == str(tmp_path / "01-train-refit" / "model.keras")


def test_a_refit_starts_from_the_step_start_as_a_new_optimizer_would():
    from tfcompress.recipe.context import _restore_training_state, _training_state

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 3)).astype("float32"), rng.integers(0, 2, 64)

    def compiled(weights=None):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
        if weights is not None:
            model.set_weights(weights)
        model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    model = compiled()
    start = _training_state(model)
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)  # the search: weights and Adam moved
    _restore_training_state(model, start)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), start[0]))
    assert all(not np.any(v.numpy()) for v in model.optimizer.variables)  # step count and moments back to zero
    model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    fresh = compiled(start[0])
    fresh.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_epochs_must_be_a_count_or_auto(tmp_path):
    write_dataset(tmp_path / "train.tsv", n=20)
    base = {"data": {"train": str(tmp_path / "train.tsv")}}
    with pytest.raises(RecipeError, match=r"steps\[0\].train.epochs.*an integer >= 1, or 'auto'"):
        Recipe.from_dict({**base, "steps": [{"train": {"epochs": "sometimes"}}]})
    assert Recipe.from_dict({**base, "steps": [{"train": {"epochs": "auto"}}]}).makes_choices == ["step 1 train (epochs: auto)"]
    bad = _cli("compress", tmp_path / "train.tsv", "--epochs", "many", "--out", tmp_path / "o")
    assert bad.returncode == 2 and "--epochs: expected an integer >= 1 or 'auto', got 'many'" in bad.stderr
    assert not (tmp_path / "o").exists()


def test_min_epochs_above_max_epochs_is_refused_and_the_flag_reaches_every_step(tmp_path):
    from tfcompress import cli

    write_dataset(tmp_path / "train.tsv", n=20)
    base = {"data": {"train": str(tmp_path / "train.tsv")}}
    with pytest.raises(RecipeError, match=r"steps\[1\].prune.min_epochs': min_epochs 4 is more than max_epochs 3.*Fix: lower min_epochs"):
        Recipe.from_dict({**base, "steps": [{"train": {}}, {"prune": {"epochs": "auto", "min_epochs": 4, "max_epochs": 3}}]})
    assert Recipe.from_dict({**base, "steps": [{"train": {"epochs": "auto"}}]}).steps[0][1]["min_epochs"] == 1
    parser = cli.build_parser()
    steps = cli._command_config(parser.parse_args(["compress", "train.tsv", "--epochs", "auto", "--min-epochs", "3"]), parser)["steps"]
    assert [(name, a["min_epochs"]) for s in steps for name, a in s.items() if name != "export"] == [("train", 3), ("prune", 3), ("quantize", 3)]
    bad = _cli("compress", tmp_path / "train.tsv", "--epochs", "auto", "--min-epochs", "30", "--out", tmp_path / "o")
    assert bad.returncode != 0 and "min_epochs 30 is more than max_epochs 20" in bad.stderr
    assert not (tmp_path / "o").exists()


def test_compress_trains_until_the_selection_split_stops_improving_by_default():
    from tfcompress import cli

    parser = cli.build_parser()

    def training(*flags):
        steps = cli._command_config(parser.parse_args(["compress", "train.tsv", *flags]), parser)["steps"]
        return [(name, a["epochs"], a["min_epochs"], a["choose"]) for s in steps for name, a in s.items() if name not in ("export", "auto")]

    # train on auto, never fewer than 2 epochs; the compression steps keep their fixed epochs
    assert training() == [("train", "auto", 2, "one_se"), ("prune", 2, 1, "one_se"), ("quantize", 1, 1, "one_se")]
    assert training("--epochs", "2") == [("train", 2, 2, "one_se"), ("prune", 2, 1, "one_se"), ("quantize", 2, 1, "one_se")]
    # a budget's dense model trains the 2 epochs its figures were measured with, unless told
    assert training("--max-loss", "0.5") == [("train", 2, 2, "one_se")]
    assert training("--max-loss", "0.5", "--epochs", "auto") == [("train", "auto", 2, "one_se")]
    assert training("--steps", "train,export", "--min-epochs", "1") == [("train", "auto", 1, "one_se")]


def test_the_epoch_rule_defaults_to_one_se_and_the_flag_reaches_every_step(tmp_path):
    from tfcompress import cli

    write_dataset(tmp_path / "train.tsv", n=20)
    base = {"data": {"train": str(tmp_path / "train.tsv")}}
    assert Recipe.from_dict({**base, "steps": [{"train": {"epochs": "auto"}}]}).steps[0][1]["choose"] == "one_se"
    with pytest.raises(RecipeError, match=r"steps\[0\].train.choose.*'one_se', 'best'"):
        Recipe.from_dict({**base, "steps": [{"train": {"epochs": "auto", "choose": "last"}}]})
    parser = cli.build_parser()
    steps = cli._command_config(parser.parse_args(["compress", "train.tsv", "--epochs", "auto", "--choose", "best"]), parser)["steps"]
    assert [(name, a["choose"]) for s in steps for name, a in s.items() if name != "export"] == [("train", "best"), ("prune", "best"), ("quantize", "best")]
    bad = _cli("compress", tmp_path / "train.tsv", "--choose", "last", "--out", tmp_path / "o")
    assert bad.returncode == 2 and "--choose: expected one_se or best, got 'last'" in bad.stderr
    assert not (tmp_path / "o").exists()


def test_too_few_examples_for_a_selection_split_are_refused_before_training(tmp_path):
    from tfcompress import text

    write_dataset(tmp_path / "train.tsv", n=4)
    write_dataset(tmp_path / "dev.tsv", n=4, seed=1)
    config = {
        "data": {"train": str(tmp_path / "train.tsv"), "dev": str(tmp_path / "dev.tsv"), "selection_fraction": 0.1},
        "steps": [{"train": {"epochs": "auto"}}],
    }
    with pytest.raises(text.DataFormatError, match=r"4 training example\(s\) are too few to set 10% aside as the selection split"):
        recipe.run(config, tmp_path / "out", log=lambda *_: None)
