"""float32 copies of mixed-precision models (mixed precision must not reach
TFMOT's wrappers or the TFLite converter)."""

from tfcompress._keras import ensure_tf_keras, keras
from tfcompress._keras.graph import clone_with
from tfcompress._keras.to_tf_keras import policy_name


def _is_mixed(dtype):
    name = policy_name(dtype)
    return isinstance(name, str) and name.startswith("mixed_")


def _float32_config(config):
    """Replaces every mixed dtype policy in a (nested) layer config."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if key == "dtype" and _is_mixed(value):
                out[key] = "float32"
            else:
                out[key] = _float32_config(value)
        return out
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config


def is_mixed_precision(model):
    """True if any layer of `model` computes in float16 or bfloat16."""
    for layer in _all_layers(model):
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and policy.compute_dtype in ("float16", "bfloat16"):
            return True
    return False


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        inner = getattr(layer, "layer", None)
        if isinstance(inner, keras.layers.Layer):
            yield inner


def rebuild_float32(model):
    """Returns a float32 copy of a (mixed-precision) tf_keras model.

    Every layer is rebuilt from its configuration with a float32 dtype policy
    and the weights are copied (variables of mixed-precision layers are already
    float32, so nothing is rounded). A model that is already float32 is
    returned unchanged.
    """
    model = ensure_tf_keras(model, caller="rebuild_float32")
    if not is_mixed_precision(model):
        return model

    def clone(layer):
        if isinstance(layer, keras.Model):
            return rebuild_float32(layer)
        config = _float32_config(layer.get_config())
        return layer.__class__.from_config(config)

    return clone_with(model, clone)
