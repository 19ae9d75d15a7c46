"""Structural pruning: whole units out, a smaller dense model back.

Magnitude pruning leaves zeros inside dense kernels, which still cost
multiply-adds: the file shrinks, the latency does not. `shrink` removes whole
units instead: an LSTM/GRU/SimpleRNN unit (its column in each gate of the
kernel, recurrent kernel and bias, its row of the recurrent kernel, and the
next layer's input rows for it), a unit of each direction of a
`Bidirectional` layer, a Dense unit, a Conv1D filter, an embedding dimension.
The result is an ordinary, smaller Keras model with the same inputs and
outputs, which trains, prunes, quantizes and exports like any other.

    small = tfcompress.pruning.shrink(model, units=0.5)         # half of every layer's units
    small = tfcompress.pruning.shrink(model, units={"lstm_0": 32, "embedding": 0.75})
    small.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    small.fit(x, y, epochs=2)                                     # or distil from `model`

Which units go is decided by a score per unit (`criterion`):

- `"l2"` (no data): the norm of the unit's incoming weights (its columns in
  the layer's kernels) times the norm of its outgoing weights (its rows in
  the next layers' input kernels, and in its own recurrent kernel);
- `"activation"`: the mean absolute output of the unit on `data`;
- `"taylor"`: the first-order Taylor estimate of the loss change when the
  unit is removed (|output x gradient|, summed over time steps, averaged
  over examples; Molchanov et al. 2017) on labelled `data`.

A layer can lose units only when every layer that reads its output (through
dropout, activations, normalisation and pooling) can take fewer inputs: the
layer producing the model's output, and layers read by Flatten, Concatenate,
Add or custom layers, keep their width (with `units=<fraction>` they are
listed in the report's `skipped`, with the reason; named explicitly, they
raise an error).
"""

import logging

import numpy as np
import tensorflow as tf

from tfcompress._keras import ensure_tf_keras, keras, require_graph_model
from tfcompress._keras.graph import rebuild_functional

__all__ = ["shrink", "multiply_adds", "CRITERIA"]

log = logging.getLogger("tfcompress")

CRITERIA = ("l2", "activation", "taylor")

_L = keras.layers
_GATES = ((_L.LSTM, 4), (_L.GRU, 3), (_L.SimpleRNN, 1))
_WIDTH_KEY = ((_L.Embedding, "output_dim"), (_L.Dense, "units"), (_L.Conv1D, "filters"))
_PASSTHROUGH = (
    _L.Dropout,
    _L.SpatialDropout1D,
    _L.GaussianNoise,
    _L.GaussianDropout,
    _L.AlphaDropout,
    _L.ReLU,
    _L.LeakyReLU,
    _L.ELU,
    _L.Masking,
    _L.ActivityRegularization,
    _L.GlobalMaxPooling1D,
    _L.GlobalAveragePooling1D,
    _L.MaxPooling1D,
    _L.AveragePooling1D,
)
_NOT_ELEMENTWISE = ("softmax", "log_softmax")


def _gates(layer):
    """Gates of an LSTM/GRU/SimpleRNN layer (None for other layers)."""
    return next((g for cls, g in _GATES if type(layer) is cls or isinstance(layer, cls)), None)


def _kind(layer):
    """"rnn", "bidirectional", "embedding", "dense", "conv1d", or None: a layer
    whose output width can change and whose weights `_slice` knows."""
    if isinstance(layer, _L.Bidirectional):
        return "bidirectional" if _gates(layer.forward_layer) and _gates(layer.backward_layer) else None
    if _gates(layer):
        return "rnn"
    if isinstance(layer, _L.Embedding):
        return "embedding"
    if isinstance(layer, _L.Conv1D) and not isinstance(layer, _L.Conv1DTranspose):
        return "conv1d" if layer.groups == 1 and layer.data_format == "channels_last" else None
    if type(layer) is _L.Dense:
        return "dense"
    return None


