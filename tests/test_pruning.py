"""Pruning: exact sparsity, structure, Bidirectional, the step callback, errors."""

import numpy as np
import pytest
import tensorflow as tf

import tfcompress
from tfcompress import keras, pruning

VOCAB, LEN = 64, 12


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (n, LEN)).astype("int32")
    y = (x[:, -1] > VOCAB // 2).astype("int32")  # learnable from the last token
    return x, y


def text_model(kind="lstm", units=8):
    inp = keras.Input((LEN,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 16, name="embedding")(inp)
    if kind == "lstm":
        x = keras.layers.LSTM(units, name="lstm")(x)
    elif kind == "gru":
        x = keras.layers.GRU(units, name="gru")(x)
    elif kind == "bidirectional":
        x = keras.layers.Bidirectional(keras.layers.LSTM(units), name="bilstm")(x)
    elif kind == "conv":
        x = keras.layers.Conv1D(8, 3, name="conv")(x)
        x = keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    out = keras.layers.Dense(2, activation="softmax", name="out")(x)
    return keras.Model(inp, out)


def _close(row, target):
    """Within one point of the target, or one weight for tiny tensors."""
    return abs(row["sparsity"] - target) <= max(0.01, 1 / row["size"])


def _fit(model, epochs=2, callbacks=None, batch_size=32):
    x, y = _data()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks)


@pytest.mark.parametrize("kind", ["lstm", "gru", "bidirectional", "conv"])
def test_trained_sparsity_is_within_one_point_and_strip_matches(keras, kind):
    model = text_model(kind)
    pruned = pruning.prune(model, target_sparsity=0.8, epochs=2, steps_per_epoch=8)
    _fit(pruned)  # no UpdatePruningStep passed: added automatically
    report = pruning.sparsity_report(pruned)
    assert {r["layer"] for r in report} >= {"embedding", "hidden", "out"}
    expected_weights = {"lstm": 2, "gru": 2, "bidirectional": 4, "conv": 1}[kind]
    assert sum(r["layer"] not in ("embedding", "hidden", "out") for r in report) == expected_weights
    for row in report:
        assert _close(row, 0.8), row
    assert sum(r["size"] for r in report if r["size"] >= 100) > 0.9 * sum(r["size"] for r in report)
    stripped = pruning.strip(pruned)
    assert not pruning.is_pruned(stripped)
    assert all(type(l).__module__.startswith("tf_keras") for l in stripped.layers)
    for row in pruning.sparsity_report(stripped):
        if row["layer"] in {r["layer"] for r in report}:
            assert _close(row, 0.8), row
    x, _ = _data(64, seed=5)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)


def test_biases_are_never_pruned(keras):
    model = text_model()
    for name in ("hidden", "out"):  # zero-initialised biases would prove nothing
        bias = model.get_layer(name).bias
        bias.assign(np.linspace(0.1, 0.5, bias.shape[0]))
    pruned = pruning.prune(model, target_sparsity=0.9, schedule="constant")
    _fit(pruned, epochs=1)
    stripped = pruning.strip(pruned)
    for name in ("hidden", "out"):
        bias = stripped.get_layer(name).bias.numpy()
        assert np.count_nonzero(bias) == bias.size
    assert np.count_nonzero(stripped.get_layer("lstm").cell.bias.numpy()) > 0


def test_two_four_structure_is_exact(keras):
    model = text_model("lstm", units=8)
    pruned = pruning.prune(model, structure="2:4", layers=["lstm", "hidden"])
    _fit(pruned, epochs=1)
    stripped = pruning.strip(pruned)
    lstm = stripped.get_layer("lstm").cell
    for weight in (lstm.kernel, lstm.recurrent_kernel, stripped.get_layer("hidden").kernel):
        w = weight.numpy()
        assert pruning.m_by_n_violations(w, 2, 4) == 0
        assert (w == 0).mean() == pytest.approx(0.5, abs=1e-6)  # exactly two in four
    assert np.count_nonzero(stripped.get_layer("embedding").embeddings.numpy() == 0) == 0


def test_block_sparsity_zeros_whole_blocks(keras):
    pruned = pruning.prune(text_model(), target_sparsity=0.5, schedule="constant", block_size=(1, 4), layers=["hidden"])
    _fit(pruned, epochs=1)
    w = pruning.strip(pruned).get_layer("hidden").kernel.numpy()  # (8, 8)
    blocks = (w.reshape(8, 2, 4) == 0).all(-1)
    assert blocks.mean() == pytest.approx(0.5)
    assert ((w == 0).reshape(8, 2, 4).any(-1) == blocks).all()  # no partial blocks


