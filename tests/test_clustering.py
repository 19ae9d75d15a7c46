"""Clustering: distinct values per weight, Bidirectional, sparsity kept,
cluster-preserving QAT (CQAT/PCQAT), saving, Keras 3, mixed precision,
strategies, and what reaches the .tflite file."""

import numpy as np
import pytest

import tfcompress
from tfcompress import clustering, keras, pruning, quantization

VOCAB, LEN = 200, 12


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (n, LEN)).astype("int32")
    y = (x[:, -1] > VOCAB // 2).astype("int32")  # learnable from the last token
    return x, y


def text_model(kind="lstm", units=16, norm=True):
    inp = keras.Input((LEN,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 16, name="embedding")(inp)
    if kind == "lstm":
        x = keras.layers.LSTM(units, name="lstm")(x)
    elif kind == "gru":
        x = keras.layers.GRU(units, name="gru")(x)
    elif kind == "bidirectional":
        x = keras.layers.Bidirectional(keras.layers.LSTM(units), name="bilstm")(x)
    elif kind == "conv":
        x = keras.layers.Conv1D(16, 3, name="conv")(x)
        x = keras.layers.GlobalMaxPooling1D()(x)
    if norm:
        x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    out = keras.layers.Dense(2, activation="softmax", name="out")(x)
    return keras.Model(inp, out)


def _fit(model, epochs=1, lr=1e-3, n=256):
    x, y = _data(n)
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


def _distinct(report):
    return {(r["layer"], r["weight"]): r["distinct"] for r in report}


@pytest.mark.parametrize("kind", ["lstm", "gru", "bidirectional", "conv"])
def test_each_clustered_weight_keeps_at_most_the_cluster_count_and_strip_matches(keras, kind):
    model = _fit(text_model(kind))
    clustered = clustering.cluster(model, clusters=8)
    report = clustered.tfcompress_clustering_report
    assert set(report["clustered"]) == {"embedding", {"conv": "conv", "bidirectional": "bilstm"}.get(kind, kind), "hidden", "out"}
    assert [name for name, _ in report["skipped"]] == []  # LayerNormalization is not a clusterable type
    _fit(clustered)
    stripped = clustering.strip(clustered)
    assert not clustering.is_clustered(stripped)
    rows = clustering.cluster_report(stripped)
    expected = {"lstm": 5, "gru": 5, "bidirectional": 7, "conv": 4}[kind]  # with embedding, hidden, out
    assert len(rows) == expected
    for row in rows:
        assert 2 <= row["distinct"] <= 8, row
    # Biases are not clustered: they keep one value per unit.
    assert len(np.unique(stripped.get_layer("hidden").bias.numpy())) > 8
    x, _ = _data(64, seed=5)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), clustered.predict(x, verbose=0), atol=1e-6)
    # Fresh layers: the stripped model shares nothing with the clustered one.
    assert not {id(l) for l in stripped.layers} & {id(l) for l in clustered.layers}


def test_clustering_a_trained_model_keeps_its_accuracy(keras):
    model = _fit(text_model(), epochs=3, lr=3e-3, n=4096)
    x, y = _data(512, seed=9)
    dense = model.evaluate(x, y, verbose=0)[1]
    assert dense > 0.9
    clustered = _fit(clustering.cluster(model, clusters=16), epochs=1, n=4096)
    assert clustered.evaluate(x, y, verbose=0)[1] >= dense - 0.03


@pytest.fixture(scope="module")
def pruned_then_clustered():
    """A bidirectional text model pruned to 50% and trained, then clustered to 8 values and trained."""
    tfcompress.keras.backend.clear_session()
    pruned = pruning.prune(_fit(text_model("bidirectional")), target_sparsity=0.5, schedule="constant")
    _fit(pruned)
    clustered = clustering.cluster(pruned, clusters=8)  # wrappers stripped first
    return _fit(clustered)


def test_pruned_model_keeps_its_zeros_through_clustering(pruned_then_clustered):
    clustered = pruned_then_clustered
    assert clustered.tfcompress_clustering_report["preserve_sparsity"] is True  # auto: half are zeros
    rows = clustering.cluster_report(clustered)
    for row in rows:
        assert row["distinct"] <= 8, row
        assert abs(row["zeros"] / row["size"] - 0.5) <= max(0.01, 1 / row["size"]), row


def test_cluster_preserving_qat_keeps_clusters_and_zeros(pruned_then_clustered, keras):
    """(Saved and loaded QAT models keep them too: tests/test_saving.py.)"""
    clustered = clustering.strip(pruned_then_clustered)
    before = clustering.cluster_report(clustered)
    qat = quantization.quantize(clustered)
    report = qat.tfcompress_quantization_report
    assert report["preserve_sparsity"] is True
    assert set(report["clusters_kept"]) == {"embedding", "bilstm", "hidden", "out"}
    weights_before = qat.get_layer("quant_embedding").get_weights()
    _fit(qat, epochs=2)
    assert not all(np.array_equal(a, b) for a, b in zip(weights_before, qat.get_layer("quant_embedding").get_weights()))
    after = clustering.cluster_report(quantization.strip(qat))
    for old, new in zip(before, after):
        assert new["distinct"] <= old["distinct"] <= 8, (old, new)
        assert new["zeros"] >= old["zeros"], (old, new)  # every zero stays zero
    # Without cluster preservation the same QAT breaks the clusters apart.
    free = _fit(quantization.quantize(clustered, preserve_clusters=False), epochs=2)
    assert max(r["distinct"] for r in clustering.cluster_report(quantization.strip(free))) > 8


