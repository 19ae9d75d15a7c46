"""Mixed precision for tfcompress (tf_keras) models.

`enable("mixed_float16")` sets tf_keras' global dtype policy: layers built
afterwards compute in float16 and keep float32 variables, and `compile` wraps
the optimizer in a `LossScaleOptimizer` (so do `tfcompress.distillation`'s
`Distiller` and Keras' own `train_step`). `policy_scope(name)` does the same
for a block of code and always restores the previous policy.

Mixed precision speeds up training on GPUs of compute capability 7.0 or newer
(and bfloat16 on TPUs and recent accelerators); on a CPU it brings nothing
measurable (BENCHMARKS.md), and `enable` says so once. It is for training only: pruning, QAT and TFLite
export need float32 models, and tfcompress rebuilds a mixed model in float32
with the same weights for them (`rebuild_float32`, used automatically).

The model's last layer should compute in float32 (softmax and loss in float32
avoid overflow and underflow): tfcompress' model builders do this;
`float32_output(model)` checks any model and adds a float32 output layer if
needed.

This replaces the `mixed_precision.experimental` API of TF 1.x/2.0–2.3.
"""

import contextlib
import logging
import warnings

import tensorflow as tf

from tfcompress._keras import activation_name, ensure_tf_keras, is_mixed_precision, keras, rebuild_float32

__all__ = [
    "enable",
    "disable",
    "policy_scope",
    "current",
    "float32_output",
    "rebuild_float32",
    "is_mixed_precision",
    "hardware_benefits",
    "POLICIES",
]

log = logging.getLogger("tfcompress")

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
_WARNED = set()


def _check(name):
    if name not in POLICIES:
        raise ValueError(
            f"precision policy must be one of {POLICIES}. Received: {name!r}. "
            "(The TF1 'mixed_precision.experimental' names are not used any more.)"
        )


def hardware_benefits(name):
    """(bool, reason): whether this machine runs policy `name` faster than float32."""
    _check(name)
    if name == "float32":
        return True, "float32 is the reference"
    gpus = tf.config.list_physical_devices("GPU")
    capabilities = []
    for gpu in gpus:
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except (ValueError, RuntimeError):  # pragma: no cover - odd drivers
            details = {}
        capabilities.append(details.get("compute_capability"))
    if name == "mixed_float16":
        good = [c for c in capabilities if c and tuple(c) >= (7, 0)]
        if good:
            return True, f"GPU compute capability {good[0][0]}.{good[0][1]} has float16 tensor cores"
        if gpus:
            return False, f"the GPUs here have compute capability {capabilities}, below 7.0"
        return False, "no GPU was found, and TensorFlow's CPU kernels gain nothing from float16 (BENCHMARKS.md)"
    good = [c for c in capabilities if c and tuple(c) >= (8, 0)]
    if good or tf.config.list_logical_devices("TPU"):
        return True, "an accelerator with bfloat16 support was found"
    return False, "no TPU or GPU of compute capability >= 8.0 was found; bfloat16 is likely no faster here"


def _warn_once(name):
    benefits, reason = hardware_benefits(name)
    if not benefits and name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(
            f"{name} will probably not speed this machine up: {reason}. It still works "
            "(useful to test a GPU setup), but train in float32 here for speed.",
            UserWarning,
            stacklevel=3,
        )


def current():
    """The name of tf_keras' global dtype policy."""
    return keras.mixed_precision.global_policy().name


def enable(name="mixed_float16"):
    """Sets tf_keras' global dtype policy (`"mixed_float16"`, `"mixed_bfloat16"`
    or `"float32"`) and returns the previous one's name."""
    _check(name)
    previous = current()
    keras.mixed_precision.set_global_policy(name)
    if name != "float32":
        _warn_once(name)
        log.info("mixed precision: global policy %s (was %s)", name, previous)
    return previous


def disable():
    """Back to float32; returns the previous policy's name."""
    return enable("float32")


@contextlib.contextmanager
def policy_scope(name):
    """Runs the body under policy `name`; restores the previous policy, even
    if the body raises.

    Example:

    >>> with policy_scope("mixed_float16"):  # doctest: +SKIP
    ...     model = tfcompress.models.lstm_classifier(20000)
    """
    previous = enable(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_output(model, fix=True):
    """Makes sure the model's outputs are computed in float32.

    Under a mixed policy, a final softmax in float16 rounds small
    probabilities to 0 (anything below 6e-8) and large ones to 1, which a
    cross-entropy then turns into infinite or zero losses. With `fix=True`, an
    output whose last layer ends in a softmax or sigmoid (a `Dense` or `Conv1D`
    with that activation, an `Activation` or a `Softmax` layer) is rebuilt so
    that the layer computes its logits as before and the activation runs in
    float32 (a new `Activation(..., dtype="float32")` layer named
    `<layer>_float32`); any other float16 output gets a float32 linear
    `Activation` after it. With `fix=False`, a `ValueError` names the layer.

    Returns:
        `(model, changed)`: the model (a new one if fixed) and whether it changed.
    """
    model = ensure_tf_keras(model, caller="float32_output")
    outputs = model.outputs if isinstance(model.outputs, list) else [model.outputs]
    bad = [o for o in outputs if o.dtype != tf.float32]
    if not bad:
        return model, False
    names = [o._keras_history.layer.name for o in bad]  # noqa: SLF001
    if not fix:
        raise ValueError(
            f"model {model.name!r}: output layer(s) {names} compute in {bad[0].dtype.name}; "
            "under mixed precision the softmax and the loss should run in float32. Fix: give "
            "the last layer dtype='float32', or call float32_output(model)."
        )
    fixed = [_float32_head(o) if o.dtype != tf.float32 else o for o in outputs]
    new = keras.Model(model.inputs, fixed if len(fixed) > 1 else fixed[0], name=model.name)
    log.info("float32_output: the output of %s computed in float32", names)
    return new, True


def _float32_head(output):
    """`output` recomputed so that its final softmax/sigmoid runs in float32."""
    layer = output._keras_history.layer  # noqa: SLF001
    name = f"{layer.name}_float32"
    if len(layer.inbound_nodes) != 1:  # a shared layer: leave it as it is
        return keras.layers.Activation("linear", dtype="float32", name=name)(output)
    if isinstance(layer, keras.layers.Softmax) and getattr(layer, "axis", -1) == -1:
        return keras.layers.Activation("softmax", dtype="float32", name=name)(layer.input)
    activation = activation_name(getattr(layer, "activation", None))
    if activation not in ("softmax", "sigmoid"):
        return keras.layers.Activation("linear", dtype="float32", name=name)(output)
    if isinstance(layer, keras.layers.Activation):
        return keras.layers.Activation(activation, dtype="float32", name=name)(layer.input)
    # A Dense/Conv1D with the activation inside: the same layer without it, then the activation.
    config = dict(layer.get_config(), activation="linear")
    logits_layer = layer.__class__.from_config(config)
    logits = logits_layer(layer.input)
    logits_layer.set_weights(layer.get_weights())
    return keras.layers.Activation(activation, dtype="float32", name=name)(logits)
