"""A QAT model's learned activation ranges, written into its full-int8 file.

Full-int8 conversion calibrates every activation tensor on representative
data. A QAT model has already learned the ranges of the activations it
fake-quantizes (the outputs of its LSTM, Dense, ... layers: TFMOT's
`output_min`/`output_max`), and it was fine-tuned to work with exactly those
ranges. `apply` finds, for each such layer, the tensor of the converted file
that holds the layer's output and sets its scale and zero point to the ones
the fake-quant op used in training.

Only tensors whose producing op reads its output scale at run time are
rewritten (the kernels compute their requantization multipliers from the
tensors' parameters when the interpreter prepares them); ops that pass
values through unchanged (RESHAPE, SQUEEZE, ...) downstream get the same
parameters, as the converter would have given them. A layer whose output
tensor cannot be found unambiguously is left calibrated and named in the
returned notes.
"""

import numpy as np

# Ops whose int8 output must carry the input's scale and zero point (they
# move bytes, not values).
_SAME_SCALE = {
    "RESHAPE",
    "SQUEEZE",
    "EXPAND_DIMS",
    "STRIDED_SLICE",
    "SLICE",
    "TRANSPOSE",
    "GATHER",
    "SPLIT",
    "SPLIT_V",
    "UNPACK",
    "MAX_POOL_2D",
}
# Ops whose int8 output scale is free (requantized from the inputs' scales).
# Not CONCATENATION: TFLite's own kernel requantizes, but XNNPACK (the default
# delegate) refuses a concatenation whose inputs and output differ in scale,
# so a Bidirectional layer's output keeps its calibrated range.
_FREE_OUTPUT = {"FULLY_CONNECTED", "MUL", "ADD", "SUB", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "SUM"}


def learned_ranges(model):
    """`{layer name: (min, max)}` of the outputs a QAT model fake-quantizes
    with learned ranges (TFMOT `QuantizeWrapper` output quantizers)."""
    ranges = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", None)
        if inner is None:
            continue
        found = {}
        for variable in layer.weights:
            leaf = variable.name.split("/")[-1].split(":")[0]
            if leaf in ("output_min", "output_max"):
                found[leaf] = float(variable.numpy())
        if len(found) == 2:
            ranges[inner.name] = (found["output_min"], found["output_max"])
    return ranges


def fake_quant_params(low, high, bits=8):
    """The int8 `(scale, zero_point)` of TF's `fake_quant_with_min_max_vars`
    (asymmetric, not narrow) for the range `[low, high]`, nudged so that 0 is
    exact, as the QAT model computed it in training (a range that does not
    contain 0 keeps its width and is shifted to start or end at 0, as TF
    nudges it)."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    scale = (high - low) / (qmax - qmin)
    if scale <= 0:
        return None
    zero_point = int(np.clip(np.round(qmin - low / scale), qmin, qmax))
    return float(scale), zero_point


def apply(flat, qat_model, model_name):
    """`flat` with the QAT model's learned output ranges written in.

    Args:
        flat: a full-int8 `.tflite` flatbuffer converted from `qat_model`'s
            stripped copy.
        qat_model: the QAT model (TFMOT wrappers with `output_min/max`).
        model_name: the name scope of the converted model (tensor names
            start with `model_name/layer_name/`).

    Returns:
        `(new_flat, used, skipped)`: the rewritten file (`flat` itself when
        nothing changed), the layer names whose ranges were written, and
        `{layer: why}` for the ones left calibrated.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    ranges = learned_ranges(qat_model)
    if not ranges:
        return flat, [], {}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    graph = model.subgraphs[0]
    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}

    def op_name(op):
        code = model.operatorCodes[op.opcodeIndex]
        return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")

    producer, consumers = {}, {}
    for index, op in enumerate(graph.operators):
        for t in op.outputs if op.outputs is not None else []:
            producer[int(t)] = index
        for t in op.inputs if op.inputs is not None else []:
            if t >= 0:
                consumers.setdefault(int(t), []).append(index)
    outputs = {int(t) for t in graph.outputs}

    def scopes(tensor):
        name = graph.tensors[tensor].name
        name = name.decode() if isinstance(name, bytes) else str(name or "")
        return name.split(";")

    def in_scope(tensor, prefix):
        return any(part.startswith(prefix) for part in scopes(tensor))

    used, skipped = [], {}
    for layer, (low, high) in ranges.items():
        prefix = f"{model_name}/{layer}/"
        # The layer's output: produced inside its name scope, read outside it.
        candidates = [
            t
            for t in producer
            if in_scope(t, prefix)
            and (t in outputs or any(not all(in_scope(o, prefix) for o in graph.operators[c].outputs) for c in consumers.get(t, [])))
        ]
        if len(candidates) != 1:
            skipped[layer] = f"{len(candidates)} tensors leave its name scope, expected 1"
            continue
        tensor = graph.tensors[candidates[0]]
        if tensor.type != schema.TensorType.INT8 or tensor.quantization is None or tensor.quantization.scale is None:
            skipped[layer] = "its output tensor is not int8"
            continue
        made_by = op_name(graph.operators[producer[candidates[0]]])
        if made_by not in _FREE_OUTPUT:
            skipped[layer] = f"its output comes from {made_by}, whose scale is fixed"
            continue
        params = fake_quant_params(low, high)
        if params is None:
            skipped[layer] = f"an empty learned range [{low}, {high}]"
            continue
        old = (float(tensor.quantization.scale[0]), int(tensor.quantization.zeroPoint[0]))
        chain, frontier = [candidates[0]], [candidates[0]]
        while frontier:  # the same parameters through byte-moving ops downstream
            t = frontier.pop()
            for c in consumers.get(t, []):
                op = graph.operators[c]
                if op_name(op) in _SAME_SCALE:
                    for o in op.outputs:
                        q = graph.tensors[o].quantization
                        if q is not None and q.scale is not None and (float(q.scale[0]), int(q.zeroPoint[0])) == old:
                            chain.append(int(o))
                            frontier.append(int(o))
        for t in chain:
            q = graph.tensors[t].quantization
            q.scale = np.array([params[0]], np.float32)
            q.zeroPoint = np.array([params[1]], np.int64)
            q.min, q.max = None, None
        used.append(layer)
    if not used:
        return flat, used, skipped
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), used, skipped
