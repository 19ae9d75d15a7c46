"""The one Keras of tfcompress, decided here and nowhere else.

TensorFlow 2.21 ships two Kerases. `import keras` gives Keras 3, which has no
pruning and no quantization-aware training. TensorFlow Model Optimization
(TFMOT), which tfcompress wraps, accepts only Keras 2 models, packaged as
`tf_keras`. tfcompress therefore builds, wraps and exports **tf_keras** models,
and turns Keras 3 Sequential and Functional models into equivalent tf_keras
models (layer configurations translated, weights copied) wherever a model is
passed in.

Importing this module sets `TF_USE_LEGACY_KERAS=1` in the process environment,
exactly as importing TFMOT does. Its only effect is on `tf.keras`: if nothing
has touched `tf.keras` yet, it resolves to tf_keras from now on; if it was
touched before, it stays Keras 3, and models built with it are converted.
`import keras` always gives Keras 3.
"""

import contextlib
import importlib.metadata
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402

_KERAS_2_3_HELP = (
    "TensorFlow 2.21 has two Kerases: `import keras` is Keras 3, and `tf_keras` "
    "is Keras 2, the only one TensorFlow Model Optimization accepts. tfcompress "
    "builds on tf_keras and converts Keras 3 models when they are passed in."
)


def _check_tf_keras_version():
    try:
        tf_version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        tf_version = tf.__version__
    try:
        tfk_version = importlib.metadata.version("tf-keras")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            "tfcompress needs the tf-keras package (Keras 2), which is not "
            f"installed. {_KERAS_2_3_HELP} Fix: pip install "
            f"'tf-keras=={'.'.join(tf_version.split('.')[:2])}.*'"
        ) from None
    if tf_version.split(".")[:2] != tfk_version.split(".")[:2]:
        raise ImportError(
            f"tf-keras {tfk_version} does not match tensorflow {tf_version}: "
            "their major.minor versions must be equal. Fix: pip install "
            f"'tf-keras=={'.'.join(tf_version.split('.')[:2])}.*'"
        )


_check_tf_keras_version()

import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402,F401



class ConversionError(ValueError):
    """A Keras 3 model (or one of its layers) cannot be turned into tf_keras."""


# --------------------------------------------------------------------------
# Recognising the two Kerases
# --------------------------------------------------------------------------


def qualname(obj):
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_keras3(obj):
    """True if `obj` is a Keras 3 object (or an instance of a subclass of one)."""
    if "keras" not in sys.modules:
        return False
    return any(
        cls.__module__ == "keras" or cls.__module__.startswith("keras.")
        for cls in type(obj).__mro__
    )


def ensure_tf_keras(model, argument="model", caller=None):
    """Returns `model` as a tf_keras model, converting a Keras 3 one.

    This is the gate every public tfcompress function that takes a model goes
    through.

    Raises:
        TypeError: `model` is not a Keras model of either flavour.
        ConversionError: `model` is Keras 3 and cannot be converted.
    """
    if isinstance(model, keras.Model):
        return model
    if is_keras3(model):
        import keras as keras3

        if isinstance(model, keras3.Model):
            return as_tf_keras(model)
    where = f"{caller}(): " if caller else ""
    raise TypeError(
        f"{where}`{argument}` must be a Keras model (tf_keras or Keras 3). "
        f"Received: {argument} of type {qualname(model)}."
    )


@contextlib.contextmanager
def float32_policy():
    """Runs the body with tf_keras' global dtype policy set to float32."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# The helpers, by concern (each module imports what it needs from here).
from tfcompress._keras.to_tf_keras import (  # noqa: E402
    CONVERTIBLE_LAYERS,
    as_tf_keras,
    fit_config,
    policy_name,
    vectorizer_arguments,
)
from tfcompress._keras.graph import (  # noqa: E402
    activation_name,
    clone_with,
    copy_weights,
    inner_layer,
    layer_selector,
    predict,
    rebuild_functional,
    require_graph_model,
    warn_mixed_once,
)
from tfcompress._keras.float32 import is_mixed_precision, rebuild_float32  # noqa: E402
from tfcompress._keras.to_keras3 import as_keras3  # noqa: E402

__all__ = [
    "keras",
    "tf",
    "tfmot",
    "ConversionError",
    "qualname",
    "is_keras3",
    "ensure_tf_keras",
    "float32_policy",
    "CONVERTIBLE_LAYERS",
    "as_tf_keras",
    "as_keras3",
    "fit_config",
    "policy_name",
    "vectorizer_arguments",
    "activation_name",
    "clone_with",
    "copy_weights",
    "inner_layer",
    "layer_selector",
    "predict",
    "rebuild_functional",
    "require_graph_model",
    "warn_mixed_once",
    "is_mixed_precision",
    "rebuild_float32",
]
