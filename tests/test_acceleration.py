"""Mixed precision, GPU memory configuration, strategies, multi-worker training, XLA."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

import tfcompress
from tfcompress import devices, distillation, keras, models, precision, pruning

HERE = pathlib.Path(__file__).resolve().parent


def _fresh(code, env=None, timeout=180):
    """Runs code in a new interpreter (device settings need an untouched TensorFlow)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    full_env.pop("TF_CONFIG", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=timeout
    )


# ------------------------------------------------------------------ precision


def test_enable_and_scope_restore_even_when_the_body_raises(keras):
    assert precision.current() == "float32"
    with pytest.raises(RuntimeError, match="boom"):
        with precision.policy_scope("mixed_bfloat16"):
            assert precision.current() == "mixed_bfloat16"
            raise RuntimeError("boom")
    assert precision.current() == "float32"
    previous = precision.enable("mixed_float16")
    assert previous == "float32" and precision.current() == "mixed_float16"
    model = models.lstm_classifier(50, max_len=8, units=4)
    assert model.get_layer("lstm_0").compute_dtype == "float16"
    assert model.get_layer("lstm_0").variable_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
    precision.disable()
    assert precision.current() == "float32"
    with pytest.raises(ValueError, match=r"one of \('float32', 'mixed_float16', 'mixed_bfloat16'\). Received: 'float16'"):
        precision.enable("float16")


def test_warns_once_when_the_hardware_will_not_benefit(keras):
    precision._WARNED.clear()
    benefits, reason = precision.hardware_benefits("mixed_float16")
    gpus = tf.config.list_physical_devices("GPU")
    if benefits:  # a GPU with float16 tensor cores: nothing to warn about
        assert gpus and "tensor cores" in reason
        return
    assert reason.startswith("no GPU was found" if not gpus else "the GPUs here have compute capability")
    with pytest.warns(UserWarning, match=r"mixed_float16 will probably not speed this machine up: " + ("no GPU" if not gpus else "the GPUs")):
        precision.enable("mixed_float16")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        precision.enable("mixed_float16")  # second time: silent


def test_float32_output_is_added_or_reported(keras):
    with precision.policy_scope("mixed_float16"):
        inp = keras.Input((4,))
        model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="head")(inp))
    assert model.output.dtype == tf.float16
    with pytest.raises(ValueError, match=r"output layer\(s\) \['head'\] compute in float16.*dtype='float32'"):
        precision.float32_output(model, fix=False)
    fixed, changed = precision.float32_output(model)
    assert changed and fixed.output.dtype == tf.float32
    assert [l.name for l in fixed.layers][-2:] == ["head", "head_float32"]
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    np.testing.assert_allclose(fixed(x).numpy(), model(x).numpy().astype("float32"), atol=2e-3)
    assert precision.float32_output(fixed) == (fixed, False)


@pytest.mark.parametrize("head", ["dense", "activation", "softmax_layer"])
def test_float32_output_computes_the_softmax_itself_in_float32(keras, head):
    # Logits 0 and 20: the small probability, 2e-9, is below float16's smallest number.
    with precision.policy_scope("mixed_float16"):
        inp = keras.Input((1,))
        if head == "dense":
            out = keras.layers.Dense(2, activation="softmax", name="head")(inp)
        else:
            logits = keras.layers.Dense(2, name="logits")(inp)
            out = keras.layers.Activation("softmax", name="head")(logits) if head == "activation" else keras.layers.Softmax(name="head")(logits)
        model = keras.Model(inp, out)
    dense = next(l for l in model.layers if isinstance(l, keras.layers.Dense))
    dense.set_weights([np.array([[0.0, 20.0]], "float32"), np.zeros(2, "float32")])
    x = np.ones((1, 1), "float32")
    assert model(x).numpy()[0, 0] == 0  # the bug: float16 rounds it to zero
    fixed, changed = precision.float32_output(model)
    p = fixed(x).numpy()[0]
    assert changed and fixed.output.dtype == tf.float32
    np.testing.assert_allclose(p, [np.exp(-20.0), 1.0], rtol=1e-2)  # logits in float16, softmax in float32


def test_mixed_model_rebuilds_in_float32_with_the_same_weights(keras):
    with precision.policy_scope("mixed_float16"):
        mixed = models.lstm_classifier(50, max_len=8, units=4, bidirectional=True)
    assert precision.is_mixed_precision(mixed)
    plain = precision.rebuild_float32(mixed)
    assert not precision.is_mixed_precision(plain)
    for a, b in zip(mixed.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).integers(0, 50, (4, 8))
    np.testing.assert_allclose(plain(x).numpy(), mixed(x).numpy(), atol=1e-2)
    assert precision.rebuild_float32(plain) is plain


