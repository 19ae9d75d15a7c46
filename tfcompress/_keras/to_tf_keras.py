"""Keras 3 -> tf_keras: a Keras 3 model turned into the Keras TFMOT accepts.

Layer configurations are translated key by key (what tf_keras lacks is
dropped only where dropping it changes nothing) and weights are copied;
anything not translated and tested is refused with `ConversionError`.
"""

import copy
import inspect

from tfcompress._keras import ConversionError, is_keras3, keras, qualname

# Keras 3 layer classes that are translated and tested numerically. Anything
# else is refused with a message rather than converted on trust.
CONVERTIBLE_LAYERS = (
    "InputLayer",
    "Embedding",
    "LSTM",
    "GRU",
    "SimpleRNN",
    "Bidirectional",
    "TimeDistributed",
    "Dense",
    "Dropout",
    "SpatialDropout1D",
    "Conv1D",
    "MaxPooling1D",
    "AveragePooling1D",
    "GlobalMaxPooling1D",
    "GlobalAveragePooling1D",
    "LayerNormalization",
    "BatchNormalization",
    "Activation",
    "Flatten",
    "Masking",
    "Concatenate",
    "Add",
    "TextVectorization",
)

# Keras 3 configuration keys that tf_keras 2.21 does not have, with the values
# for which dropping them changes nothing.
_DROPPABLE = {
    "optional": lambda v: v is False,
    "seed": lambda v: True,  # dropout randomness only, never the function
    "use_cudnn": lambda v: v in ("auto", True, False),
    "quantization_config": lambda v: v is None,
    "lora_rank": lambda v: v is None,
    "lora_alpha": lambda v: v is None,
    "rms_scaling": lambda v: v is False,
    "input_axes": lambda v: v is None,
    "output_axes": lambda v: v is None,
    "synchronized": lambda v: v is False,
    "renorm": lambda v: v is False,
    "renorm_clipping": lambda v: v is None,
    "renorm_momentum": lambda v: True,
}

_LAYER_BASE_KWARGS = {
    "name",
    "dtype",
    "trainable",
    "dynamic",
    "input_dim",
    "input_shape",
    "batch_input_shape",
    "batch_size",
    "weights",
    "activity_regularizer",
    "autocast",
    "implementation",
    "zero_output_for_mask",
    "input_length",
}


