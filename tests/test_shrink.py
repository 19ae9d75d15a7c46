"""Structural pruning (`pruning.shrink`): whole units out, the same answers
when the removed units were dead, and the chain (prune, QAT, export) after it."""

import numpy as np
import pytest

from tfcompress import export, models, pruning, quantization

VOCAB, LEN = 200, 10
RNN_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def _ids(n=64, seed=0):
    return np.random.default_rng(seed).integers(1, VOCAB, (n, LEN)).astype("int32")


def _kill_rnn(weights, units, gates, dead):
    """Zeroes the gate columns of `dead` units: such a unit outputs exactly 0."""
    cols = np.concatenate([g * units + dead for g in range(gates)])
    weights = [w.copy() for w in weights]
    weights[0][:, cols] = 0
    weights[1][:, cols] = 0
    for b in weights[2:]:
        b[..., cols] = 0
    return weights


def _kill(layer, rng, keep_fraction=0.5, same_in_both_directions=False):
    """Makes units of `layer` dead (zero output) so that removing them is exact;
    returns how many units each part keeps."""
    name = type(layer).__name__
    if name == "Bidirectional":
        inner = layer.forward_layer
        units, gates = inner.units, RNN_GATES[type(inner).__name__]
        keep = int(round(units * keep_fraction))
        weights = layer.get_weights()
        half = len(weights) // 2
        dead_f = rng.choice(units, units - keep, replace=False)
        dead_b = dead_f if same_in_both_directions else rng.choice(units, units - keep, replace=False)
        layer.set_weights(_kill_rnn(weights[:half], units, gates, dead_f) + _kill_rnn(weights[half:], units, gates, dead_b))
        return keep
    if name in RNN_GATES:
        keep = int(round(layer.units * keep_fraction))
        dead = rng.choice(layer.units, layer.units - keep, replace=False)
        layer.set_weights(_kill_rnn(layer.get_weights(), layer.units, RNN_GATES[name], dead))
        return keep
    weights = [w.copy() for w in layer.get_weights()]
    width = weights[0].shape[-1]
    keep = int(round(width * keep_fraction))
    dead = rng.choice(width, width - keep, replace=False)
    weights[0][..., dead] = 0
    for b in weights[1:]:
        b[dead] = 0
    layer.set_weights(weights)
    return keep


def _classifier():
    return models.lstm_classifier(
        VOCAB, max_len=LEN, embedding_dim=16, units=8, num_layers=2, bidirectional=True, embedding_rank=6, embedding_vocab_size=120,
        mask_zero=True,
    )


def _sequential_mix(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((LEN,), dtype="int32"),
            layers.Embedding(VOCAB, 12, name="emb"),
            layers.Conv1D(10, 3, padding="same", activation="relu", name="conv"),
            layers.BatchNormalization(name="norm"),
            layers.GRU(8, return_sequences=True, name="gru"),
            layers.Bidirectional(layers.SimpleRNN(6, return_sequences=True), merge_mode="sum", name="birnn"),
            layers.GlobalMaxPooling1D(name="pool"),
            layers.Dense(10, activation="relu", name="hidden"),
            layers.Dense(3, activation="softmax", name="out"),
        ]
    )


def _kill_all(model, names, keep_fraction=0.5):
    rng = np.random.default_rng(1)
    return {n: _kill(model.get_layer(n), rng, keep_fraction, same_in_both_directions=n == "birnn") for n in names}


def test_removing_dead_units_keeps_the_answers_whatever_the_criterion(keras):
    model = _classifier()
    kept = _kill_all(model, ["embedding", "embedding_projection", "bidirectional_0", "bidirectional_1"])
    x = _ids()
    x[:, :3] = 0  # padding, masked
    y = np.random.default_rng(2).integers(0, 2, len(x))
    expected = model(x, training=False).numpy()
    for criterion in ("l2", "activation", "taylor"):  # a dead unit scores 0 by each of them
        small = pruning.shrink(model, data=(x, y), units=0.5, criterion=criterion, loss="sparse_categorical_crossentropy")
        report = small.tfcompress_shrink_report
        assert {n: r["after"] for n, r in report["layers"].items()} == kept, criterion
        assert report["skipped"] == {"logits": "it computes the model's output (through 'probabilities')"}
        assert small.get_layer("bidirectional_0").forward_layer.units == 4
        assert small.get_layer("embedding_projection").kernel.shape == (3, 8)
        assert report["params_after"] == small.count_params() < report["params_before"] == model.count_params()
        assert small.get_layer("embedding").mask_zero
        np.testing.assert_allclose(small(x, training=False).numpy(), expected, atol=1e-5, err_msg=criterion)