def test_mixed_precision_training_with_pruning_and_distillation(keras):
    with precision.policy_scope("mixed_float16"):
        teacher = models.lstm_classifier(50, max_len=8, units=8)
        student = models.lstm_classifier(50, max_len=8, units=4, compile=False)
        x = np.random.default_rng(0).integers(1, 50, (128, 8)).astype("int32")
        y = (x[:, -1] > 25).astype("int32")
        teacher.fit(x, y, epochs=1, verbose=0)
        distiller = distillation.Distiller(teacher, student)
        distiller.compile("adam", "sparse_categorical_crossentropy")
        before = [w.copy() for w in student.get_weights()]
        history = distiller.fit(x, y, epochs=1, verbose=0).history
        assert np.isfinite(history["loss"][-1]) and history["distillation_loss"][-1] > 0
        assert all(not np.array_equal(a, b) for a, b in zip(before, student.get_weights()))  # every weight trained
        with pytest.warns(UserWarning, match="float32 copy"):
            tfcompress._keras.graph._MIXED_WARNED.clear()
            pruned = pruning.prune(student, target_sparsity=0.5, schedule="constant")
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=1, verbose=0)
    # What pruning promises holds under the mixed policy too: every pruned weight half zeros.
    for row in pruning.sparsity_report(pruned):
        assert abs(row["sparsity"] - 0.5) <= 1 / row["size"] + 1e-9, row


# ------------------------------------------------------------------ devices


def test_configure_gpus_reports_the_devices_present_and_is_idempotent():
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        first = devices.configure_gpus()
        assert first == {"gpus": [], "configured": False, "message": first["message"]}
        assert "No GPU found" in first["message"]
        assert devices.configure_gpus() == first
    else:  # memory growth on every GPU (or, once TensorFlow has set them up, an error saying when to call it)
        try:
            first = devices.configure_gpus()
        except RuntimeError as err:
            assert "configure_gpus()" in str(err)
            return
        assert first["gpus"] == [g.name for g in gpus] and first["configured"]
        assert all(tf.config.experimental.get_memory_growth(g) for g in gpus)
        assert devices.configure_gpus()["message"] == "already configured (no change)"
    with pytest.raises(ValueError, match=r"memory_growth=True and memory_limit_mb=... conflict"):
        devices.configure_gpus(memory_growth=True, memory_limit_mb=1024)
    with pytest.raises(ValueError, match=r"memory_limit_mb must be a positive integer"):
        devices.configure_gpus(memory_limit_mb=-5)


def test_too_late_path_names_the_fix():
    # conftest split the CPU into 2 logical devices and TensorFlow has run ops since.
    assert devices.logical_cpus(2) == [d.name for d in tf.config.list_logical_devices("CPU")]  # same: no-op
    with pytest.raises(RuntimeError, match=r"already initialised its CPU devices.*call tfcompress.devices.logical_cpus\(3\) at the very start"):
        devices.logical_cpus(3)


def test_fresh_process_configures_before_init_and_mirrors():
    proc = _fresh(
        """
        from tfcompress import devices
        import tensorflow as tf
        print(devices.configure_gpus()["configured"])
        names = devices.logical_cpus(2)
        s = devices.strategy("mirrored", devices=names)
        print(len(names), s.num_replicas_in_sync, type(devices.strategy()).__name__)
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "2", "2", "_DefaultDistributionStrategy"]


def test_strategy_choice_from_tf_config():
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    proc = _fresh(
        """
        from tfcompress import devices
        print(devices.tf_config_cluster())
        """,
        env={"TF_CONFIG": json.dumps(cluster)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'index': 1" in proc.stdout and "127.0.0.1:2" in proc.stdout
    bad = _fresh("from tfcompress import devices\ndevices.strategy()", env={"TF_CONFIG": "{not json"})
    assert bad.returncode != 0 and "TF_CONFIG is not valid JSON" in bad.stderr
    with pytest.raises(ValueError, match=r"kind must be one of"):
        devices.strategy("tpu_pod")


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_pruned_and_distilled_models_in_sync(tmp_path):
    ports = _free_ports(2)
    workers = [f"127.0.0.1:{p}" for p in ports]
    procs = []
    start = time.monotonic()
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            env = dict(os.environ, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="3")
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(HERE / "multiworker_task.py"), str(tmp_path / f"worker{index}.npz")],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:  # never leave workers behind
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    elapsed = time.monotonic() - start
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert elapsed < 300
    a, b = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)
    assert all(abs(s - 0.7) <= max(0.01, 1 / 16) for s in a["sparsity"])
    assert np.isfinite(a["distillation_loss"]).all()


def test_xla_jit_compile_trains_a_distilled_model(keras):
    """The distiller's compiled step holds the student's whole train step (forward, loss, gradients,
    update) beside the teacher's forward pass, so a plain model's XLA training is inside it."""
    x = np.random.default_rng(0).integers(1, 50, (128, 8)).astype("int32")
    y = (x[:, -1] > 25).astype("int32")
    model = models.lstm_classifier(50, max_len=8, units=8)
    model.fit(x, y, epochs=1, verbose=0)
    student = models.lstm_classifier(50, max_len=8, units=4, compile=False)
    distiller = distillation.Distiller(model, student)
    distiller.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    before = [w.copy() for w in student.get_weights()]
    history = distiller.fit(x, y, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][-1]) and history["distillation_loss"][-1] > 0
    assert all(not np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