def _passes(layer):
    """Whether `layer` hands each input channel on unchanged (so the next layer
    sees the same channels); normalisation layers pass them with per-channel weights."""
    if isinstance(layer, _L.Activation):
        return str(keras.activations.serialize(layer.activation)) not in _NOT_ELEMENTWISE
    if isinstance(layer, (_L.BatchNormalization, _L.LayerNormalization)):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = len(layer.input_shape) if isinstance(layer.input_shape, tuple) else None
        return len(axis) == 1 and (axis[0] == -1 or (rank is not None and axis[0] == rank - 1))
    if isinstance(layer, (_L.GlobalMaxPooling1D, _L.GlobalAveragePooling1D, _L.MaxPooling1D, _L.AveragePooling1D)):
        return layer.data_format == "channels_last"
    return isinstance(layer, _PASSTHROUGH)


def _width(layer):
    """Units of a width layer (per direction for Bidirectional)."""
    if isinstance(layer, _L.Bidirectional):
        return layer.forward_layer.units
    if _gates(layer):
        return layer.units
    return next(getattr(layer, key) for cls, key in _WIDTH_KEY if isinstance(layer, cls))


def _model_nodes(model):
    return {id(node) for nodes in model._nodes_by_depth.values() for node in nodes}  # noqa: SLF001


def _readers(model, layer, nodes):
    """Layers of `model` that read `layer`'s output."""
    return [node.layer for node in layer._outbound_nodes if id(node) in nodes]  # noqa: SLF001


def _reach(model, layer, nodes, outputs):
    """`(consumers, passthroughs)` reading `layer`'s channels, or raises
    `_Blocked(reason)` when some reader cannot take fewer channels."""
    consumers, passthroughs, stack = [], [], [layer]
    while stack:
        current = stack.pop()
        if len(current._inbound_nodes) != 1:  # noqa: SLF001
            raise _Blocked(f"layer {current.name!r} is used more than once in the model")
        if any(id(t) in outputs for t in tf.nest.flatten(current.output)):
            where = "" if current is layer else f" (through {current.name!r})"
            raise _Blocked(f"its output is the model's output{where}")
        for reader in _readers(model, current, nodes):
            if _passes(reader):
                passthroughs.append(reader)
                stack.append(reader)
            elif _kind(reader) is not None and reader.__class__ is not _L.Embedding:
                if len(reader._inbound_nodes) != 1:  # noqa: SLF001
                    raise _Blocked(f"layer {reader.name!r}, which reads it, is used more than once in the model")
                consumers.append(reader)
            elif any(id(t) in outputs for t in tf.nest.flatten(reader.output)):
                raise _Blocked(f"it computes the model's output (through {reader.name!r})")
            else:
                raise _Blocked(f"layer {reader.name!r} ({type(reader).__name__}) reads it and cannot take fewer input channels")
    return consumers, passthroughs


class _Blocked(Exception):
    pass


def _blocker(layer):
    """Why `layer` itself cannot change width, or None."""
    if _kind(layer) is None:
        return f"tfcompress cannot change the width of a {type(layer).__name__} layer"
    rnn = [layer.forward_layer, layer.backward_layer] if isinstance(layer, _L.Bidirectional) else [layer] if _gates(layer) else []
    if any(getattr(r, "return_state", False) for r in rnn):
        return "it returns its states (return_state=True)"
    if isinstance(layer, _L.Bidirectional) and layer.merge_mode is None:
        return "its two directions are separate outputs (merge_mode=None)"
    if isinstance(layer, _L.Bidirectional) and layer.forward_layer.units != layer.backward_layer.units:
        return "its two directions have different widths"
    return None


def _parse_units(model, units):
    """`units` -> {layer name: (fraction or count, named outright)}."""
    layers = {layer.name: layer for layer in model.layers}
    if isinstance(units, (int, float)) and not isinstance(units, bool):
        if not 0 < units < 1:
            raise ValueError(
                f"units must be a fraction in (0, 1) of each layer's units to keep, or a dict "
                f"{{layer name or class name: fraction or count}}. Received: units={units!r}."
            )
        return {name: (units, False) for name, layer in layers.items() if _kind(layer) is not None}
    if not isinstance(units, dict) or not units:
        raise TypeError(
            f"units must be a fraction in (0, 1) (e.g. 0.5: keep half of every layer's units) or a non-empty dict "
            f"{{layer name or class name: fraction or count to keep}}. Received: units={units!r}."
        )
    chosen = {}
    for key, value in units.items():
        by_class = key not in layers
        matches = [n for n, l in layers.items() if type(l).__name__ == key] if by_class else [key]
        if not matches:
            widths = ", ".join(f"{n} ({type(l).__name__})" for n, l in layers.items() if _kind(l) is not None)
            raise ValueError(
                f"shrink(): units names {key!r}, but model {model.name!r} has no layer of that name or class. "
                f"Layers whose units can be removed: {widths or 'none'}."
            )
        for name in matches:  # a layer named outright must shrink; one matched by class may be skipped
            chosen[name] = (value, not by_class or chosen.get(name, (None, False))[1])
    return chosen


