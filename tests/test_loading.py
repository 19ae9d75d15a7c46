"""Loading the files users arrive with: Keras 3 .h5, checkpoints from fit, and
files that hold code (refused unless the user opts in)."""

import json
import os

import numpy as np
import pytest

import keras as keras3  # Keras 3, on purpose
import tfcompress
from tfcompress import UnsafeModelError, cli, keras, pruning, quantization, saving

TIMESTEPS, CHARS = 10, 7


def _seed_model(units=8):
    """The seed's char model shape in Keras 3: one-hot input, three stacked
    LSTMs with dropout, Dense, then a separate softmax Activation."""
    L = keras3.layers
    return keras3.Sequential(
        [
            keras3.Input((TIMESTEPS, CHARS)),
            L.LSTM(units, return_sequences=True),
            L.Dropout(0.2),
            L.LSTM(units, return_sequences=True),
            L.Dropout(0.2),
            L.LSTM(units),
            L.Dropout(0.2),
            L.Dense(CHARS),
            L.Activation("softmax"),
        ]
    )


def _one_hot(n=16, seed=0):
    ids = np.random.default_rng(seed).integers(0, CHARS, (n, TIMESTEPS))
    return np.eye(CHARS, dtype="float32")[ids]


@pytest.mark.parametrize("name", ["my_model.h5", "my_model.hdf5", "my_model.model"])
def test_keras3_h5_loads_as_tf_keras_with_the_same_outputs(tmp_path, name):
    k3 = _seed_model()
    k3.compile(loss="categorical_crossentropy", optimizer="rmsprop")
    path = tmp_path / name
    if name.endswith(".model"):  # Keras 3 saves by extension; users rename files
        k3.save(tmp_path / "tmp.h5")
        os.rename(tmp_path / "tmp.h5", path)
    else:
        k3.save(path)
    assert saving.inspect_model_file(path) == {"format": "h5", "keras": "3", "code": []}

    model = tfcompress.load_model(path)

    assert isinstance(model, keras.Sequential)
    assert [type(l).__name__ for l in model.layers] == [type(l).__name__ for l in k3.layers]
    x = _one_hot()
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(k3(x)), atol=1e-5)
    if name != "my_model.h5":
        return
    # The seed's next steps: quantize, compile with a small learning rate, train.
    qat = quantization.quantize_model(model)
    qat.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(learning_rate=1e-5))
    before = [w.numpy().copy() for w in qat.trainable_weights]
    history = qat.fit(x, np.eye(CHARS)[np.arange(len(x)) % CHARS], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, qat.trainable_weights))  # it trained


@pytest.mark.parametrize("suffix", [".keras", ".h5", ""])
@pytest.mark.parametrize("kind", ["pruned", "qat"])
def test_checkpoints_written_during_fit_load(tmp_path, kind, suffix):
    """ModelCheckpoint saves wrapped models mid-fit; load_model reads them back."""
    inp = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 8)(inp)
    x = keras.layers.LSTM(8)(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    base = keras.Model(inp, out)
    model = (
        pruning.prune(base, target_sparsity=0.5, schedule="constant")
        if kind == "pruned"
        else quantization.quantize(base)
    )
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    rng = np.random.default_rng(0)
    x, y = rng.integers(1, 50, (64, 12)).astype("int32"), rng.integers(0, 2, 64)
    path = str(tmp_path / f"ckpt-{{epoch}}{suffix}")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[keras.callbacks.ModelCheckpoint(path)])
    last = path.format(epoch=2)
    assert os.path.exists(last)

    loaded = tfcompress.load_model(last)

    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert (pruning.is_pruned(loaded), quantization.is_quantized(loaded)) == (kind == "pruned", kind == "qat")


# --------------------------------------------------------------------------
# Untrusted files
# --------------------------------------------------------------------------


def _planted_lambda(keras_module, marker):
    """A model whose Lambda layer creates `marker` when it runs."""
    code = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]")  # noqa: S307
    inp = keras_module.Input((4,))
    x = keras_module.layers.Lambda(code, name="innocent_looking")(inp)
    return keras_module.Model(inp, keras_module.layers.Dense(2)(x))


FORMATS = [("tf_keras", "model.h5"), ("tf_keras", "model.keras"), ("tf_keras", "savedmodel"), ("keras3", "model.h5"), ("keras3", "model.keras")]


@pytest.mark.parametrize("flavour,name", FORMATS)
def test_a_planted_lambda_never_runs_unless_the_user_opts_in(tmp_path, flavour, name):
    marker = tmp_path / "code-ran"
    model = _planted_lambda(keras if flavour == "tf_keras" else keras3, marker)
    path = str(tmp_path / name)
    if name == "savedmodel":
        model.save(path, save_format="tf")
    else:
        model.save(path)
    marker.unlink()  # building and saving the model ran the code; loading must not

    with pytest.raises(UnsafeModelError) as err:
        tfcompress.load_model(path)
    message = str(err.value)
    assert "'innocent_looking' (Lambda)" in message
    assert "safe_mode=False" in message and "--trust-model-code" in message
    assert not marker.exists()

    if flavour == "tf_keras":
        loaded = tfcompress.load_model(path, safe_mode=False)
        assert loaded.get_layer("innocent_looking") is not None
    else:  # the code runs, then the Lambda cannot be translated to tf_keras
        with pytest.raises(tfcompress.ConversionError, match=r"innocent_looking"):
            tfcompress.load_model(path, safe_mode=False)
    assert marker.exists()


