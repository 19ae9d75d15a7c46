"""tf_keras -> Keras 3: a compressed model handed back to a Keras 3 workflow.

tfcompress prunes and quantizes in tf_keras (the Keras TFMOT accepts). A
Keras 3 user who wants to go on in Keras 3 (`model.export`, Keras 3 `fit`,
KerasHub) gets the stripped model back with `tfcompress.as_keras3(model)`:
the same layers, configurations and weights, so the same outputs. Pruning
and QAT wrappers are stripped first (zeros stay zero; QAT weights are baked
to their quantized values), since Keras 3 has no such wrappers.
"""

import copy
import inspect

from tfcompress._keras import (
    CONVERTIBLE_LAYERS,
    ConversionError,
    policy_name,
    qualname,
    ensure_tf_keras,
    fit_config,
    is_keras3,
    keras,
    vectorizer_arguments,
)

__all__ = ["as_keras3"]

# tf_keras configuration keys Keras 3 layers do not take, with the values for
# which dropping them changes nothing.
_DROPPABLE = {
    "time_major": lambda v: v is False,
    "implementation": lambda v: True,  # a kernel choice; same function
    "input_length": lambda v: True,  # Embedding: the Input carries the length
    "batch_input_shape": lambda v: True,  # the Input carries it
    "sparse": lambda v: v is False,
    "ragged": lambda v: v is False,
    "dynamic": lambda v: v is False,
    "fused": lambda v: v is None or v is True,
    "virtual_batch_size": lambda v: v is None,
    "adjustment": lambda v: v is None,
    "renorm": lambda v: v is False,
    "renorm_clipping": lambda v: v is None,
    "renorm_momentum": lambda v: True,
    "noise_shape": lambda v: v is None,
    "trainable": lambda v: v is True,  # layers without weights (SpatialDropout1D)
}


