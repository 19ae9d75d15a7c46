"""Keras 3 -> tf_keras conversion: same function, same weights, clear refusals."""

import numpy as np
import pytest

import keras as keras3  # Keras 3, on purpose
import tfcompress
from tfcompress import ConversionError, as_tf_keras

L = keras3.layers
SEQ = 12
VOCAB = 40


def _randomize(model, seed=0):
    """Non-trivial weights everywhere (biases too), so every weight is tested."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(scale=0.4, size=tuple(w.shape)).astype(w.dtype))


def _tokens(batch=8, seed=1):
    return np.random.default_rng(seed).integers(1, VOCAB, size=(batch, SEQ)).astype("int32")


# Each entry: layers applied after Input((SEQ,), int32) -> Embedding(VOCAB, 6).
LAYER_TABLE = {
    "embedding": [],
    "lstm": [L.LSTM(5)],
    "lstm_seq": [L.LSTM(5, return_sequences=True), L.GlobalAveragePooling1D()],
    "gru": [L.GRU(5)],
    "gru_reset_before": [L.GRU(5, reset_after=False)],
    "simple_rnn": [L.SimpleRNN(5, activation="relu")],
    "bidirectional_lstm": [L.Bidirectional(L.LSTM(4))],
    "bidirectional_gru_sum": [L.Bidirectional(L.GRU(4, return_sequences=True), merge_mode="sum")],
    "dense": [L.Dense(7, activation="relu")],
    "dropout": [L.Dropout(0.5), L.Flatten()],
    "spatial_dropout": [L.SpatialDropout1D(0.2), L.Flatten()],
    "conv1d": [L.Conv1D(6, 3, padding="causal", dilation_rate=2, activation="relu")],
    "max_pooling": [L.MaxPooling1D(3, strides=2, padding="same")],
    "average_pooling": [L.AveragePooling1D(2)],
    "global_max_pooling": [L.GlobalMaxPooling1D()],
    "global_average_pooling": [L.GlobalAveragePooling1D()],
    "layer_normalization": [L.LayerNormalization(epsilon=1e-4)],
    "batch_normalization": [L.BatchNormalization()],
    "activation": [L.Activation("gelu")],
    "time_distributed": [L.TimeDistributed(L.Dense(3))],
}


@pytest.mark.parametrize("case", sorted(LAYER_TABLE))
def test_functional_conversion_gives_same_outputs(case):
    inp = keras3.Input((SEQ,), dtype="int32", name="tokens")
    x = L.Embedding(VOCAB, 6)(inp)
    for layer in LAYER_TABLE[case]:
        x = layer(x)
    model = keras3.Model(inp, x, name=f"m_{case}")
    _randomize(model)

    converted = as_tf_keras(model)

    assert isinstance(converted, tfcompress.keras.Model)
    assert [l.name for l in converted.layers] == [l.name for l in model.layers]
    x = _tokens()
    np.testing.assert_allclose(
        converted(x, training=False).numpy(), np.asarray(model(x, training=False)), atol=1e-5
    )


def test_sequential_stays_sequential_with_mask():
    model = keras3.Sequential(
        [
            keras3.Input((SEQ,), dtype="int32"),
            L.Embedding(VOCAB, 4, mask_zero=True),
            L.LSTM(3),
            L.Dense(2, activation="softmax"),
        ],
        name="seq",
    )
    _randomize(model)
    x = _tokens()
    x[:, :4] = 0  # padding that the mask must hide

    converted = as_tf_keras(model)

    assert isinstance(converted, tfcompress.keras.Sequential)
    assert converted.layers[0].mask_zero
    np.testing.assert_allclose(converted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_multi_input_shared_layer_and_merge():
    a = keras3.Input((SEQ,), dtype="int32", name="a")
    b = keras3.Input((SEQ,), dtype="int32", name="b")
    emb = L.Embedding(VOCAB, 5)
    enc = L.LSTM(4)
    merged = L.Concatenate()([enc(emb(a)), enc(emb(b))])
    summed = L.Add()([L.Dense(8)(merged), merged])
    model = keras3.Model([a, b], summed)
    _randomize(model)

    converted = as_tf_keras(model)

    assert len(converted.weights) == len(model.weights)  # shared, not duplicated
    xa, xb = _tokens(seed=2), _tokens(seed=3)
    np.testing.assert_allclose(
        converted([xa, xb]).numpy(), np.asarray(model([xa, xb])), atol=1e-5
    )


def test_masking_layer_and_unbuilt_sequential():
    unbuilt = keras3.Sequential([L.Dense(3)])
    assert isinstance(as_tf_keras(unbuilt), tfcompress.keras.Sequential)

    inp = keras3.Input((SEQ, 3))
    model = keras3.Model(inp, L.LSTM(2)(L.Masking(0.0)(inp)))
    _randomize(model)
    x = np.random.default_rng(0).normal(size=(4, SEQ, 3)).astype("float32")
    x[:, -3:] = 0.0
    np.testing.assert_allclose(as_tf_keras(model)(x).numpy(), np.asarray(model(x)), atol=1e-5)


def test_mixed_precision_policy_is_carried_over():
    model = keras3.Sequential(
        [
            keras3.Input((SEQ,), dtype="int32"),
            L.Embedding(VOCAB, 4, dtype="mixed_float16"),
            L.LSTM(3, dtype="mixed_float16"),
            L.Dense(2, dtype="float32"),
        ]
    )
    converted = as_tf_keras(model)
    assert converted.layers[1].dtype_policy.name == "mixed_float16"
    assert converted.layers[2].dtype_policy.name == "float32"


def test_tf_keras_model_is_returned_unchanged(keras):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    assert as_tf_keras(model) is model


def test_subclassed_model_is_refused_with_fix():
    class MyModel(keras3.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    model = MyModel()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ConversionError, match=r"model 'my_model' \(.*MyModel\) is a subclassed Keras 3 model.*Fix: build it as a Sequential or Functional"):
        as_tf_keras(model)


def test_unsupported_layer_is_named_with_class_and_fix():
    inp = keras3.Input((SEQ, 8))
    out = L.MultiHeadAttention(2, 4, name="attn")(inp, inp)
    model = keras3.Model(inp, out)
    with pytest.raises(
        ConversionError,
        match=r"layer 'attn' \(keras\.layers\.MultiHeadAttention\) cannot be converted.*"
        r"Fix: build the model with `from tfcompress import keras`",
    ):
        as_tf_keras(model)


def test_custom_layer_is_refused():
    class Doubler(L.Layer):
        def call(self, x):
            return 2 * x

    inp = keras3.Input((4,))
    model = keras3.Model(inp, Doubler(name="twice")(inp))
    with pytest.raises(ConversionError, match=r"layer 'twice' \(.*Doubler\) is a custom layer"):
        as_tf_keras(model)


def test_keras3_only_argument_with_effect_is_refused():
    inp = keras3.Input((SEQ, 4))
    model = keras3.Model(inp, L.Dense(3, lora_rank=2, name="adapted")(inp))
    with pytest.raises(ConversionError, match=r"layer 'adapted'.*lora_rank=2 has no equivalent"):
        as_tf_keras(model)


def test_non_model_is_a_type_error():
    with pytest.raises(TypeError, match=r"Received: model of type builtins\.str"):
        as_tf_keras("model.keras")


def test_functional_mask_from_embedding_reaches_bidirectional_lstm():
    inp = keras3.Input((SEQ,), dtype="int32")
    x = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
    x = L.Bidirectional(L.LSTM(3, return_sequences=True))(x)
    x = L.GlobalAveragePooling1D()(x)  # mask-aware average
    model = keras3.Model(inp, L.Dense(1)(x))
    _randomize(model)
    x = _tokens()
    x[:, -5:] = 0

    np.testing.assert_allclose(as_tf_keras(model)(x).numpy(), np.asarray(model(x)), atol=1e-5)


def test_dropout_still_active_in_training_after_conversion():
    inp = keras3.Input((64,))
    model = keras3.Model(inp, L.Dropout(0.5)(inp))
    converted = as_tf_keras(model)
    out = converted(np.ones((4, 64), "float32"), training=True).numpy()
    assert (out == 0).mean() > 0.2  # dropout applies; not frozen in inference mode


def test_keras_ops_inside_model_are_refused_by_name():
    inp = keras3.Input((4,))
    model = keras3.Model(inp, keras3.ops.exp(L.Dense(2)(inp)))
    with pytest.raises(ConversionError, match=r"operation 'exp' .*keras\.ops.*Fix"):
        as_tf_keras(model)


def test_every_public_entry_point_that_takes_a_model_accepts_keras3(tmp_path):
    from tfcompress import distillation, export, precision, pruning, quantization

    def k3_classifier(units):
        return keras3.Sequential(
            [
                keras3.Input((SEQ,), dtype="int32"),
                L.Embedding(VOCAB, 8),
                L.LSTM(units),
                L.Dense(2, activation="softmax"),
            ]
        )

    teacher, student = k3_classifier(8), k3_classifier(4)
    x = _tokens(16)
    y = (x[:, -1] > VOCAB // 2).astype("int32")
    assert pruning.is_pruned(pruning.prune(teacher, schedule="constant"))
    assert [r["weight"] for r in pruning.sparsity_report(teacher)] == [
        "embeddings", "kernel", "recurrent_kernel", "kernel"
    ]
    assert pruning.strip(teacher).count_params() == teacher.count_params()
    assert quantization.is_quantized(quantization.quantize(teacher))
    assert quantization.strip(teacher).count_params() == teacher.count_params()
    assert precision.float32_output(teacher)[1] is False
    assert precision.rebuild_float32(teacher).count_params() == teacher.count_params()
    distiller = distillation.Distiller(teacher, student)
    distiller.compile("adam", "sparse_categorical_crossentropy")
    before = [w.copy() for w in student.get_weights()]
    distiller.fit(x, y, epochs=1, verbose=0)
    # The caller's Keras 3 student is the trained one (not an untrained original beside a trained copy).
    assert any(not np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
    np.testing.assert_allclose(np.asarray(student.predict(x, verbose=0)), distiller.student.predict(x, verbose=0), atol=1e-5)
    result = export.to_tflite(teacher, tmp_path / "t.tflite", isolate=False)
    r = export.evaluate(result.path, (x, y), reference=teacher, latency_runs=0, verbose=False)
    assert r["agreement"] == 1.0
    for entry in (pruning.prune, quantization.quantize, pruning.sparsity_report):
        with pytest.raises(TypeError, match=r"must be a Keras model \(tf_keras or Keras 3\)"):
            entry("not a model")