def test_layer_choice_by_type_name_and_predicate(keras):
    model = text_model("lstm")
    by_type = pruning.prune(model, layers=[keras.layers.Dense])
    assert by_type.tfcompress_pruning_report["pruned"] == ["hidden", "out"]
    by_name = pruning.prune(model, layers=["embedding"])
    assert by_name.tfcompress_pruning_report["pruned"] == ["embedding"]
    by_fn = pruning.prune(model, layers=lambda l: l.name != "out" and isinstance(l, pruning.PRUNABLE_TYPES))
    assert by_fn.tfcompress_pruning_report["pruned"] == ["embedding", "lstm", "hidden"]
    assert ("out", "not chosen by layers=") in by_fn.tfcompress_pruning_report["skipped"]


def test_each_layer_reaches_its_own_target_and_a_zero_stays_dense(keras):
    targets = {"embedding": 0.9, "lstm": 0.5, "hidden": 0.0, "out": 0.25}
    pruned = pruning.prune(text_model(), target_sparsity=targets, epochs=2, steps_per_epoch=8)
    assert pruned.tfcompress_pruning_report["pruned"] == ["embedding", "lstm", "out"]
    _fit(pruned)
    for row in pruning.sparsity_report(pruning.strip(pruned), include_unpruned=True):
        assert _close(row, targets[row["layer"]]), row


def test_polynomial_schedule_derived_from_epochs():
    s = pruning.schedule(0.8, epochs=4, steps_per_epoch=100)
    assert isinstance(s, tfcompress.pruning.layers.tfmot_sparsity.PolynomialDecay)
    config = s.get_config()["config"]
    # TFMOT counts steps from 1: optimizer step 300 (0-based) is its step 301.
    assert (config["begin_step"], config["end_step"]) == (1, 301) and config["final_sparsity"] == 0.8
    assert (config["end_step"] - config["begin_step"]) % config["frequency"] == 0
    should_prune, sparsity = s(tf.constant(301, tf.int64))
    assert bool(should_prune) and float(sparsity) == pytest.approx(0.8)
    constant = pruning.schedule(0.7)
    assert isinstance(constant, tfcompress.pruning.layers.tfmot_sparsity.ConstantSparsity)
    assert bool(constant(tf.constant(1, tf.int64))[0])  # prunes at the first step


def test_works_with_user_callbacks_metrics_validation_and_explicit_update_step(keras, tmp_path):
    pruned = pruning.prune(text_model(), target_sparsity=0.6, schedule="constant")
    x, y = _data()
    pruned.compile("adam", "sparse_categorical_crossentropy", ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(1)])
    seen = []
    history = pruned.fit(
        x,
        y,
        epochs=2,
        batch_size=32,
        verbose=0,
        validation_data=_data(64, seed=3),
        callbacks=[
            pruning.UpdatePruningStep(),
            keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e)),
            keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.weights.h5"), save_weights_only=True),
        ],
    )
    assert seen == [0, 1] and "val_accuracy" in history.history
    assert abs(pruning.sparsity_report(pruned).overall() - 0.6) <= 0.01


def test_plain_keras_loaded_model_trains_without_the_callback(keras, tmp_path):
    pruned = pruning.prune(text_model(), target_sparsity=0.5, schedule="constant")
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.models.load_model(path)  # plain Keras: no fit hook
    assert not getattr(loaded.fit, "_tfcompress_hook", False)
    _fit(loaded, epochs=1)
    assert abs(pruning.sparsity_report(loaded).overall() - 0.5) <= 0.01


def test_keras3_model_is_accepted():
    import keras as keras3

    k3 = keras3.Sequential(
        [keras3.Input((LEN,), dtype="int32"), keras3.layers.Embedding(VOCAB, 8), keras3.layers.LSTM(4), keras3.layers.Dense(2)]
    )
    pruned = pruning.prune(k3, target_sparsity=0.5, schedule="constant")
    assert pruning.is_pruned(pruned)
    x, _ = _data(8)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), np.asarray(k3(x)), atol=1e-5)


