"""The low-rank factorised embedding: SVD start, reported error, the same
inputs and outputs, and the chain (prune, cluster, QAT, export) after it."""

import numpy as np
import pytest

from tfcompress import clustering, embeddings, export, models, pruning, quantization

VOCAB, LEN, DIM = 300, 12, 32


def _data(n=512, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (n, LEN)).astype("int32")
    y = (x[:, -1] > VOCAB // 2).astype("int32")
    return x, y


def _trained(mask_zero=False, epochs=2):
    model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=DIM, units=16, mask_zero=mask_zero, dropout=0.0)
    x, y = _data(2048)
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    return model


def test_svd_start_reports_the_error_numpy_computes_and_keeps_inputs_and_outputs(keras):
    model = _trained()
    table = model.get_layer("embedding").embeddings.numpy()
    small = embeddings.factorize(model, rank=8)
    report = small.tfcompress_factorize_report
    assert report["rank"] == 8 and report["params_after"] == VOCAB * 8 + 8 * DIM
    u, s, vt = np.linalg.svd(table, full_matrices=False)
    best = (u[:, :8] * s[:8]) @ vt[:8]
    expected = np.linalg.norm(table - best) / np.linalg.norm(table)
    assert report["relative_error"] == pytest.approx(expected, rel=1e-4)
    # The factors multiply back to the best rank-8 table (Eckart-Young).
    product = small.get_layer("embedding").embeddings.numpy() @ small.get_layer("embedding_projection").kernel.numpy()
    np.testing.assert_allclose(product, best, atol=1e-5)
    assert [t.shape for t in small.inputs] == [t.shape for t in model.inputs]
    assert small.output_shape == model.output_shape
    np.testing.assert_array_equal(small.get_layer("logits").kernel.numpy(), model.get_layer("logits").kernel.numpy())


def test_a_low_rank_table_factorises_without_changing_the_answers(keras):
    model = _trained(mask_zero=True)
    layer = model.get_layer("embedding")
    rng = np.random.default_rng(1)
    layer.set_weights([(rng.normal(size=(VOCAB, 4)) @ rng.normal(size=(4, DIM)) * 0.05).astype("float32")])
    small = embeddings.factorize(model, max_error=0.001)
    assert small.tfcompress_factorize_report["rank"] == 4  # the smallest rank within the error
    assert small.get_layer("embedding").mask_zero
    x, _ = _data(64, seed=3)
    x[:, :3] = 0  # padding, masked
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_factorised_model_prunes_clusters_quantizes_and_exports_to_builtins(keras, tmp_path):
    model = _trained(epochs=3)
    x, y = _data(512, seed=7)
    small = embeddings.factorize(model, rank=12)
    small.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    small.fit(*_data(2048), batch_size=64, epochs=1, verbose=0)
    assert small.evaluate(x, y, verbose=0)[1] >= model.evaluate(x, y, verbose=0)[1] - 0.05
    pruned = pruning.prune(small, target_sparsity=0.5, schedule="constant")
    pruned.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    pruned.fit(*_data(2048), batch_size=64, epochs=1, verbose=0)
    assert "embedding_projection" in pruned.tfcompress_pruning_report["pruned"]
    clustered = clustering.cluster(pruned, clusters=8)
    clustered.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    clustered.fit(*_data(2048), batch_size=64, epochs=1, verbose=0)
    qat = quantization.quantize(clustering.strip(clustered))
    assert "embedding_projection" in qat.tfcompress_quantization_report["clusters_kept"]
    qat.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    qat.fit(*_data(2048), batch_size=64, epochs=1, verbose=0)
    for mode in ("float32", "dynamic", "int8"):
        result = export.to_tflite(qat, tmp_path / f"{mode}.tflite", mode=mode, representative_data=x, isolate=False)
        assert result.verification["agreement"] >= 0.98
        ops = set(export.TFLiteModel(result.path).ops)
        assert {"GATHER", "FULLY_CONNECTED"} <= ops and not any("Flex" in op or "CUSTOM" in op for op in ops), ops