def test_gru_conv_norm_pooling_and_merged_directions(keras):
    model = _sequential_mix(keras)
    kept = _kill_all(model, ["emb", "conv", "gru", "birnn", "hidden"])
    small = pruning.shrink(model, units={"emb": 6, "conv": 0.5, "GRU": 0.5, "birnn": 3, "hidden": 5})
    assert {n: r["after"] for n, r in small.tfcompress_shrink_report["layers"].items()} == kept
    assert small.get_layer("norm").get_weights()[0].shape == (5,)
    x = _ids(seed=4)
    np.testing.assert_allclose(small(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-5)


def test_stacked_char_model_and_keras3_input(keras):
    import keras as keras3

    model = models.char_lstm_lm(40, window=LEN, embedding_dim=8, units=12, num_layers=3)
    kept = _kill_all(model, ["lstm_0", "lstm_1", "lstm_2"], keep_fraction=0.25)
    small = pruning.shrink(model, units={"LSTM": 0.25})
    assert [small.get_layer(f"lstm_{i}").units for i in range(3)] == [kept[f"lstm_{i}"] for i in range(3)] == [3, 3, 3]
    x = np.random.default_rng(5).integers(0, 40, (32, LEN)).astype("int32")
    np.testing.assert_allclose(small(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-5)

    k3 = keras3.Sequential([keras3.Input((LEN,), dtype="int32"), keras3.layers.Embedding(VOCAB, 8), keras3.layers.LSTM(6), keras3.layers.Dense(2)])
    lstm = k3.layers[1]
    lstm.set_weights(_kill_rnn(lstm.get_weights(), 6, 4, np.array([0, 2, 4])))
    small = pruning.shrink(k3, units={"LSTM": 0.5})
    emb, lstm = [l for l in small.layers if type(l).__name__ in ("Embedding", "LSTM")]
    assert lstm.units == 3 and emb.output_dim == 8
    x = _ids(16)
    np.testing.assert_allclose(small(x, training=False).numpy(), np.asarray(k3(x, training=False)), atol=1e-5)


def test_mixed_precision_model_keeps_its_policy(keras):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=16, units=8)
    small = pruning.shrink(model, units=0.5)
    assert small.get_layer("lstm_0").dtype_policy.name == "mixed_float16"
    assert small.get_layer("probabilities").dtype_policy.name == "float32"
    assert small.predict(_ids(8), verbose=0).dtype == np.float32


def test_shrink_then_prune_then_qat_then_export(keras, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB, (1024, LEN)).astype("int32")
    y = (x[:, -1] > VOCAB // 2).astype("int32")
    model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=16, units=16, dropout=0.0)
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    dense_accuracy = model.evaluate(x, y, verbose=0)[1]

    small = pruning.shrink(model, data=x, units=0.5, criterion="activation")
    small.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"])
    small.fit(x, y, batch_size=64, epochs=3, verbose=0)
    assert small.evaluate(x, y, verbose=0)[1] >= min(dense_accuracy, 0.9) - 0.05

    pruned = pruning.prune(small, target_sparsity=0.5, schedule="constant")
    pruned.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    pruned.fit(x, y, batch_size=64, epochs=1, verbose=0)
    stripped = pruning.strip(pruned)
    assert stripped.get_layer("lstm_0").units == 8 and stripped.get_layer("embedding").output_dim == 8
    kernel = stripped.get_layer("lstm_0").get_weights()[0]
    assert (kernel == 0).mean() == pytest.approx(0.5, abs=0.01)

    qat = quantization.quantize(stripped)
    qat.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    qat.fit(x, y, batch_size=64, epochs=1, verbose=0)
    after = quantization.strip(qat)
    assert after.get_layer("lstm_0").units == 8
    assert (after.get_layer("lstm_0").get_weights()[0] == 0).mean() >= 0.5 - 0.01  # zeros kept through QAT
    for mode in ("dynamic", "int8"):
        result = export.to_tflite(qat, tmp_path / f"{mode}.tflite", mode=mode, representative_data=x[:256], isolate=False)
        assert result.verification["agreement"] >= 0.98, (mode, result.verification)
        ops = set(export.TFLiteModel(result.path).ops)
        assert not any("Flex" in op or "CUSTOM" in op for op in ops), ops


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"units": {"logits": 1}}, ValueError, r"layer 'logits' \(Dense\) cannot lose units: it computes the model's output \(through 'probabilities'\)"),
        ({"units": {"lstm": 4}}, ValueError, r"no layer of that name or class. Layers whose units can be removed: embedding \(Embedding\), lstm_0 \(LSTM\), logits \(Dense\)"),
        ({"units": {"lstm_0": 9}}, ValueError, r"units\['lstm_0'\] must be a fraction in \(0, 1\) or a count in \[1, 8\]"),
        ({"units": 1.5}, ValueError, r"units must be a fraction in \(0, 1\)"),
        ({"units": "half"}, TypeError, r"units must be a fraction in \(0, 1\) \(e.g. 0.5"),
        ({"units": {"lstm_0": 8}}, ValueError, "no layer of model 'lstm_classifier' loses units"),
        ({"criterion": "random"}, ValueError, "criterion must be one of 'l2', 'activation', 'taylor'"),
        ({"criterion": "activation"}, ValueError, r"scores units on examples: pass data=x"),
        ({"criterion": "taylor", "data": _ids(8), "loss": "sparse_categorical_crossentropy"}, ValueError, r"criterion='taylor' needs labels: data=\(x, y\)"),
        ({"criterion": "taylor", "data": (_ids(8), np.zeros(8))}, ValueError, r"needs the training loss: compile the model, or pass loss="),
    ],
)
def test_bad_arguments_are_named(keras, kwargs, error, pattern):
    model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=16, units=8, compile=False)
    with pytest.raises(error, match=pattern):
        pruning.shrink(model, **kwargs)