def test_mixed_precision_model_is_pruned_in_float32(keras):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = text_model()
    assert model.get_layer("lstm").compute_dtype == "float16"
    with pytest.warns(UserWarning, match="prunes and quantizes a float32 copy"):
        tfcompress._keras.graph._MIXED_WARNED.clear()
        pruned = pruning.prune(model, target_sparsity=0.5, schedule="constant")
    for layer in pruned.layers:
        assert layer.compute_dtype in ("float32", "int32"), layer.name
    _fit(pruned, epochs=1)
    assert abs(pruning.sparsity_report(pruned).overall() - 0.5) <= 0.01


def test_pruning_under_mirrored_strategy_on_two_cpus(keras, mirrored):
    strategy = mirrored
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        pruned = pruning.prune(text_model(), target_sparsity=0.7, epochs=2, steps_per_epoch=8)
        pruned.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x, y = _data()
    pruned.fit(x, y, batch_size=32, epochs=2, verbose=0)
    for row in pruning.sparsity_report(pruned):
        assert _close(row, 0.7), row


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"target_sparsity": 1.0}, r"target_sparsity must be a number in \[0, 1\).*Received: target_sparsity=1.0"),
        ({"target_sparsity": -0.1}, r"Received: target_sparsity=-0.1"),
        ({"target_sparsity": "80%"}, r"Received: target_sparsity='80%'"),
        ({"structure": "2:4", "target_sparsity": 0.8}, r"structure='2:4' fixes the sparsity at 0.5.*target_sparsity=0.8"),
        # an explicit value equal to the default is still an explicit value
        ({"structure": "1:4", "target_sparsity": 0.5}, r"structure='1:4' fixes the sparsity at 0.25.*target_sparsity=0.5"),
        ({"layers": ["lstm", "Dense_1"]}, r"prune\(\): layers names 'Dense_1', but model .* has no such layer. Its layers: .*lstm.*Fix: use one of these names"),
        ({"structure": "2:4", "block_size": (1, 4)}, r"structure='2:4' and block_size=\(1, 4\) conflict"),
        ({"structure": "4:2"}, r"structure must be 'M:N'.*Received: structure='4:2'"),
        ({"block_size": (0, 4)}, r"block_size must be a pair of positive integers"),
        ({"block_pooling": "SUM"}, r"block_pooling='SUM'"),
        ({"schedule": "polynomial"}, r"schedule='polynomial' needs to know when to reach the target"),
        ({"schedule": "cosine"}, r"Received: schedule='cosine'"),
        ({"layers": lambda layer: False, "target_sparsity": 0.5}, r"no layer of model .* was chosen and prunable"),
        ({"layers": [3]}, r"Received an item 3"),
        ({"target_sparsity": {"lstm": 1.2}}, r"target_sparsity\['lstm'\] must be a number in \[0, 1\)"),
        ({"target_sparsity": {"lstm": 0.5}, "layers": ["lstm"]}, r"target_sparsity as a dict .* cannot be combined with layers="),
        ({"target_sparsity": {"lstm": 0.0}}, r"prunes no layer \(every value is 0\)"),
        ({"target_sparsity": {"lstmm": 0.5}}, r"has no such layer"),
    ],
)
def test_bad_arguments_are_named(kwargs, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        pruning.prune(text_model(), **kwargs)


def test_unprunable_chosen_layer_and_structure_misfit_are_named(keras):
    inp = keras.Input((LEN,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 6, name="emb")(inp)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.LSTM(4, name="lstm")(x)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    with pytest.raises(ValueError, match=r"layer 'norm' \(LayerNormalization\) was chosen for pruning, but it has no weights TFMOT prunes"):
        pruning.prune(model, layers=["norm"])
    with pytest.raises(ValueError, match=r"structure='2:4' cannot apply to layer 'lstm' \(LSTM\): a weight of shape \(6, 16\)"):
        pruning.prune(model, structure="2:4", layers=["lstm"])
    # Whole embedding rows as blocks: TFMOT fails at the first training step, so refused up front.
    with pytest.raises(ValueError, match=r"block_size=\(1, 6\) spans a whole dimension of layer 'emb'.s weight of shape \(64, 6\)"):
        pruning.prune(model, block_size=(1, 6), layers=["emb"])


def test_subclassed_and_already_pruned_models_are_refused(keras):
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"prune\(\) needs a Sequential or Functional model; model 'sub' is a subclassed model"):
        pruning.prune(sub)
    pruned = pruning.prune(text_model(), schedule="constant")
    with pytest.raises(ValueError, match=r"already pruned.*strip"):
        pruning.prune(pruned)