def test_lstm_classifier_builds_a_factorised_table():
    model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=DIM, embedding_rank=8)
    assert model.get_layer("embedding").output_dim == 8
    assert model.get_layer("embedding_projection").kernel.shape == (8, DIM)
    with pytest.raises(ValueError, match=r"embedding_rank \(32\) must be smaller than embedding_dim \(32\)"):
        models.lstm_classifier(VOCAB, embedding_dim=DIM, embedding_rank=DIM)


def test_keras3_model_is_factorised(keras):
    import keras as keras3

    k3 = keras3.Sequential(
        [keras3.Input((LEN,), dtype="int32"), keras3.layers.Embedding(VOCAB, 16), keras3.layers.LSTM(4), keras3.layers.Dense(2)]
    )
    small = embeddings.factorize(k3, rank=15)
    x, _ = _data(8)
    assert small.predict(x, verbose=0).shape == (8, 2)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({}, "exactly one of rank= .* or max_error="),
        ({"rank": 4, "max_error": 0.1}, "exactly one of rank="),
        ({"rank": 32}, r"rank must be an integer in \[1, 32\) for layer 'embedding'"),
        ({"rank": 0}, r"rank must be an integer in \[1, 32\)"),
        ({"max_error": 1.5}, r"max_error must be a number in \(0, 1\)"),
        ({"rank": 4, "layer": "emb"}, "no Embedding of that name. Its Embedding layers: embedding"),
    ],
)
def test_bad_arguments_are_named(keras, kwargs, pattern):
    model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=DIM)
    with pytest.raises(ValueError, match=pattern):
        embeddings.factorize(model, **kwargs)


def test_wrapped_models_are_refused(keras):
    model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=DIM)
    with pytest.raises(ValueError, match="compression wrappers. Fix: tfcompress.pruning.strip"):
        embeddings.factorize(pruning.prune(model), rank=4)


def test_prune_rows_removes_the_rarest_rows_and_keeps_the_inputs(keras, tmp_path):
    model = _trained(epochs=1)
    table = model.get_layer("embedding").embeddings.numpy()
    counts = np.arange(VOCAB, 0, -1)  # frequency order: id 2 most frequent
    small = embeddings.prune_rows(model, keep=100, counts=counts)
    report = small.tfcompress_prune_rows_report
    assert (report["rows_before"], report["rows_after"], report["params_removed"]) == (VOCAB, 100, 200 * DIM)
    new_table = small.get_layer("embedding").embeddings.numpy()
    assert new_table.shape == (100, DIM)
    np.testing.assert_array_equal(new_table[:99], table[:99])
    w = counts[99:] / counts[99:].sum()
    np.testing.assert_allclose(new_table[99], (table[99:] * w[:, None]).sum(0), rtol=1e-5)
    x, _ = _data(64, seed=2)
    frequent = np.minimum(x, 98)  # ids that kept their rows answer exactly as before
    np.testing.assert_allclose(small.predict(frequent, verbose=0), model.predict(frequent, verbose=0), atol=1e-6)
    assert small.predict(x, verbose=0).shape == (64, 2)  # every id of the encoder is still read
    result = export.to_tflite(small, tmp_path / "rows.tflite", mode="int8", representative_data=x, isolate=False)
    assert result.verification["agreement"] >= 0.98
    assert embeddings.prune_rows(model, keep=0.5).tfcompress_prune_rows_report["rows_after"] == VOCAB // 2
    with pytest.raises(ValueError, match=r"keep must be an integer in \[3, 300\) or a fraction"):
        embeddings.prune_rows(model, keep=VOCAB)
    with pytest.raises(ValueError, match="already caps its vocabulary"):
        embeddings.prune_rows(small, keep=50)
