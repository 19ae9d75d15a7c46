"""Pruned, clustered and QAT models survive .keras, .h5 and SavedModel round trips.

Every object is built with non-default arguments, so that an argument dropped
by `get_config` (as TFMOT drops `sparsity_m_by_n`) shows up as a difference.
"""

import numpy as np
import pytest

import tfcompress
from tfcompress import clustering, keras, pruning, quantization

VOCAB, LEN = 64, 12
FORMATS = ["model.keras", "model.h5", "savedmodel"]


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (n, LEN)).astype("int32")
    return x, (x[:, -1] > VOCAB // 2).astype("int32")


def _model():
    inp = keras.Input((LEN,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 8, name="embedding")(inp)
    x = keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True), name="bilstm")(x)
    x = keras.layers.GRU(8, name="gru")(x)
    out = keras.layers.Dense(2, activation="softmax", name="out")(x)
    return keras.Model(inp, out)


def _train(model, epochs=1):
    x, y = _data(128)
    model.compile(keras.optimizers.Adam(5e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def _save(model, tmp_path, fmt):
    path = str(tmp_path / fmt)
    model.save(path) if fmt != "savedmodel" else model.save(path, save_format="tf")
    return path


LOADERS = {
    "tfcompress.load_model": tfcompress.load_model,
    "keras.models.load_model": lambda p: keras.models.load_model(p),
}


def _loaders(fmt):
    """Both loaders for the config formats; for a SavedModel folder the plain
    one alone: there `tfcompress.load_model` is the plain loader after its
    safety check, plus the fit hook it adds in every format."""
    return LOADERS.items() if fmt != "savedmodel" else [("keras.models.load_model", LOADERS["keras.models.load_model"])]


@pytest.fixture(scope="module")
def pruned():
    keras.backend.clear_session()
    model = pruning.prune(_model(), structure="2:4", layers=["bilstm", "out"], begin_step=1, frequency=3)
    return _train(model)


@pytest.fixture(scope="module")
def qat():
    base = pruning.strip(pruning.prune(_model(), target_sparsity=0.6, schedule="constant"))
    return _train(quantization.quantize(base, skip=["gru"], preserve_sparsity=True))


@pytest.mark.parametrize("fmt", FORMATS)
def test_pruned_model_round_trip(pruned, tmp_path, fmt):
    path = _save(pruned, tmp_path, fmt)
    x, _ = _data(32, seed=3)
    expected = pruned.predict(x, verbose=0)
    for name, loader in _loaders(fmt):
        loaded = loader(path)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected, err_msg=name)
        wrapper = loaded.get_layer("prune_low_magnitude_bilstm")
        assert isinstance(wrapper, pruning.PruneLowMagnitude)
        assert isinstance(wrapper.layer, pruning.PrunableBidirectional)
        assert tuple(wrapper.sparsity_m_by_n) == (2, 4)  # TFMOT's own config drops it
        schedule = wrapper.pruning_schedule.get_config()["config"]
        assert (schedule["begin_step"], schedule["frequency"]) == (2, 3)
    if fmt != "model.h5":
        return
    # Training continues after loading (plain Keras loader: no fit hook, no callback). One format is
    # enough: the three revive the same wrappers from the same configs, as checked above; .h5, the
    # format users arrive with, is the one that names weights by path.
    _train(loaded)
    stripped = pruning.strip(loaded)
    assert pruning.m_by_n_violations(stripped.get_layer("bilstm").forward_layer.cell.kernel.numpy()) == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_quantized_model_round_trip(qat, tmp_path, fmt):
    path = _save(qat, tmp_path, fmt)
    x, _ = _data(32, seed=3)
    expected = qat.predict(x, verbose=0)
    for name, loader in _loaders(fmt):
        loaded = loader(path)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected, err_msg=name)
        config = loaded.get_layer("quant_bilstm").quantize_config
        assert isinstance(config, quantization.TextQuantizeConfig)
        assert config.preserve_sparsity and config.passthrough == ["forward_layer.cell.bias"]
        gru = loaded.get_layer("quant_gru")  # skipped: float weights, 8-bit output for 'out'
        assert gru.quantize_config.get_weights_and_quantizers(gru.layer) == []
        np.testing.assert_array_equal(
            quantization.strip(loaded).get_layer("bilstm").get_weights()[0],
            quantization.strip(qat).get_layer("bilstm").get_weights()[0],
        )


def test_load_model_converts_a_keras3_file(tmp_path):
    import keras as keras3

    k3 = keras3.Sequential(
        [keras3.Input((LEN,), dtype="int32"), keras3.layers.Embedding(VOCAB, 8), keras3.layers.LSTM(4), keras3.layers.Dense(2)]
    )
    path = str(tmp_path / "k3.keras")
    k3.save(path)
    loaded = tfcompress.load_model(path)
    assert isinstance(loaded, keras.Model)
    x, _ = _data(8)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), np.asarray(k3(x)), atol=1e-5)


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no file or folder at"):
        tfcompress.load_model(tmp_path / "missing.keras")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match=r"is a folder but not a SavedModel"):
        tfcompress.load_model(tmp_path / "folder")
    junk = tmp_path / "junk.h5"
    junk.write_text("not a model")
    with pytest.raises(ValueError, match=r"neither a .keras archive nor an HDF5 file"):
        tfcompress.load_model(junk)


@pytest.fixture(scope="module")
def clustered():
    keras.backend.clear_session()
    base = pruning.strip(_train(pruning.prune(_model(), target_sparsity=0.5, schedule="constant")))
    return base, _train(clustering.cluster(base, clusters=6, init="density", gradient_aggregation="average"))


# .keras and .h5: the two config-based formats. SavedModel revives wrappers from the same configs
# and is covered for TFMOT wrappers by the pruned and QAT round trips.
@pytest.mark.parametrize("fmt", ["model.keras", "model.h5"])
def test_clustered_model_round_trip(clustered, tmp_path, fmt):
    base, clustered = clustered
    path = _save(clustered, tmp_path, fmt)
    x, _ = _data(32, seed=3)
    expected = clustered.predict(x, verbose=0)
    for name, loader in LOADERS.items():
        loaded = loader(path)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6, err_msg=name)
        wrapper = loaded.get_layer("cluster_bilstm")
        assert isinstance(wrapper, clustering.ClusterWeightsRNN)
        assert (wrapper.number_of_clusters, wrapper.preserve_sparsity) == (6, True)
        assert wrapper.cluster_centroids_init == clustering.INITS["density"]
        assert wrapper.cluster_gradient_aggregation == clustering.AGGREGATIONS["average"]
    pruned_away = [w == 0 for w in base.get_weights()]
    _train(loaded)  # training continues after loading; the clusters and the zeros hold
    for row in clustering.cluster_report(loaded):
        assert row["distinct"] <= 6, row
    for was_zero, now in zip(pruned_away, clustering.strip(loaded).get_weights()):
        assert (now[was_zero] == 0).all()  # every pruned weight stays zero (weights near zero may join them)
    if fmt != "model.keras":
        return
    # Cluster-preserving QAT from the stripped model, saved and loaded. Its cluster ids are one more
    # quantizer variable, saved as the others are (every format: test_quantized_model_round_trip);
    # .h5, which names weights by path, is the format where a new variable could collide.
    qat = _train(quantization.quantize(clustering.strip(loaded)))
    (tmp_path / "q").mkdir()
    back = tfcompress.load_model(_save(qat, tmp_path / "q", "model.h5"))
    np.testing.assert_allclose(back.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)
    _train(back)
    assert clustering.cluster_report(quantization.strip(back)).max_distinct() <= 6
