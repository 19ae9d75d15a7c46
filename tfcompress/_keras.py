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
import copy
import importlib.metadata
import inspect
import os
import sys
import warnings

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
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

__all__ = ["keras", "tf", "as_tf_keras", "ensure_tf_keras", "ConversionError"]


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


# --------------------------------------------------------------------------
# Keras 3 -> tf_keras
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Re-running a tf_keras graph
# --------------------------------------------------------------------------


def rebuild_functional(model, clone, drop=(), cut=None):
    """Re-runs a tf_keras functional model's graph with new layers.

    Args:
        model: a tf_keras functional model.
        clone: `layer -> new layer`, called once per layer (shared layers
            stay shared).
        drop: names of layers to leave out; each passes its first input on.
        cut: `(layer name, new keras.Input)`: that layer's output is replaced
            by the Input, which becomes the only input of the new model; the
            layers upstream of it are left out. The name may be the model's
            input layer's (to change the input's dtype).

    Returns:
        A new tf_keras functional model with the same name.
    """
    tensors = {}
    if cut is None:
        for inp, input_layer in zip(model.inputs, model._input_layers):  # noqa: SLF001
            tensors[id(inp)] = keras.Input(batch_shape=tuple(inp.shape), dtype=inp.dtype, name=input_layer.name)
    new_layers = {}
    for depth in sorted(model._nodes_by_depth, reverse=True):  # noqa: SLF001
        for node in model._nodes_by_depth[depth]:  # noqa: SLF001
            layer = node.layer
            if cut is not None and layer.name == cut[0]:
                for old in tf.nest.flatten(node.outputs):
                    tensors[id(old)] = cut[1]
                continue
            if isinstance(layer, keras.layers.InputLayer):
                continue
            flat_in = [t for t in tf.nest.flatten((node.call_args, node.call_kwargs)) if tf.is_tensor(t)]
            if cut is not None and not all(id(t) in tensors for t in flat_in):
                continue  # upstream of the cut
            args = tf.nest.map_structure(lambda t: tensors.get(id(t), t), node.call_args)
            kwargs = tf.nest.map_structure(lambda t: tensors.get(id(t), t), node.call_kwargs)
            if layer.name in drop:
                out = args[0]
            else:
                if layer.name not in new_layers:
                    new_layers[layer.name] = clone(layer)
                out = new_layers[layer.name](*args, **kwargs)
            for old, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(out)):
                tensors[id(old)] = new
    outputs = tf.nest.map_structure(lambda t: tensors[id(t)], model.outputs)
    inputs = [tensors[id(t)] for t in model.inputs] if cut is None else [cut[1]]
    return keras.Model(
        inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0], name=model.name
    )


def inner_layer(layer):
    """The layer a pruning or QAT wrapper holds, else `layer` itself."""
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_annotate, quantize_wrapper
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    wrappers = (pruning_wrapper.PruneLowMagnitude, quantize_wrapper.QuantizeWrapper, quantize_annotate.QuantizeAnnotate)
    return layer.layer if isinstance(layer, wrappers) else layer


def copy_weights(source, target, weights=None):
    """The one "copy the weights into a rebuilt model" routine.

    Layers of `source` and `target` are paired by the name of the layer inside
    any pruning/QAT wrapper (so `lstm` pairs with `prune_low_magnitude_lstm`
    and `quant_lstm`); each paired target layer with weights gets
    `weights(source_layer, target_inner_layer)` (a list of arrays; None, or no
    `weights` function: the source layer's own weights). Unpaired layers are
    left as they are.
    """
    by_name = {inner_layer(layer).name: layer for layer in source.layers}
    for layer in target.layers:
        fresh = inner_layer(layer)
        old = by_name.get(fresh.name)
        if old is None or not fresh.weights:
            continue
        values = weights(old, fresh) if weights is not None else None
        fresh.set_weights(values if values is not None else inner_layer(old).get_weights())


