"""Every import order works, each in a fresh interpreter.

The check in each process: a model built with whatever Keras the order leaves
in `tf.keras`/`keras` goes through tfcompress into TFMOT's pruning wrapper (the
step that rejects Keras 3 objects) and predicts the same values.
"""

import os
import subprocess
import sys
import textwrap

import pytest

# Defined first in every process; it imports nothing Keras-related until called,
# so the order under test is the one written in ORDERS.
CHECK = textwrap.dedent(
    """
    import numpy as np

    def check(model, label):
        import tensorflow_model_optimization as tfmot
        import tfcompress

        x = np.random.default_rng(0).integers(1, 20, size=(3, 6))
        tfk = tfcompress.as_tf_keras(model)
        assert isinstance(tfk, tfcompress.keras.Model), type(tfk)
        pruned = tfmot.sparsity.keras.prune_low_magnitude(tfk)
        np.testing.assert_allclose(pruned.predict(x, verbose=0), np.asarray(model(x)), atol=1e-5)
        print("OK", label, type(model).__module__.split(".")[0])
    """
)

ORDERS = {
    "keras3_then_tfcompress": """
        import keras
        import tfcompress
        m = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(20, 4), keras.layers.LSTM(3)])
        check(m, "keras3")
    """,
    "tfcompress_then_keras3": """
        import tfcompress
        import keras
        m = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(20, 4), keras.layers.LSTM(3)])
        check(m, "keras3")
        assert tfcompress.keras is not keras
    """,
    "tensorflow_then_tfcompress": """
        import tensorflow as tf
        import tfcompress
        # tf.keras was not touched before tfcompress: it now resolves to tf_keras.
        assert tf.keras.Sequential is tfcompress.keras.Sequential
        m = tf.keras.Sequential([tf.keras.Input((6,), dtype="int32"), tf.keras.layers.Embedding(20, 4), tf.keras.layers.LSTM(3)])
        check(m, "tf.keras")
    """,
    "tf_keras_touched_first": """
        import tensorflow as tf
        m = tf.keras.Sequential([tf.keras.Input((6,), dtype="int32"), tf.keras.layers.Embedding(20, 4), tf.keras.layers.LSTM(3)])
        assert type(m).__module__.startswith("keras."), type(m)  # Keras 3
        import tfcompress
        check(m, "tf.keras (Keras 3)")
    """,
    "tfmot_then_tfcompress": """
        import tensorflow_model_optimization
        import tfcompress
        k = tfcompress.keras
        m = k.Sequential([k.Input((6,), dtype="int32"), k.layers.Embedding(20, 4), k.layers.LSTM(3)])
        check(m, "tfcompress.keras")
    """,
}


def _run(code):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def results():
    # Start every interpreter at once: each spends most of its time importing.
    procs = {name: _run(CHECK + textwrap.dedent(body)) for name, body in ORDERS.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = (proc.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_import_order_works(results, order):
    code, stdout, stderr = results[order]
    assert code == 0, f"{order} failed:\n{stderr[-3000:]}"
    assert stdout.startswith("OK"), stdout


def test_mismatched_tf_keras_fails_at_import_with_the_fix():
    code = textwrap.dedent(
        """
        import importlib.metadata as md
        real = md.version
        md.version = lambda name: "2.15.1" if name == "tf-keras" else real(name)
        import tfcompress
        """
    )
    proc = _run(code)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "ImportError: tf-keras 2.15.1 does not match tensorflow 2.21" in stderr
    assert "pip install 'tf-keras==2.21.*'" in stderr
