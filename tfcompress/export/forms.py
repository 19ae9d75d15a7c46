"""How recurrent layers go into a `.tflite` file: stateless or fused.

A Keras LSTM converts to TFLite's fused `UNIDIRECTIONAL_SEQUENCE_LSTM` op,
whose state lives in variable tensors that persist between `invoke()` calls:
an app that does not reset them gets a different answer for the same input
every time. The stateless forms carry no state between invokes:

- `"unrolled"`: every time step is written out as plain ops
  (`FULLY_CONNECTED`, `LOGISTIC`, `TANH`, `MUL`, `ADD`); the graph grows with
  the sequence length, and it quantizes fully to int8;
- `"loop"`: the cell inside a TFLite `WHILE` loop (the LSTM is rebuilt as
  `RNN(LSTMCell)`, which the converter does not fuse); the graph does not grow
  with length, but full-int8 conversion of a loop crashes the converter here;
- `"fused"`: the fused op, kept for streaming (feed a long sequence in chunks
  and let the state carry over); the app must reset the state between
  independent inputs, and LiteRT's compiled-model API (`LiteRtCreateModel*`,
  `CompiledModel`) refuses the file ("Variable tensors not yet supported"):
  only the classic `Interpreter` runs it.

GRU and SimpleRNN layers have no fused TFLite op: they are loops unless
unrolled. `"auto"` picks the stateless form measured best for the mode
(`choose`, figures in BENCHMARKS.md).
"""

import numpy as np

from tfcompress._keras import clone_with, keras

FORMS = ("auto", "unrolled", "loop", "fused")