def test_an_unclustered_model_is_quantized_as_before(keras):
    qat = quantization.quantize(_fit(text_model()))
    assert qat.tfcompress_quantization_report["clusters_kept"] == []
    with pytest.raises(ValueError, match="distinct values, more than 256 clusters"):
        quantization.quantize(_fit(text_model()), preserve_clusters=True)


def test_keras3_model_is_clustered(keras):
    import keras as keras3

    k3 = keras3.Sequential(
        [keras3.Input((LEN,), dtype="int32"), keras3.layers.Embedding(VOCAB, 8), keras3.layers.LSTM(8), keras3.layers.Dense(2)]
    )
    clustered = clustering.cluster(k3, clusters=4, init="linear")
    x, _ = _data(8)
    assert clustered.predict(x, verbose=0).shape == (8, 2)
    assert clustering.cluster_report(clustered).max_distinct() <= 4


def test_mixed_precision_model_is_clustered_in_float32(keras):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = text_model()
    assert model.get_layer("lstm").compute_dtype == "float16"
    tfcompress._keras.graph._MIXED_WARNED.clear()
    with pytest.warns(UserWarning, match="float32 copy"):
        clustered = clustering.cluster(model, clusters=8)
    for layer in clustered.layers:
        assert layer.compute_dtype in ("float32", "int32"), layer.name
    _fit(clustered)
    assert clustering.cluster_report(clustered).max_distinct() <= 8


def test_clustering_under_mirrored_strategy_on_two_cpus(keras, mirrored):
    assert mirrored.num_replicas_in_sync == 2
    with mirrored.scope():
        clustered = clustering.cluster(text_model(), clusters=8)
        clustered.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x, y = _data()
    clustered.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert clustering.cluster_report(clustered).max_distinct() <= 8


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"clusters": 1}, r"clusters must be an integer in \[2, 256\]"),
        ({"clusters": 300}, r"clusters must be an integer in \[2, 256\]"),
        ({"init": "kmeans"}, r"init must be one of 'kmeans\+\+'"),
        ({"preserve_sparsity": "yes"}, "preserve_sparsity must be 'auto', True or False"),
        ({"gradient_aggregation": "mean"}, "gradient_aggregation must be 'sum' or 'average'"),
        ({"layers": ["lsmt"]}, "layers names 'lsmt'.*Its layers: .*lstm"),
        ({"layers": ["norm"]}, "'norm' .*LayerNormalization.* cannot .*|TFMOT has no clustering rule"),
        ({"clusters": 2, "preserve_sparsity": True}, "at least 3 are needed"),
    ],
)
def test_bad_arguments_are_named(keras, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        clustering.cluster(text_model(), **kwargs)


def test_already_clustered_and_subclassed_models_are_refused(keras):
    clustered = clustering.cluster(text_model(), clusters=8)
    with pytest.raises(ValueError, match="already clustered.*strip"):
        clustering.cluster(clustered)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    sub = Sub()
    sub(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="cluster"):
        clustering.cluster(sub)


@pytest.fixture(scope="module")
def pcqat_bidirectional():
    """A Bidirectional classifier pruned to 50%, clustered to 8 values per
    weight and cluster-and-sparsity-preserving quantization-aware trained."""
    keras.backend.clear_session()
    # No LayerNormalization here: the converter folds its scale into the next
    # kernel, which multiplies each row by its own factor (the README says so).
    dense = _fit(text_model("bidirectional", norm=False), epochs=3, lr=3e-3, n=2048)
    pruned = pruning.strip(_fit(pruning.prune(dense, target_sparsity=0.5, schedule="constant"), n=2048))
    clustered = clustering.strip(_fit(clustering.cluster(pruned, clusters=8), n=2048))
    return clustered, _fit(quantization.quantize(clustered), n=2048)


@pytest.mark.parametrize(
    "mode, form", [("float32", "auto"), ("float16", "auto"), ("dynamic", "auto"), ("int8", "auto"), ("dynamic", "fused"), ("int8", "fused")]
)
def test_every_export_mode_keeps_the_clusters_and_zeros_in_the_file(pcqat_bidirectional, tmp_path, mode, form):
    """Counted in the file's own weight tensors: float files hold at most 8
    distinct values per weight; quantized ones at most 8 per quantization
    channel (each channel has its own scale), and half of every kernel and
    of the embedding table is zero. The QAT model's int8 file also loads in
    the default runtime (a Bidirectional layer's learned output range used to
    be written into a CONCATENATION, which XNNPACK refuses)."""
    from tfcompress import export
    from tfcompress.export.weights import file_weights

    clustered, qat = pcqat_bidirectional
    x, _ = _data(64, seed=3)
    # The clustered model itself in one mode; the PCQAT model in every one.
    for name, model in (("clustered", clustered), ("pcqat", qat)) if mode == "dynamic" and form == "auto" else (("pcqat", qat),):
        result = export.to_tflite(model, tmp_path / f"{name}.tflite", mode=mode, representative_data=x, recurrent=form, isolate=False)
        assert result.verification["agreement"] >= 0.98
        weights = [w for w in file_weights(result.path) if len(w["shape"]) == 2]
        assert len(weights) >= 6, [(w["name"], w["shape"]) for w in weights]  # embedding, 4+ LSTM kernels, 2 dense
        for w in weights:
            per_channel = w["distinct"] if w["sparse"] else w["distinct_per_channel"]
            assert per_channel <= 8, (w["name"], w["type"], w["distinct_per_channel"])
            if w["type"].startswith("FLOAT"):
                assert w["distinct"] <= 8, (w["name"], w["distinct"])
        # Half of the weights are zeros (the fused form splits kernels per gate,
        # whose shares differ, so this is counted over all of them).
        zeros = sum(w["zeros"] for w in weights) / sum(w["size"] for w in weights)
        assert abs(zeros - 0.5) <= 0.01, zeros
