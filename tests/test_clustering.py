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
    """Per channel and with sparsity kept: the path where tfcompress, not
    TFMOT, updates the centroids and masks inside the replicas' step."""
    assert mirrored.num_replicas_in_sync == 2
    pruned = pruning.strip(_fit(pruning.prune(_fit(text_model()), target_sparsity=0.5, schedule="constant")))
    with mirrored.scope():
        clustered = clustering.cluster(pruned, clusters=8, per_channel=True)
        clustered.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x, y = _data()
    clustered.fit(x, y, batch_size=32, epochs=1, verbose=0)
    for row in clustering.cluster_report(clustered):
        assert row["distinct_per_channel"] <= 8, row
        assert row["zeros"] >= row["size"] // 2 - 1, row


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
def pruned_bidirectional():
    """A Bidirectional classifier trained and pruned to 50%, stripped."""
    keras.backend.clear_session()
    # No LayerNormalization here: the converter folds its scale into the next
    # kernel, which multiplies each row by its own factor (the README says so).
    dense = _fit(text_model("bidirectional", norm=False), epochs=3, lr=3e-3, n=2048)
    return pruning.strip(_fit(pruning.prune(dense, target_sparsity=0.5, schedule="constant"), n=2048))


@pytest.fixture(scope="module")
def pcqat_bidirectional(pruned_bidirectional):
    """The pruned classifier clustered to 8 values per weight and
    cluster-and-sparsity-preserving quantization-aware trained."""
    clustered = clustering.strip(_fit(clustering.cluster(pruned_bidirectional, clusters=8), n=2048))
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


# --------------------------------------------------------------------------
# Per-channel clustering (every clusterable layer; TFMOT does Conv2D only)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "conv"])  # Bidirectional: the PCQAT fixture below
def test_per_channel_clustering_keeps_the_cluster_count_in_each_channel(keras, kind):
    model = _fit(text_model(kind))
    # At the start, each channel's own 4 centroids, spaced over its own range,
    # fit its values better than 4 spaced over the whole weight's (squared
    # error 0.46-0.56 times as large for the LSTMs, 0.79-0.83 for the conv
    # model, whose embedding table dominates; measured on 3 models each).
    error = {}
    for per_channel in (False, True):
        start = clustering.strip(clustering.cluster(model, clusters=4, per_channel=per_channel, init="linear"))
        error[per_channel] = sum(
            float(np.sum((a.numpy() - b.numpy()) ** 2))
            for layer in model.layers
            for a, b in zip(clustering.clusterable_weights(layer), clustering.clusterable_weights(start.get_layer(layer.name)))
        )
    assert error[True] < 0.9 * error[False], error

    clustered = clustering.cluster(model, clusters=4, per_channel=True)
    assert clustered.tfcompress_clustering_report["per_channel"] is True
    _fit(clustered)
    stripped = clustering.strip(clustered)
    rows = clustering.cluster_report(stripped)
    assert len(rows) == {"lstm": 5, "conv": 4}[kind]
    for row in rows:
        assert row["distinct_per_channel"] <= 4, row
        assert row["distinct"] > 4, row  # the channels do not share centroids
    x, _ = _data(64, seed=5)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), clustered.predict(x, verbose=0), atol=1e-6)


@pytest.fixture(scope="module")
def pcqat_per_channel(pruned_bidirectional):
    """The pruned classifier clustered to 8 values per channel and trained,
    then sparsity-and-cluster-preserving QAT."""
    clustered = _fit(clustering.cluster(pruned_bidirectional, clusters=8, per_channel=True), n=2048)
    return clustered, _fit(quantization.quantize(clustering.strip(clustered)), n=2048, epochs=2)


def test_per_channel_clusters_and_zeros_survive_training_and_qat(pcqat_per_channel):
    clustered, qat = pcqat_per_channel
    report = clustered.tfcompress_clustering_report
    assert report["preserve_sparsity"] is True and report["per_channel"] is True
    assert set(qat.tfcompress_quantization_report["clusters_kept"]) == {"embedding", "bilstm", "hidden", "out"}
    for model in (clustered, quantization.strip(qat)):
        for row in clustering.cluster_report(model):
            assert row["distinct_per_channel"] <= 8, row
            assert abs(row["zeros"] / row["size"] - 0.5) <= max(0.01, 1 / row["size"]), row
    # More values than one weight-wide set of 8 could give, so the QAT kept each channel's own.
    assert max(r["distinct"] for r in clustering.cluster_report(quantization.strip(qat))) > 8