def test_layers_that_cannot_take_fewer_inputs_are_named(keras):
    layers = keras.layers
    inputs = keras.Input((LEN,), dtype="int32")
    emb = layers.Embedding(VOCAB, 8, name="emb")(inputs)
    flat = layers.Flatten(name="flat")(emb)
    model = keras.Model(inputs, layers.Dense(2, name="out")(layers.Dense(4, name="hidden")(flat)))
    with pytest.raises(ValueError, match=r"layer 'emb' \(Embedding\) cannot lose units: layer 'flat' \(Flatten\) reads it"):
        pruning.shrink(model, units={"emb": 4})
    small = pruning.shrink(model, units=0.5)  # what can shrink does; the rest is reported
    assert small.tfcompress_shrink_report["skipped"]["emb"].startswith("layer 'flat' (Flatten) reads it")
    assert small.get_layer("hidden").units == 2


def test_wrapped_models_are_refused(keras):
    model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=16, units=8)
    with pytest.raises(ValueError, match=r"shrink\(\): model 'lstm_classifier' has compression wrappers. Fix: tfcompress.pruning.strip"):
        pruning.shrink(pruning.prune(model), units=0.5)


def test_multiply_adds_count_the_matrix_products(keras):
    model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=16, units=8, num_layers=2, bidirectional=True, embedding_rank=6)
    # projection 6->16 per step; layer 0: 2 directions x 4 gates x 8 units x (16 + 8) per step; layer 1 reads 16; logits 16->2
    expected = LEN * 6 * 16 + 2 * LEN * 4 * 8 * (16 + 8) + 2 * LEN * 4 * 8 * (16 + 8) + 16 * 2
    assert pruning.multiply_adds(model) == expected
    half = pruning.shrink(model, units=0.5)
    assert pruning.multiply_adds(half) == LEN * 3 * 8 + 2 * (2 * LEN * 4 * 4 * (8 + 4)) + 8 * 2
    report = half.tfcompress_shrink_report
    assert (report["multiply_adds_before"], report["multiply_adds_after"]) == (expected, pruning.multiply_adds(half))
    free = models.lstm_classifier(VOCAB, embedding_dim=16, units=8)
    with pytest.raises(ValueError, match=r"layer 'lstm_0' reads sequences of any length. Fix: pass length="):
        pruning.multiply_adds(free)
    assert pruning.multiply_adds(free, length=LEN) == LEN * 4 * 8 * (16 + 8) + 8 * 2
    assert pruning.shrink(free, units=0.5).tfcompress_shrink_report["multiply_adds_after"] is None