def _accepted_keys(cls):
    keys = set(_LAYER_BASE_KWARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                keys.add(p.name)
    keys.discard("self")
    return keys


def policy_name(dtype):
    if isinstance(dtype, dict) and "config" in dtype:
        return dtype["config"].get("name", "float32")
    return dtype


def _translate_object(obj, where):
    """A Keras 3 serialized initializer/regularizer/constraint -> tf_keras."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if not isinstance(obj, dict) or "class_name" not in obj:
        return obj
    class_name = obj["class_name"]
    config = dict(obj.get("config") or {})
    if obj.get("registered_name") and obj["registered_name"] != class_name:
        raise ConversionError(
            f"{where} uses the custom object {obj['registered_name']!r}, which "
            "tfcompress cannot translate to tf_keras. Fix: use a built-in "
            "initializer/regularizer/constraint, or build the model with "
            "`tfcompress.keras`."
        )
    target = None
    for module in (keras.initializers, keras.regularizers, keras.constraints):
        target = getattr(module, class_name, None)
        if isinstance(target, type):
            break
        target = None
    if target is not None:
        accepted = _accepted_keys(target)
        for key in list(config):
            if key not in accepted:
                if key in _DROPPABLE and _DROPPABLE[key](config[key]):
                    del config[key]
                else:
                    raise ConversionError(
                        f"{where}: {class_name}({key}={config[key]!r}) has no "
                        "equivalent in tf_keras 2.21. Fix: leave it at its "
                        "default, or build the model with `tfcompress.keras`."
                    )
    return {"class_name": class_name, "config": config}


def _translate_layer_config(class_name, config, layer_name, module):
    """Translates one Keras 3 layer config into a tf_keras one."""
    where = f"layer {layer_name!r} ({module}.{class_name})"
    if class_name not in CONVERTIBLE_LAYERS:
        raise ConversionError(
            f"{where} cannot be converted to tf_keras: tfcompress converts only "
            f"{', '.join(CONVERTIBLE_LAYERS)}. Fix: build the model with "
            "`from tfcompress import keras` (tf_keras), where every Keras 2 "
            "layer is available, or replace this layer with a supported one."
        )
    target = getattr(keras.layers, class_name)
    config = copy.deepcopy(config)
    if "dtype" in config:
        config["dtype"] = policy_name(config["dtype"])
        if isinstance(config["dtype"], str) and config["dtype"].startswith("int8_"):
            raise ConversionError(
                f"{where} is quantized by Keras 3 (dtype policy "
                f"{config['dtype']!r}), which tf_keras cannot represent. Fix: "
                "convert the float model, then quantize with "
                "tfcompress.quantization."
            )
    if class_name == "InputLayer":
        if "batch_shape" in config:
            config["batch_input_shape"] = tuple(config.pop("batch_shape"))
        if config.get("sparse") or config.get("ragged"):
            raise ConversionError(
                f"{where} takes sparse or ragged input, which tfcompress does not "
                "convert. Fix: feed dense, padded token ids."
            )
    for key in ("layer", "backward_layer"):  # Bidirectional, TimeDistributed
        if isinstance(config.get(key), dict):
            inner = config[key]
            inner_name = inner.get("config", {}).get("name", key)
            config[key] = {
                "class_name": inner["class_name"],
                "config": _translate_layer_config(
                    inner["class_name"],
                    inner["config"],
                    f"{layer_name}/{inner_name}",
                    inner.get("module", "keras.layers"),
                ),
            }
    return fit_config(
        config,
        _accepted_keys(target),
        _DROPPABLE,
        where,
        "has no equivalent in tf_keras 2.21. Fix: leave it at its Keras 3 default, or build "
        "this layer with `tfcompress.keras`.",
        _translate_object,
    )


def fit_config(config, accepted, droppable, where, refusal, translate_object):
    """Fits a layer configuration from one Keras to a class of the other.

    A key the target does not take is dropped when its value changes nothing
    (`droppable[key](value)`), and refused otherwise (`refusal` completes
    the message); nested initializers, regularizers and constraints go
    through `translate_object`. Nested layers ("layer", "backward_layer")
    are left to the caller.
    """
    for key in list(config):
        value = config[key]
        if key not in accepted:
            if key in droppable and droppable[key](value):
                del config[key]
                continue
            raise ConversionError(f"{where}: argument {key}={value!r} {refusal}")
        if isinstance(value, dict) and "class_name" in value and key not in ("layer", "backward_layer"):
            config[key] = translate_object(value, f"{where} argument {key!r}")
    return config


def vectorizer_arguments(layer, where):
    """The arguments that rebuild a TextVectorization layer in the other
    Keras: its configuration plus its vocabulary (adapted state, not a
    weight). Custom standardize/split functions are code: refused."""
    config = layer.get_config()
    for key in ("standardize", "split"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise ConversionError(
                f"{where} uses a custom {key} function, which is Python code tfcompress cannot "
                f"translate. Fix: use a built-in {key} option."
            )
    if config.get("output_mode", "int") == "tf_idf":
        raise ConversionError(f"{where}: output_mode='tf_idf' is not converted; use 'int'.")
    drop = ("dtype", "vocabulary_size", "idf_weights", "batch_input_shape")
    config = {k: (list(v) if type(v).__name__ == "ListWrapper" else v) for k, v in config.items() if k not in drop}
    if isinstance(config.get("ngrams"), list):
        config["ngrams"] = tuple(config["ngrams"])
    config["vocabulary"] = [str(t) for t in layer.get_vocabulary()] if layer.vocabulary_size() > 2 else None
    return config


def _convert_vectorizer(layer):
    """A Keras 3 TextVectorization -> tf_keras, vocabulary included."""
    return keras.layers.TextVectorization(**vectorizer_arguments(layer, f"layer {layer.name!r} (keras.layers.TextVectorization)"))


def _convert_layer(layer):
    import keras as keras3

    if isinstance(layer, keras3.Model):
        return as_tf_keras(layer)
    if type(layer) is keras3.layers.TextVectorization:
        return _convert_vectorizer(layer)
    cls = type(layer)
    class_name = cls.__name__
    module = cls.__module__
    if not module.startswith("keras.") or getattr(keras3.layers, class_name, None) is not cls:
        raise ConversionError(
            f"layer {layer.name!r} ({qualname(layer)}) is a custom layer: its "
            "code is Python, not configuration, so tfcompress cannot translate it "
            "to tf_keras. Fix: write the layer against `tfcompress.keras` "
            "(tf_keras) and build the model with it."
        )
    config = _translate_layer_config(class_name, layer.get_config(), layer.name, "keras.layers")
    try:
        return keras.layers.deserialize({"class_name": class_name, "config": config})
    except (TypeError, ValueError) as err:
        raise ConversionError(
            f"layer {layer.name!r} (keras.layers.{class_name}) could not be rebuilt "
            f"in tf_keras from its configuration: {err}. Fix: build this layer "
            "with `tfcompress.keras`."
        ) from err


def _copy_weights(k3_layer, tfk_layer):
    src = k3_layer.get_weights()
    dst = tfk_layer.get_weights()
    if [w.shape for w in src] != [w.shape for w in dst]:
        raise ConversionError(
            f"layer {k3_layer.name!r} ({type(k3_layer).__name__}): weight shapes "
            f"differ after conversion (Keras 3 {[w.shape for w in src]} vs "
            f"tf_keras {[w.shape for w in dst]}). This is a tfcompress bug; "
            "please report it with the layer's configuration."
        )
    tfk_layer.set_weights(src)


def _input_from_keras3(tensor, name):
    shape = tuple(tensor.shape)
    return keras.Input(batch_shape=shape, dtype=tensor.dtype, name=name)


def as_tf_keras(model):
    """Converts a Keras 3 Sequential or Functional model to tf_keras.

    The tf_keras model has the same layers (same names and configuration) and
    the same weights, so it computes the same function. A tf_keras model is
    returned unchanged. Supported layers are listed in
    `tfcompress._keras.CONVERTIBLE_LAYERS`.

    Args:
        model: a `keras.Sequential` or functional `keras.Model` (Keras 3), or a
            tf_keras model.

    Returns:
        A tf_keras model.

    Raises:
        ConversionError: the model is subclassed, or a layer cannot be
            converted; the message names the layer, its class and the fix.

    Example:

    >>> import keras  # Keras 3
    >>> k3 = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    >>> tfk = as_tf_keras(k3)
    >>> type(tfk).__module__.startswith("tf_keras")
    True
    """
    if isinstance(model, keras.Model):
        return model
    if not is_keras3(model):
        raise TypeError(
            "as_tf_keras() expects a Keras 3 model. Received: model of type "
            f"{qualname(model)}."
        )
    import keras as keras3
    from keras.src.models.functional import Functional

    if isinstance(model, keras3.Sequential):
        return _convert_sequential(model)
    if type(model) is Functional:
        return _convert_functional(model)
    raise ConversionError(
        f"model {model.name!r} ({qualname(model)}) is a subclassed Keras 3 "
        "model: its call() is Python code, which cannot be translated into a "
        "tf_keras model. Fix: build it as a Sequential or Functional model, or "
        "write the class against `tfcompress.keras` (tf_keras)."
    )


def _convert_sequential(model):
    import keras as keras3

    new_layers = [_convert_layer(layer) for layer in model.layers]
    stack = list(new_layers)
    if model.built and getattr(model, "inputs", None):
        first = model._layers[0] if model._layers else None
        name = first.name if isinstance(first, keras3.layers.InputLayer) else None
        inp = model.inputs[0]
        stack.insert(
            0,
            keras.layers.InputLayer(
                batch_input_shape=tuple(inp.shape), dtype=inp.dtype, name=name
            ),
        )
    new = keras.Sequential(stack, name=model.name)
    if new.built:
        for old, fresh in zip(model.layers, new_layers):
            _copy_weights(old, fresh)
    return new


class _DerivedMask:
    """Stands for a Keras 3 `keras.ops` result (mask propagation nodes)."""

    def __init__(self, operation):
        self.operation = operation


def _convert_functional(model):
    from keras.src import tree
    from keras.src.backend.common.keras_tensor import KerasTensor

    import keras as keras3

    tensors = {}
    for tensor in tree.flatten(model.inputs):
        history = tensor._keras_history
        tensors[id(tensor)] = _input_from_keras3(tensor, history.operation.name)

    def swap(x):
        if isinstance(x, KerasTensor):
            return tensors[id(x)]
        return x

    def refuse(op):
        raise ConversionError(
            f"operation {op.name!r} ({qualname(op)}) is a `keras.ops` call "
            f"inside model {model.name!r}; tfcompress converts layers, not "
            "Keras 3 operations. Fix: express it with a layer (for example "
            "keras.layers.Add or Activation), or build the model with "
            "`tfcompress.keras`."
        )

    new_layers = {}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            layer = node.operation
            if not isinstance(layer, keras3.layers.Layer):
                # Keras 3 writes mask propagation into the graph as ops
                # (not_equal, any, ...). tf_keras propagates masks itself, so
                # these are only kept track of, and refused if used as data.
                for out in tree.flatten(node.outputs):
                    tensors[id(out)] = _DerivedMask(layer)
                continue
            if id(layer) not in new_layers:
                new_layers[id(layer)] = (layer, _convert_layer(layer))
            fresh = new_layers[id(layer)][1]

            args = tree.map_structure(swap, node.arguments.args)
            kwargs = dict(tree.map_structure(swap, node.arguments.kwargs))
            # Keras 3 records the symbolic call's training=False; copied into a
            # tf_keras node it would switch dropout off during fit().
            kwargs.pop("training", None)
            if isinstance(kwargs.get("mask"), _DerivedMask):
                del kwargs["mask"]
            for value in tree.flatten((args, kwargs)):
                if isinstance(value, _DerivedMask):
                    refuse(value.operation)
            outputs = fresh(*args, **kwargs)
            for old, new in zip(tree.flatten(node.outputs), tree.flatten(outputs)):
                tensors[id(old)] = new

    def out(x):
        value = tensors[id(x)]
        if isinstance(value, _DerivedMask):
            refuse(value.operation)
        return value

    inputs = tree.map_structure(out, model._inputs_struct)
    outputs = tree.map_structure(out, model._outputs_struct)
    new = keras.Model(inputs, outputs, name=model.name)
    for old, fresh in new_layers.values():
        _copy_weights(old, fresh)
    return new