def _count(name, value, width):
    if isinstance(value, float) and 0 < value < 1:
        return max(1, int(round(width * value)))
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= width:
        return value
    raise ValueError(
        f"shrink(): units[{name!r}] must be a fraction in (0, 1) or a count in [1, {width}] of layer {name!r}'s "
        f"{width} units to keep. Received: {value!r}."
    )


# ----------------------------------------------------------------- scores


def _incoming(layer):
    """Per unit (per direction): the squared norm of its incoming weights."""
    weights = layer.get_weights()
    kind = _kind(layer)
    if kind == "bidirectional":
        half = len(weights) // 2
        return [_incoming_rnn(layer.forward_layer, weights[:half]), _incoming_rnn(layer.backward_layer, weights[half:])]
    if kind == "rnn":
        return [_incoming_rnn(layer, weights)]
    kernel = weights[0]
    return [np.sum(kernel.reshape(-1, kernel.shape[-1]) ** 2, axis=0)]


def _incoming_rnn(layer, weights):
    units, gates = layer.units, _gates(layer)
    sq = np.sum(weights[0] ** 2, axis=0) + np.sum(weights[1] ** 2, axis=0)
    return sq.reshape(gates, units).sum(0)


def _outgoing(layer, consumers):
    """Per unit (per direction): the squared norm of the rows that read it (in
    `consumers`' input kernels, and in its own recurrent kernels)."""
    total = 0.0
    for consumer in consumers:
        weights = consumer.get_weights()
        kind = _kind(consumer)
        if kind == "bidirectional":
            kernels = [weights[0], weights[len(weights) // 2]]
        elif kind == "conv1d":
            kernels = [np.moveaxis(weights[0], 1, 0).reshape(weights[0].shape[1], -1)]
        else:
            kernels = [weights[0]]
        total = total + sum(np.sum(kernel**2, axis=1) for kernel in kernels)
    total = np.broadcast_to(total, (int(layer.output.shape[-1]),))
    weights = layer.get_weights()
    if isinstance(layer, _L.Bidirectional):
        units, half = layer.forward_layer.units, len(weights) // 2
        parts = [total[:units], total[units:]] if _parts(layer) == 2 else [total, total]
        return [parts[0] + np.sum(weights[1] ** 2, axis=1), parts[1] + np.sum(weights[half + 1] ** 2, axis=1)]
    if _gates(layer):
        return [total + np.sum(weights[1] ** 2, axis=1)]
    return [total]


def _parts(layer):
    """Blocks of the output channels: 2 for a concatenating Bidirectional layer."""
    return 2 if isinstance(layer, _L.Bidirectional) and layer.merge_mode == "concat" else 1


def _data_batches(data, samples, batch_size, need_labels, where):
    if isinstance(data, tf.data.Dataset):
        seen = 0
        for batch in data:
            if need_labels and (not isinstance(batch, (tuple, list)) or len(batch) < 2):
                raise ValueError(f"{where}: the dataset must yield batched (x, y) pairs. Received elements {data.element_spec}.")
            x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
            yield x, y
            seen += len(tf.nest.flatten(x)[0])
            if seen >= samples:
                return
        return
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
    elif need_labels:
        raise ValueError(f"{where}: criterion='taylor' needs labels: data=(x, y) or a dataset of (x, y) batches.")
    else:
        x, y = data, None
    n = min(samples, len(tf.nest.flatten(x)[0]))
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        yield tf.nest.map_structure(lambda a: a[start:stop], x), (None if y is None else y[start:stop])


def _data_scores(model, layers, data, criterion, loss, samples, batch_size):
    """Per layer (per direction): mean |output| or |output x gradient| over `data`."""
    where = f"shrink(criterion={criterion!r})"
    if data is None:
        raise ValueError(f"{where} scores units on examples: pass data=x (activation) or data=(x, y) (taylor), e.g. 1,000 training examples.")
    probe = keras.Model(model.inputs, [layer.output for layer in layers] + list(model.outputs))
    loss_fn = None
    if criterion == "taylor":
        loss = loss if loss is not None else getattr(model, "loss", None)
        if loss is None:
            raise ValueError(f"{where} needs the training loss: compile the model, or pass loss='sparse_categorical_crossentropy' (or yours).")
        loss_fn = keras.losses.get(loss)
    totals, count = [np.zeros(l.output.shape[-1], np.float64) for l in layers], 0
    for x, y in _data_batches(data, samples, batch_size, criterion == "taylor", where):
        with tf.GradientTape() as tape:
            outs = probe(x, training=False)
            if loss_fn is not None:
                loss_value = tf.reduce_mean(loss_fn(y, outs[-1]))
        acts = outs[: len(layers)]
        grads = tape.gradient(loss_value, acts) if loss_fn is not None else None
        for i, a in enumerate(acts):
            a = tf.cast(a, tf.float32)
            if grads is None:
                per = tf.reduce_mean(tf.abs(a), axis=list(range(1, len(a.shape) - 1))) if len(a.shape) > 2 else tf.abs(a)
            else:
                g = tf.cast(grads[i], tf.float32) * tf.cast(tf.shape(a)[0], tf.float32)  # per example, not per batch mean
                prod = a * g
                per = tf.abs(tf.reduce_sum(prod, axis=list(range(1, len(a.shape) - 1)))) if len(a.shape) > 2 else tf.abs(prod)
            totals[i] += tf.reduce_sum(per, axis=0).numpy()
        count += int(acts[0].shape[0])
    if not count:
        raise ValueError(f"{where}: data holds no examples.")
    return [t / count for t in totals]


def _split(layer, scores):
    """A layer's per-channel scores -> per direction (summed for merged directions)."""
    if _parts(layer) == 2:
        return [scores[: len(scores) // 2], scores[len(scores) // 2 :]]
    return [scores, scores] if isinstance(layer, _L.Bidirectional) else [scores]


# ----------------------------------------------------------------- weights


def _cols(keep, units, gates):
    return np.concatenate([g * units + keep for g in range(gates)])


def _slice_rnn(layer, weights, in_sel, keep):
    kernel, recurrent, *bias = weights
    if in_sel is not None:
        kernel = kernel[in_sel]
    if keep is not None:
        cols = _cols(keep, layer.units, _gates(layer))
        kernel, recurrent = kernel[:, cols], recurrent[keep][:, cols]
        bias = [b[..., cols] for b in bias]
    return [kernel, recurrent, *bias]


def _slice(layer, in_sel, keeps):
    """`layer`'s weights with input channels `in_sel` and units `keeps` (per direction) kept."""
    weights = layer.get_weights()
    keep = keeps[0] if keeps else None
    kind = _kind(layer)
    if kind == "bidirectional":
        half = len(weights) // 2
        keeps = keeps or [None, None]
        return _slice_rnn(layer.forward_layer, weights[:half], in_sel, keeps[0]) + _slice_rnn(
            layer.backward_layer, weights[half:], in_sel, keeps[1]
        )
    if kind == "rnn":
        return _slice_rnn(layer, weights, in_sel, keep)
    if kind == "embedding":
        return [weights[0][:, keep]] if keep is not None else weights
    if kind in ("dense", "conv1d"):
        kernel, *bias = weights
        if in_sel is not None:
            kernel = kernel[in_sel] if kind == "dense" else kernel[:, in_sel]
        if keep is not None:
            kernel, bias = kernel[..., keep], [b[keep] for b in bias]
        return [kernel, *bias]
    if in_sel is not None:  # normalisation: one vector per channel
        return [w[in_sel] for w in weights]
    return weights


def _config_with_width(layer, units):
    config = layer.get_config()
    if isinstance(layer, _L.Bidirectional):
        config["layer"]["config"]["units"] = units
        if config.get("backward_layer"):
            config["backward_layer"]["config"]["units"] = units
        return config
    key = "units" if _gates(layer) else next(k for cls, k in _WIDTH_KEY if isinstance(layer, cls))
    config[key] = units
    return config


# ----------------------------------------------------------------- shrink


def shrink(model, data=None, units=0.5, criterion="l2", loss=None, samples=1024, batch_size=256):
    """Returns a smaller copy of `model` with whole units removed.

    Args:
        model: a trained tf_keras or Keras 3 Sequential/Functional model
            without compression wrappers (strip pruning/QAT/clustering first).
        data: examples for the `"activation"` (x) and `"taylor"` ((x, y), or
            a dataset of (x, y) batches) criteria; the first `samples` are used.
        units: what to keep: a fraction in (0, 1) of every layer's units
            (every layer that can lose units; the rest are listed in the
            report's `skipped`), or `{layer name or class name: fraction or
            count}` for chosen layers. For a Bidirectional layer, the count is
            per direction (each direction keeps its own best units).
        criterion: `"l2"`, `"activation"` or `"taylor"` (see the module docs).
        loss: the loss for `"taylor"` (default: the model's compiled loss).
        samples, batch_size: how many examples of `data` score the units, and
            in what batches.

    Returns:
        A new tf_keras model (not compiled: compile and fine-tune it), with the
        same inputs, outputs and layer names. Its `tfcompress_shrink_report`
        gives, per layer, the units before and after, the layers skipped and
        why, the criterion, and the parameters and multiply-adds per example
        (`multiply_adds`; None for inputs of any length) before and after.

    Raises:
        ValueError: a layer named in `units` that cannot lose units (with the
            reason), an unknown layer, a count out of range, a model with
            compression wrappers, a criterion that needs data without it.
    """
    from tfcompress.embeddings import _refuse_wrappers

    model = ensure_tf_keras(model, caller="shrink")
    require_graph_model(model, "shrink")
    _refuse_wrappers(model, caller="shrink")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(map(repr, CRITERIA))}. Received: criterion={criterion!r}.")
    requested = _parse_units(model, units)
    nodes, outputs = _model_nodes(model), {id(t) for t in model.outputs}
    layers = {layer.name: layer for layer in model.layers}

    plan, skipped = {}, {}
    for name, (value, explicit) in requested.items():
        layer = layers[name]
        reason = _blocker(layer)
        if reason is None:
            try:
                consumers, _ = _reach(model, layer, nodes, outputs)
            except _Blocked as blocked:
                reason = str(blocked)
        if reason is not None:
            if explicit:
                raise ValueError(
                    f"shrink(): layer {name!r} ({type(layer).__name__}) cannot lose units: {reason}. "
                    "Fix: leave it out of units (its width stays), or restructure the model there."
                )
            skipped[name] = reason
            continue
        width = _width(layer)
        count = _count(name, value, width)
        if count < width:
            plan[name] = (layer, consumers, count)

    if not plan:
        raise ValueError(
            f"shrink(): no layer of model {model.name!r} loses units with units={units!r}"
            + (f" (skipped: {'; '.join(f'{n}: {r}' for n, r in skipped.items())})" if skipped else "")
            + ". Fix: a smaller fraction, or name layers that can shrink."
        )

    ordered = list(plan)
    if criterion == "l2":
        scores = {}
        for name in ordered:
            layer, consumers, _ = plan[name]
            incoming = _incoming(layer)
            outgoing = _outgoing(layer, consumers)
            scores[name] = [np.sqrt(i) * np.sqrt(o) for i, o in zip(incoming, outgoing)]
    else:
        measured = _data_scores(model, [plan[n][0] for n in ordered], data, criterion, loss, samples, batch_size)
        scores = {name: _split(plan[name][0], s) for name, s in zip(ordered, measured)}

    keeps = {}
    for name in ordered:
        layer, _, count = plan[name]
        parts = scores[name]
        if isinstance(layer, _L.Bidirectional) and _parts(layer) == 1:
            joint = parts[0] + parts[1]
            parts = [joint, joint]
        keeps[name] = [np.sort(np.argsort(-p, kind="stable")[:count]) for p in parts]

    # The channels each layer's output keeps (None: all), in graph order.
    kept_out, in_sel = {}, {}
    for depth in sorted(model._nodes_by_depth, reverse=True):  # noqa: SLF001
        for node in model._nodes_by_depth[depth]:  # noqa: SLF001
            layer = node.layer
            inbound = [l for l in tf.nest.flatten(node.inbound_layers)]
            sources = [kept_out.get(l.name) for l in inbound]
            in_sel[layer.name] = sources[0] if len(sources) == 1 else None
            if layer.name in keeps:
                width = _width(layer)
                k = keeps[layer.name]
                kept_out[layer.name] = np.concatenate([k[0], width + k[1]]) if _parts(layer) == 2 else k[0]
            elif _passes(layer):
                kept_out[layer.name] = in_sel[layer.name]
            else:
                kept_out[layer.name] = None

    def clone(layer):
        if layer.name in keeps:
            return layer.__class__.from_config(_config_with_width(layer, len(keeps[layer.name][0])))
        return layer.__class__.from_config(layer.get_config())

    new = rebuild_functional(model, clone)
    for target in new.layers:
        source = layers.get(target.name)
        if source is None or not source.weights:
            continue
        target.set_weights(_slice(source, in_sel.get(source.name), keeps.get(source.name)))

    new.tfcompress_shrink_report = {
        "criterion": criterion,
        "layers": {name: {"class": type(plan[name][0]).__name__, "before": _width(plan[name][0]), "after": plan[name][2]} for name in ordered},
        "skipped": skipped,
        "params_before": model.count_params(),
        "params_after": new.count_params(),
        "multiply_adds_before": _multiply_adds_or_none(model),
        "multiply_adds_after": _multiply_adds_or_none(new),
    }
    log.info(
        "shrink: %s; %d -> %d parameters",
        ", ".join(f"{n} {_width(plan[n][0])}->{plan[n][2]}" for n in ordered),
        model.count_params(),
        new.count_params(),
    )
    return new


def _multiply_adds_or_none(model):
    try:
        return multiply_adds(model)
    except ValueError:  # any sequence length: not a number without one
        return None


def multiply_adds(model, length=None):
    """Multiply-adds of one example through `model`'s matrix products: what
    structural pruning removes and magnitude pruning (zeros inside dense
    kernels) does not.

    Counted: Dense (per time step on sequences), Conv1D, LSTM/GRU/SimpleRNN
    (gates x units x (inputs + units) per step) and both directions of a
    Bidirectional layer. Embedding lookups, biases, activations and
    elementwise gate arithmetic are not counted (they grow with units, not
    with units squared).

    Args:
        model: a tf_keras or Keras 3 model.
        length: the sequence length, for models built with `max_len=None`.

    Returns:
        An int.
    """
    model = ensure_tf_keras(model, caller="multiply_adds")
    total = 0
    for layer in model.layers:
        kind = _kind(layer)
        if kind in (None, "embedding"):
            continue
        shape = layer.input_shape if not isinstance(layer.input_shape, list) else layer.input_shape[0]
        steps = 1
        if len(shape) == 3:
            steps = shape[1] if shape[1] is not None else length
            if steps is None:
                raise ValueError(
                    f"multiply_adds(): layer {layer.name!r} reads sequences of any length. Fix: pass length= "
                    "(the max_len your inputs are padded to)."
                )
        inputs = shape[-1]
        if kind in ("rnn", "bidirectional"):
            cells = [layer.forward_layer, layer.backward_layer] if kind == "bidirectional" else [layer]
            total += sum(steps * _gates(c) * c.units * (inputs + c.units) for c in cells)
        elif kind == "conv1d":
            out_steps = layer.output_shape[1] if layer.output_shape[1] is not None else steps
            total += out_steps * layer.kernel_size[0] * inputs * layer.filters
        else:
            total += steps * inputs * layer.units
    return int(total)
