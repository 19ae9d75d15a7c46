"""Rebuilding tf_keras models: re-running a graph, cloning with weights, and
the checks and warnings every model rewrite shares."""

import warnings

import numpy as np
import tensorflow as tf

from tfcompress._keras import float32_policy, keras


def rebuild_functional(model, clone, drop=(), cut=None, input_shapes=None):
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
        input_shapes: batch shapes for the new inputs (one per model input),
            e.g. to fix a dynamic length; default the model's own.

    Returns:
        A new tf_keras functional model with the same name.
    """
    tensors = {}
    if cut is None:
        shapes = input_shapes or [tuple(inp.shape) for inp in model.inputs]
        for inp, input_layer, shape in zip(model.inputs, model._input_layers, shapes):  # noqa: SLF001
            tensors[id(inp)] = keras.Input(batch_shape=tuple(shape), dtype=inp.dtype, name=input_layer.name)
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


def clone_with(model, clone, weights=None, drop=(), cut=None, input_shapes=None):
    """A copy of a Sequential or Functional model, layer by layer, with weights.

    Args:
        model: a tf_keras Sequential or Functional model.
        clone: `layer -> new layer` (a wrapped, unwrapped or float32 copy).
        weights: see `copy_weights`.
        drop, cut, input_shapes: see `rebuild_functional` (the graph is then
            re-run rather than cloned).

    Built under a float32 global policy (TFMOT's wrappers and the TFLite
    converter need float32).
    """
    with float32_policy():
        if drop or cut is not None or input_shapes is not None:
            new = rebuild_functional(model, clone, drop=drop, cut=cut, input_shapes=input_shapes)
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


def activation_name(activation):
    """The name of a Keras activation, also inside TFMOT's QuantizeAwareActivation."""
    for _ in range(3):
        if isinstance(activation, str):
            return activation
        name = getattr(activation, "__name__", None)
        if name:
            return name
        activation = getattr(activation, "activation", None)
    return None


def layer_selector(items, argument, default, model=None, caller=None):
    """A `layers=`/`skip=`-style argument -> predicate(layer) -> bool.

    `items` is None (use `default`), a function layer -> bool, or a list of
    layer classes and/or layer names (a single class or name is accepted too).
    Given `model`, a name that matches none of its layers is refused, with
    the names it has (a misspelt name would otherwise be ignored silently).
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
    if model is not None:
        present = [layer.name for layer in model.layers]
        unknown = sorted(names - set(present))
        if unknown:
            where = f"{caller}(): " if caller else ""
            raise ValueError(
                f"{where}{argument} names {', '.join(map(repr, unknown))}, but model {model.name!r} has no "
                f"such layer. Its layers: {', '.join(present)}. Fix: use one of these names "
                "(model.summary() lists them)."
            )
    types = tuple(types)
    return lambda layer: layer.name in names or (bool(types) and isinstance(layer, types))