def _plain(value):
    """tf_keras configs may hold ListWrapper/tuple values: plain lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListWrapper":
        return [_plain(v) for v in value]
    return value


def _accepted(cls):
    """The keyword arguments `cls(...)` takes: its __init__'s, and its parents'
    as far as each passes **kwargs on."""
    keys = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        keys.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
        if klass.__name__ == "Layer":
            keys.update(("input_dim", "input_shape"))
    keys.discard("self")
    return keys


def _translate_object(obj, where):
    """A tf_keras serialized initializer/regularizer/constraint -> Keras 3."""
    if not isinstance(obj, dict) or "class_name" not in obj:
        return obj
    import keras as keras3

    class_name = obj["class_name"]
    target = module = None
    for candidate_module in (keras3.initializers, keras3.regularizers, keras3.constraints):
        candidate = getattr(candidate_module, class_name, None)
        if isinstance(candidate, type):
            target, module = candidate, candidate_module
            break
    if target is None:
        raise ConversionError(
            f"{where} uses {class_name!r}, which has no Keras 3 equivalent tfcompress knows. Fix: "
            "use a built-in initializer/regularizer/constraint."
        )
    config = dict(obj.get("config") or {})
    accepted = _accepted(target)
    for key in list(config):
        if key not in accepted:
            if key in _DROPPABLE and _DROPPABLE[key](config[key]):
                del config[key]
            else:
                raise ConversionError(f"{where}: {class_name}({key}={config[key]!r}) has no Keras 3 equivalent.")
    return {"module": "keras." + module.__name__.rsplit(".", 1)[-1], "class_name": class_name, "config": config, "registered_name": None}


def _translate(class_name, config, where):
    import keras as keras3

    if class_name not in CONVERTIBLE_LAYERS:
        raise ConversionError(
            f"{where} cannot be converted to Keras 3: tfcompress converts only "
            f"{', '.join(CONVERTIBLE_LAYERS)}. Fix: keep working in tf_keras "
            "(`tfcompress.keras`), or replace this layer with a supported one."
        )
    target = getattr(keras3.layers, class_name)
    config = _plain(copy.deepcopy(config))
    if class_name == "BatchNormalization" and isinstance(config.get("axis"), list):
        if len(config["axis"]) != 1:
            raise ConversionError(f"{where}: Keras 3 normalizes over one axis; this layer uses {config['axis']}.")
        config["axis"] = config["axis"][0]
    if "dtype" in config:
        config["dtype"] = policy_name(config["dtype"])
    if class_name == "InputLayer":
        if "batch_input_shape" in config:
            config["batch_shape"] = list(config.pop("batch_input_shape"))
        config.pop("sparse", None) if config.get("sparse") is False else None
        config.pop("ragged", None) if config.get("ragged") is False else None
        return config
    for key in ("layer", "backward_layer"):
        if isinstance(config.get(key), dict):
            inner = config[key]
            inner_where = f"{where}/{inner.get('config', {}).get('name', key)}"
            translated = _translate(inner["class_name"], inner["config"], inner_where)
            config[key] = {
                "module": "keras.layers",
                "class_name": inner["class_name"],
                "config": translated,
                "registered_name": None,
            }
    return fit_config(
        config,
        _accepted(target),
        _DROPPABLE,
        where,
        "has no equivalent in Keras 3. Fix: leave it at its default, or keep working in tf_keras.",
        _translate_object,
    )


def _convert_layer(layer):
    import keras as keras3

    if isinstance(layer, keras.Model):
        return as_keras3(layer)
    class_name = type(layer).__name__
    if getattr(keras.layers, class_name, None) is not type(layer):
        raise ConversionError(
            f"layer {layer.name!r} ({qualname(layer)}) is a custom layer: Keras 3 has no "
            "equivalent built from its configuration. Fix: keep working in tf_keras "
            "(`tfcompress.keras`), or write the layer for Keras 3 and copy the weights."
        )
    where = f"layer {layer.name!r} ({class_name})"
    if class_name == "TextVectorization":
        return _convert_vectorizer(layer, where)
    config = _translate(class_name, layer.get_config(), where)
    try:
        return getattr(keras3.layers, class_name).from_config(config)
    except (TypeError, ValueError) as err:
        raise ConversionError(f"{where} could not be rebuilt in Keras 3 from its configuration: {err}") from err


def _convert_vectorizer(layer, where):
    import keras as keras3

    return keras3.layers.TextVectorization(**vectorizer_arguments(layer, where))


def _copy(tfk_layer, k3_layer):
    if type(tfk_layer).__name__ == "TextVectorization":
        return  # its vocabulary went in through the configuration
    src = tfk_layer.get_weights()
    dst = k3_layer.get_weights()
    if [w.shape for w in src] != [w.shape for w in dst]:
        raise ConversionError(
            f"layer {tfk_layer.name!r} ({type(tfk_layer).__name__}): weight shapes differ in Keras 3 "
            f"({[w.shape for w in src]} vs {[w.shape for w in dst]}). This is a tfcompress bug; please "
            "report it with the layer's configuration."
        )
    k3_layer.set_weights(src)


def as_keras3(model):
    """Converts a tf_keras Sequential or Functional model to Keras 3.

    The inverse of `tfcompress.as_tf_keras`, for the same layers
    (`tfcompress._keras.CONVERTIBLE_LAYERS`). Pruning and QAT wrappers are
    stripped first (`pruning.strip`, `quantization.strip`), so a compressed
    model keeps its zeros and its quantized weight values.

    Args:
        model: a tf_keras model (a Keras 3 model is returned unchanged).

    Returns:
        A Keras 3 model with the same layer names, configurations and
        weights.

    Raises:
        ConversionError: a subclassed model, or a layer Keras 3 cannot
            rebuild from its configuration (the message names it).
    """
    if is_keras3(model):
        return model
    model = ensure_tf_keras(model, caller="as_keras3")
    from tfcompress import pruning, quantization

    if pruning.is_pruned(model):
        model = pruning.strip(model)
    if quantization.is_quantized(model):
        model = quantization.strip(model)
    import keras as keras3

    if isinstance(model, keras.Sequential):
        layers = [_convert_layer(layer) for layer in model.layers]
        stack = list(layers)
        if model.built and getattr(model, "inputs", None):
            inp = model.inputs[0]
            stack.insert(0, keras3.Input(batch_shape=tuple(inp.shape), dtype=inp.dtype.name, name=model._input_layers[0].name))  # noqa: SLF001
        new = keras3.Sequential(stack, name=model.name)
        if new.built:
            for old, fresh in zip(model.layers, layers):
                _copy(old, fresh)
        return new
    if type(model) is not keras.Model and type(model).__name__ != "Functional":
        raise ConversionError(
            f"model {model.name!r} ({qualname(model)}) is a subclassed tf_keras model: its call() is "
            "Python code. Fix: build it as a Sequential or Functional model."
        )
    tensors = {}
    for inp, input_layer in zip(model.inputs, model._input_layers):  # noqa: SLF001
        tensors[id(inp)] = keras3.Input(batch_shape=tuple(inp.shape), dtype=inp.dtype.name, name=input_layer.name)
    import tensorflow as tf

    converted = {}
    for depth in sorted(model._nodes_by_depth, reverse=True):  # noqa: SLF001
        for node in model._nodes_by_depth[depth]:  # noqa: SLF001
            layer = node.layer
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if layer.name not in converted:
                converted[layer.name] = (layer, _convert_layer(layer))
            fresh = converted[layer.name][1]
            args = tf.nest.map_structure(lambda t: tensors.get(id(t), t), node.call_args)
            kwargs = {k: v for k, v in node.call_kwargs.items() if k not in ("training", "mask")}
            kwargs = tf.nest.map_structure(lambda t: tensors.get(id(t), t), kwargs)
            for value in tf.nest.flatten((args, kwargs)):
                if tf.is_tensor(value) and not isinstance(value, keras3.KerasTensor):
                    raise ConversionError(
                        f"layer {layer.name!r} of model {model.name!r} is called on a tensor that is not a "
                        "layer output (a TensorFlow op in the graph); Keras 3 cannot rebuild that."
                    )
            out = fresh(*args, **kwargs)
            for old, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(out)):
                tensors[id(old)] = new
    outputs = [tensors[id(t)] for t in model.outputs]
    inputs = [tensors[id(t)] for t in model.inputs]
    new = keras3.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0], name=model.name)
    for old, fresh in converted.values():
        _copy(old, fresh)
    return new