class _Unregistered(keras.layers.Layer):
    def call(self, x):
        return x


def test_an_unregistered_custom_class_is_refused_before_loading(tmp_path):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(_Unregistered(name="mystery")(inp)))
    for name in ("m.h5", "m.keras"):
        model.save(tmp_path / name)
        with pytest.raises(UnsafeModelError, match=r"'mystery' \(_Unregistered\): it is a custom object"):
            tfcompress.load_model(tmp_path / name)


def test_tensorflow_ops_in_a_model_are_allowed_but_not_file_io(tmp_path):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp * 2.0 + 1.0))  # TFOpLambda layers
    model.save(tmp_path / "ops.h5")
    assert saving.inspect_model_file(tmp_path / "ops.h5")["code"] == []
    config = json.dumps(
        {"class_name": "Functional", "config": {"layers": [{"class_name": "TFOpLambda", "config": {"name": "w", "function": "io.write_file"}}]}}
    )
    import h5py

    with h5py.File(tmp_path / "ops.h5", "a") as f:
        f.attrs["model_config"] = config
    assert saving.inspect_model_file(tmp_path / "ops.h5")["code"] == [("w", "TFOpLambda", "it calls tf.io.write_file, which reaches outside the model")]


def test_files_that_are_not_keras_models_get_a_clear_error(tmp_path):
    k3 = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)])
    k3.export(str(tmp_path / "served"), format="tf_saved_model", verbose=False)
    with pytest.raises(ValueError, match=r"no keras_metadata.pb.*model.export"):
        tfcompress.load_model(tmp_path / "served")
    tfk = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    tfk.save_weights(str(tmp_path / "w.h5"))
    with pytest.raises(ValueError, match=r"weights only.*load_weights"):
        tfcompress.load_model(tmp_path / "w.h5")


def test_every_command_that_loads_a_model_refuses_code_and_offers_the_flag(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    _planted_lambda(keras, marker).save(tmp_path / "lambda.h5")
    marker.unlink()
    data = tmp_path / "train.tsv"
    data.write_text("text\tlabel\n" + "".join(f"good film {i}\t1\nbad film {i}\t0\n" for i in range(20)))
    (tmp_path / "vocab.txt").write_text("good\nbad\nfilm\n")

    code = cli.main(["compress", str(data), "--model", str(tmp_path / "lambda.h5"), "--tokenizer", str(tmp_path / "vocab.txt"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-model-code" in err and "innocent_looking" in err

    # evaluate --reference reads the reference model the same way
    from tfcompress import export, text

    encoder = text.load_tokenizer(tmp_path / "vocab.txt", max_len=4)
    small = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(5, 2), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    export.to_tflite(small, tmp_path / "dep" / "m.tflite", encoder=encoder, labels=["0", "1"])
    code = cli.main(["evaluate", str(tmp_path / "dep" / "m.tflite"), str(data), "--reference", str(tmp_path / "lambda.h5"), "--runs", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-model-code" in err
    assert not marker.exists()


@pytest.mark.parametrize(
    "function,reason",
    [
        ({"module": "os", "class_name": "function", "config": "system", "registered_name": "system"}, "custom object from module 'os'"),
        ({"module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"}, "Python built-in 'exec'"),
        ({"module": "tensorflow.io", "class_name": "function", "config": "write_file", "registered_name": None}, "module 'tensorflow.io'"),
    ],
)
def test_a_config_naming_a_function_outside_keras_is_refused(tmp_path, function, reason):
    """tf_keras' .keras loader imports any module a configuration names, and
    would make e.g. os.system a layer's activation."""
    import zipfile

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="relu", name="dense")])
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["layers"][1]["config"]["activation"] = function
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    with pytest.raises(UnsafeModelError, match=reason):
        tfcompress.load_model(tmp_path / "evil.keras")


def _my_loss(y, p):
    return keras.losses.sparse_categorical_crossentropy(y, p)


@pytest.mark.parametrize("name", ["m.h5", "m.keras"])
def test_a_custom_loss_in_the_training_configuration_does_not_block_loading(tmp_path, name):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", _my_loss, ["accuracy"])
    model.save(tmp_path / name)
    assert saving.inspect_model_file(tmp_path / name)["code"] == []  # a name, not code
    with pytest.warns(UserWarning, match=r"loaded without its training configuration.*_my_loss.*Compile the model"):
        loaded = tfcompress.load_model(tmp_path / name)
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