def clone_with(model, clone, weights=None, drop=(), cut=None):
    """A copy of a Sequential or Functional model, layer by layer, with weights.

    Args:
        model: a tf_keras Sequential or Functional model.
        clone: `layer -> new layer` (a wrapped, unwrapped or float32 copy).
        weights: see `copy_weights`.
        drop, cut: see `rebuild_functional` (the graph is then re-run rather
            than cloned).

    Built under a float32 global policy (TFMOT's wrappers and the TFLite
    converter need float32).
    """
    with float32_policy():
        if drop or cut is not None:
            new = rebuild_functional(model, clone, drop=drop, cut=cut)
        else:
            new = keras.models.clone_model(model, clone_function=clone)
        copy_weights(model, new, weights)
    return new


def predict(model, x, batch_size=256):
    """`model.predict` on in-memory arrays, batch by batch, without tf.data.

    Same outputs as `model.predict(x, batch_size=...)`. Under
    `tf.config.experimental.enable_op_determinism()` (recipes turn it on),
    tf.data's determinism rewrite of Keras' prediction pipeline makes
    TensorFlow log "NodeDef mentions attribute use_unbounded_threadpool ..."
    on every call (TF 2.21); feeding batches directly avoids the pipeline.
    """
    chunks = [model.predict_on_batch(tf.nest.map_structure(lambda a: a[i : i + batch_size], x)) for i in range(0, _length(x), batch_size)]
    if not chunks:  # no examples: the model's outputs for an empty batch
        return tf.nest.map_structure(np.asarray, model.predict_on_batch(x))
    return tf.nest.map_structure(lambda *parts: np.concatenate([np.asarray(p) for p in parts]), *chunks)


def _length(x):
    return len(tf.nest.flatten(x)[0])


def require_graph_model(model, caller):
    """A clear error unless `model` is a built Sequential or Functional model
    (a subclassed model's layers cannot be rewired)."""
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise ValueError(
            f"{caller}() needs a Sequential or Functional model; model {model.name!r} is a "
            f"subclassed model ({type(model).__module__}.{type(model).__qualname__}), whose "
            "layers cannot be rewired. Fix: build it as a Functional model, or wrap the "
            f"layers you want by hand with tfcompress.pruning.PruneLowMagnitude."
        )
    if not model.built:
        raise ValueError(
            f"{caller}() needs a built model; model {model.name!r} has no weights yet. Fix: "
            "give it an Input, or call model.build(input_shape) first."
        )


_MIXED_WARNED = []


def warn_mixed_once():
    """Says once per process that a mixed-precision model is compressed as a float32 copy."""
    if not _MIXED_WARNED:
        _MIXED_WARNED.append(True)
        warnings.warn(
            "The model computes in mixed precision; tfcompress prunes and "
            "quantizes a float32 copy of it (TFMOT's wrappers break under "
            "mixed_float16, tfmot#409). Training the result runs in float32.",
            UserWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------
# float32 rebuild (mixed precision must not reach TFMOT or the converter)
# --------------------------------------------------------------------------


@contextlib.contextmanager
def float32_policy():
    """Runs the body with tf_keras' global dtype policy set to float32."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


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


def layer_selector(items, argument, default):
    """A `layers=`/`skip=`-style argument -> predicate(layer) -> bool.

    `items` is None (use `default`), a function layer -> bool, or a list of
    layer classes and/or layer names (a single class or name is accepted too).
    """
    if items is None:
        return default
    if callable(items) and not isinstance(items, type):
        return items
    if isinstance(items, (str, type)):
        items = [items]
    names, types = set(), []
    for item in items:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, type):
            types.append(item)
        else:
            raise TypeError(
                f"{argument} must be a list of layer classes and/or layer names, or a "
                f"function layer -> bool. Received an item {item!r}."
            )
    types = tuple(types)
    return lambda layer: layer.name in names or (bool(types) and isinstance(layer, types))