def recurrent_layers(model):
    """The model's recurrent layers (RNN subclasses and Bidirectional wrappers
    of them), top level and inside nested models."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += recurrent_layers(layer)
        elif isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            found.append(layer)
    return found


def choose(form, mode):
    """The form "auto" resolves to for an export mode.

    Measured on Embedding(15000, 64) -> LSTM(64) -> Dense at lengths 32, 64,
    128 and 256, batch 1 (BENCHMARKS.md, "Recurrent forms"): the loop is
    faster than the fused op in float32 (0.23 vs 0.26 ms at length 64) and
    dynamic (0.17 vs 0.21 ms), at every length, and its file is the fused
    one's size (+11 KiB); unrolling is up to 15% faster than the loop with int8
    weights up to length 128 but its graph grows ~2.2 KiB per step (+35 KiB
    gzip at 64, 13% of an 80%-pruned file), and it is slower than the loop at
    256. So float modes loop at every length. Full int8 unrolls at every
    length: the converter crashes on int8 loops, and the fused int8 kernel
    is 5-10x slower than the unrolled int8 ops (1.47 vs 0.16 ms at 64).
    """
    if form != "auto":
        return form
    return "unrolled" if mode == "int8" else "loop"


def apply(model, form, specs):
    """Rebuilds `model` with its recurrent layers in `form` (not "auto").

    Args:
        model: a plain tf_keras functional or Sequential model.
        form: "unrolled", "loop" or "fused".
        specs: the file's input `tf.TensorSpec`s (fixed shapes; unrolling needs
            the length).

    Returns:
        `(model, note)`; the model unchanged and note None when nothing changes.
    """
    layers = recurrent_layers(model)
    if form == "fused" or not layers:
        return model, None
    nested = [layer.name for layer in layers if layer not in model.layers]
    if nested:
        raise ValueError(
            f"to_tflite: recurrent layer(s) {nested} sit inside a nested model of {model.name!r}; a stateless "
            f"form ({form!r}) is made by rebuilding the top-level graph only. Fix: flatten the model (call the "
            "inner model's layers in the outer graph), or pass recurrent='fused' and reset the interpreter's "
            "variables before each invoke."
        )
    stateful = [layer.name for layer in layers if _inner(layer).stateful]
    if stateful:
        raise ValueError(
            f"to_tflite: layer(s) {stateful} of model {model.name!r} were built with stateful=True, to carry "
            "state from one batch to the next, so no stateless file can answer like them. Fix: pass "
            "recurrent='fused' (the app then owns the state), or rebuild them with stateful=False."
        )
    changed = []

    def clone(layer):
        if layer in layers:
            new = _unrolled(layer) if form == "unrolled" else _looped(layer)
            if new is not None:
                changed.append(layer.name)
                return new
        if isinstance(layer, keras.Model):
            return layer
        return layer.__class__.from_config(layer.get_config())

    shapes = [tuple(spec.shape) for spec in specs]
    rebuilt = clone_with(model, clone, input_shapes=shapes)
    if not changed:
        return model, None
    for old, new in zip(model.weights, rebuilt.weights):  # same values, same order
        if old.shape != new.shape or not np.array_equal(old.numpy(), new.numpy()):
            raise AssertionError(f"rebuilding {model.name!r} in form {form!r} changed weight {old.name}")
    what = "unrolled over the sequence" if form == "unrolled" else "rebuilt as a cell in a WHILE loop"
    return rebuilt, f"recurrent layers {changed} {what}: the file keeps no state between invokes"


def _inner(layer):
    return layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer


def _unrolled(layer):
    config = layer.get_config()
    if isinstance(layer, keras.layers.Bidirectional):
        for key in ("layer", "backward_layer"):
            if config.get(key):
                config[key]["config"]["unroll"] = True
    else:
        config["unroll"] = True
    return layer.__class__.from_config(config)


def _looped(layer):
    """LSTM -> RNN(LSTMCell) (not fused by the converter); other recurrent
    layers already convert to loops: None."""
    if isinstance(layer, keras.layers.Bidirectional):
        if type(layer.forward_layer) is not keras.layers.LSTM:
            return None
        return keras.layers.Bidirectional(
            _looped(layer.forward_layer),
            backward_layer=_looped(layer.backward_layer),
            merge_mode=layer.merge_mode,
            name=layer.name,
        )
    if type(layer) is not keras.layers.LSTM:
        return None
    c = layer.get_config()
    cell = keras.layers.LSTMCell(
        c["units"],
        activation=c["activation"],
        recurrent_activation=c["recurrent_activation"],
        use_bias=c["use_bias"],
        name=f"{layer.name}_cell",
    )
    return keras.layers.RNN(
        cell,
        return_sequences=c["return_sequences"],
        return_state=c["return_state"],
        go_backwards=c["go_backwards"],
        name=layer.name,
    )


def variable_tensors(flat):
    """Names of the variable tensors in a `.tflite` flatbuffer: the state a
    fused recurrent op keeps between invokes (empty for a stateless file)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytearray(flat), 0)
    names = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            if tensor.IsVariable():
                names.append((tensor.Name() or b"").decode("utf-8", "replace"))
    return names


def keeps_state(runtime, flat=None):
    """Whether a file answers the same input differently after another input.

    Structurally (when the file's bytes are given): any variable tensor is
    state. Behaviourally: run A, then B, then A again on the interpreter as
    an app holds it (no reset) and compare the two answers to A bit for bit.
    A and B are varied inputs, not constants: an all-padding input can leave
    a quantized output unchanged even though the state moved."""
    if flat is not None and variable_tensors(flat):
        return True
    interpreter = runtime.interpreter
    rng = np.random.default_rng(0)

    def sample(detail):
        dtype, shape = np.dtype(detail["dtype"]), detail["shape"]
        if dtype == np.int8:  # a quantized float input: its whole range
            return rng.integers(-128, 128, size=shape).astype(dtype)
        if np.issubdtype(dtype, np.integer):  # token ids: 0 and 1 exist in every vocabulary
            return rng.integers(0, 2, size=shape).astype(dtype)
        return rng.uniform(0.0, 1.0, size=shape).astype(dtype)

    def run(values):
        for detail, value in zip(runtime.inputs, values):
            interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]).copy() for d in runtime.outputs]

    a = [sample(d) for d in runtime.inputs]
    b = [sample(d) for d in runtime.inputs]
    first = run(a)
    run(b)
    again = run(a)
    return any(not np.array_equal(x, y) for x, y in zip(first, again))