@pytest.mark.parametrize("mode", ["float32", "dynamic", "int8"])
def test_per_channel_clusters_reach_the_file(pcqat_per_channel, tmp_path, mode):
    """Counted in the file's weights: every dense (not sparse-encoded) weight
    matrix holds at most 8 values in each channel, along whichever axis the
    converter made the channel axis; half of all of them are zeros."""
    from tfcompress import export
    from tfcompress.export.weights import fewest_per_channel, file_weights

    _, qat = pcqat_per_channel
    x, _ = _data(64, seed=3)
    result = export.to_tflite(qat, tmp_path / "m.tflite", mode=mode, representative_data=x, isolate=False)
    assert result.verification["agreement"] >= 0.98
    weights = [w for w in file_weights(result.path) if len(w["shape"]) == 2]
    assert len(weights) >= 6, [(w["name"], w["shape"]) for w in weights]
    dense = [w for w in weights if not w["sparse"]]
    assert dense, "every matrix was sparse-encoded"
    for w in dense:
        assert fewest_per_channel(w["values"]) <= 8, (w["name"], w["type"])
    zeros = sum(w["zeros"] for w in weights) / sum(w["size"] for w in weights)
    assert abs(zeros - 0.5) <= 0.01, zeros


def test_per_channel_needs_more_entries_per_channel_than_clusters(keras):
    model = text_model()
    with pytest.raises(ValueError, match=r"per_channel must be True or False"):
        clustering.cluster(model, per_channel="yes")
    # The output layer's kernel (16, 2) has 16 entries per channel: not more than 16 clusters.
    clustered = clustering.cluster(model, clusters=16, per_channel=True)
    assert dict(clustered.tfcompress_clustering_report["skipped"]) == {
        "out": "a weight of shape (16, 2) has no more entries per channel (16) than clusters=16",
        "hidden": "a weight of shape (16, 16) has no more entries per channel (16) than clusters=16",
        "lstm": "a weight of shape (16, 64) has no more entries per channel (16) than clusters=16",
    }
    with pytest.raises(ValueError, match=r"layer 'out' \(Dense\) was chosen for clustering, but a weight of shape \(16, 2\) has no more entries per channel \(16\) than clusters=16.*Fix: fewer clusters, per_channel=False, or leave it out of layers="):
        clustering.cluster(model, clusters=16, per_channel=True, layers=["out"])


@pytest.mark.parametrize("init", ["linear", "density"])
@pytest.mark.parametrize("preserve_sparsity", [False, True])
def test_per_channel_starting_centroids_are_tfmots_for_each_channel(init, preserve_sparsity):
    """Linear and density starts are computed in NumPy (TFMOT's eager ones
    take seconds per channel); they equal TFMOT's run on each channel."""
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.clustering.keras import clustering_centroids

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(40, 12)).astype("float32")
    weight[np.abs(weight) < 0.7] = 0  # about half zeros
    weight[:, 3] = 0  # a channel with nothing to cluster
    kind = clustering.INITS[init]
    centroids, _ = clustering.per_channel_centroids(weight, 6, kind, preserve_sparsity)
    assert centroids.shape == (12, 6)
    start = clustering_centroids.CentroidsInitializerFactory.get_centroid_initializer(kind)
    for channel in range(12):
        theirs = np.asarray(start(tf.constant(weight[:, channel]), 6, False, "channels_last", preserve_sparsity).get_cluster_centroids())
        np.testing.assert_allclose(centroids[channel, : theirs.size], theirs.reshape(-1), atol=1e-6)
        assert not centroids[channel, theirs.size :].any()  # padded with zeros (channel 3 with sparsity kept)


def test_per_channel_clustered_and_pcqat_models_round_trip(pcqat_per_channel, tmp_path):
    """The per-channel wrapper (.keras) and the QAT model with per-channel
    cluster ids (.h5, which names weights by path) load without custom
    objects and answer the same. (Per-tensor: tests/test_saving.py.)"""
    clustered, qat = pcqat_per_channel
    x, _ = _data(32, seed=4)
    clustered.save(tmp_path / "clustered.keras")
    loaded = tfcompress.load_model(tmp_path / "clustered.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), clustered.predict(x, verbose=0), atol=1e-6)
    wrapper = loaded.get_layer("cluster_bilstm")
    assert isinstance(wrapper, clustering.ClusterWeightsRNN) and wrapper.per_channel and wrapper.preserve_sparsity
    qat.save(tmp_path / "qat.h5")
    back = tfcompress.load_model(tmp_path / "qat.h5")
    np.testing.assert_allclose(back.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)
    for row in clustering.cluster_report(quantization.strip(back)):
        assert row["distinct_per_channel"] <= 8, row
