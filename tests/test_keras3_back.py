"""tf_keras -> Keras 3: a compressed model goes back to a Keras 3 workflow."""

import numpy as np
import pytest

import keras as keras3  # Keras 3, on purpose
import tfcompress
from tfcompress import ConversionError, as_keras3, as_tf_keras, keras, models, pruning, quantization
from test_convert import LAYER_TABLE, SEQ, VOCAB, L, _randomize, _tokens


def _randomize_tf_keras(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if hasattr(w, "assign"):  # not a TextVectorization's vocabulary table
            w.assign(rng.normal(scale=0.4, size=tuple(w.shape)).astype(w.dtype.as_numpy_dtype))


@pytest.mark.parametrize("case", sorted(LAYER_TABLE))
def test_every_convertible_layer_comes_back_with_the_same_outputs(case):
    inp = keras3.Input((SEQ,), dtype="int32", name="tokens")
    x = L.Embedding(VOCAB, 6)(inp)
    for layer in LAYER_TABLE[case]:
        x = layer.__class__.from_config(layer.get_config())(x)
    original = keras3.Model(inp, x, name=f"m_{case}")
    _randomize(original)

    back = as_keras3(as_tf_keras(original))

    assert isinstance(back, keras3.Model) and not isinstance(back, keras.Model)
    assert [l.name for l in back.layers] == [l.name for l in original.layers]
    x = _tokens()
    np.testing.assert_allclose(np.asarray(back(x, training=False)), np.asarray(original(x, training=False)), atol=1e-5)


def test_sequential_mask_and_shared_layers():
    seq = keras.Sequential([keras.Input((SEQ,), dtype="int32"), keras.layers.Embedding(VOCAB, 4, mask_zero=True), keras.layers.LSTM(3), keras.layers.Dense(2)])
    _randomize_tf_keras(seq)
    x = _tokens()
    x[:, :4] = 0
    back = as_keras3(seq)
    assert isinstance(back, keras3.Sequential)
    np.testing.assert_allclose(np.asarray(back(x)), seq(x).numpy(), atol=1e-5)

    a, b = keras.Input((SEQ,), dtype="int32", name="a"), keras.Input((SEQ,), dtype="int32", name="b")
    emb, enc = keras.layers.Embedding(VOCAB, 5), keras.layers.GRU(4)
    shared = keras.Model([a, b], keras.layers.Concatenate()([enc(emb(a)), enc(emb(b))]))
    _randomize_tf_keras(shared)
    back = as_keras3(shared)
    assert len(back.weights) == len(shared.weights)
    xa, xb = _tokens(seed=2), _tokens(seed=3)
    np.testing.assert_allclose(np.asarray(back([xa, xb])), shared([xa, xb]).numpy(), atol=1e-5)


def test_a_pruned_and_quantized_model_keeps_its_zeros_and_values_and_trains_in_keras3(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(1, 200, (64, 16)).astype("int32"), rng.integers(0, 2, 64)
    model = models.lstm_classifier(200, max_len=16, embedding_dim=8, units=8, bidirectional=True)
    pruned = pruning.prune(model, target_sparsity=0.6, schedule="constant")
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=1, verbose=0)
    qat = quantization.quantize(pruning.strip(pruned), bits=4)
    qat.compile("adam", "sparse_categorical_crossentropy")
    qat.fit(x, y, epochs=1, verbose=0)
    stripped = quantization.strip(qat)

    back = as_keras3(qat)  # wrappers are stripped on the way

    np.testing.assert_allclose(np.asarray(back(x)), stripped.predict(x, verbose=0), atol=1e-5)
    kernel = back.get_layer("bidirectional_0").forward_layer.cell.kernel.numpy()
    assert np.mean(kernel == 0) >= 0.55 and len(np.unique(kernel)) <= 2**4
    # ... and a Keras 3 workflow goes on: fit, save, export.
    back.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = [np.array(w) for w in back.trainable_weights]
    losses = back.fit(x, y, epochs=3, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    assert all(not np.array_equal(a, np.asarray(w)) for a, w in zip(before, back.trainable_weights)), "every weight trained"
    back.save(tmp_path / "k3.keras")
    reloaded = keras3.saving.load_model(tmp_path / "k3.keras")
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(back(x)), atol=1e-6)
    back.export(str(tmp_path / "served"), format="tf_saved_model", verbose=False)
    assert (tmp_path / "served" / "saved_model.pb").exists()


def test_what_keras3_cannot_rebuild_is_refused_by_name():
    capped = models.lstm_classifier(100, max_len=8, embedding_vocab_size=20)
    with pytest.raises(ConversionError, match=r"'cap_vocabulary' \(tfcompress.models.CapVocabulary\) is a custom layer"):
        as_keras3(capped)
    assert as_keras3(keras3.Sequential([keras3.Input((2,)), keras3.layers.Dense(1)])) is not None  # Keras 3 passes through
    with pytest.raises(TypeError):
        as_keras3("not a model")
    assert tfcompress.as_keras3 is as_keras3


def test_a_text_vectorization_layer_comes_back_with_its_vocabulary():
    import tensorflow as tf

    texts = ["the cat sat", "a dog ran", "the end", "Unknown WORDS!"]
    layer = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=6, ngrams=2)
    layer.adapt(texts[:3])
    inp = keras.Input((1,), dtype="string")
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(20, 3)(layer(inp)))))
    _randomize_tf_keras(model)
    back = as_keras3(model)
    strings = tf.constant(texts)[:, None]
    np.testing.assert_allclose(np.asarray(back(strings)), model(strings).numpy(), atol=1e-6)
