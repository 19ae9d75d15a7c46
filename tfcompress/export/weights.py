"""What a `.tflite` file stores for its weights: read back from the flatbuffer.

`file_weights(path)` lists the constant tensors (embedding tables, kernels,
recurrent kernels, ...) with their storage type, quantization scales and how
many distinct stored values each holds, overall and per quantized channel.
That is how a clustered or pruned model's structure is checked in the file an
app ships, not only in Keras.
"""

import numpy as np

_NUMPY = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "INT32": np.int32,
    "UINT8": np.uint8,
    "INT64": np.int64,
    "INT16": np.int16,
    "INT8": np.int8,
    "FLOAT64": np.float64,
}


def _type_names():
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in schema.TensorType.__dict__.items() if not k.startswith("_")}


def file_weights(source, min_size=64):
    """The constant tensors of a `.tflite` file with at least `min_size` entries.

    Args:
        source: a path or the file's bytes.
        min_size: smaller constants (shapes, biases of tiny layers) are left out.

    Returns:
        A list of dicts, largest first: `name`, `shape`, `size` (entries),
        `type` ("INT8", "FLOAT32", ...), `values` (the stored numbers in the
        tensor's shape; None for a `sparse` tensor, stored as its nonzeros in
        TFLite's sparse format), `scale` (per-channel or per-tensor scales,
        or None), `axis` (the quantized dimension), `distinct` (distinct
        values, zero included), `distinct_per_channel` (the most distinct
        values any one channel along `axis` holds; equal to `distinct` for
        unquantized or per-tensor weights; None when sparse), `zeros`.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    if isinstance(source, (bytes, bytearray)):
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(source))
    else:
        model = flatbuffer_utils.read_model(str(source))
    names = _type_names()
    seen, rows = set(), []
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            data = getattr(buffer, "data", None)
            if data is None or len(data) == 0 or tensor.buffer in seen:
                continue
            kind = names.get(tensor.type, str(tensor.type))
            if kind not in _NUMPY:
                continue
            seen.add(tensor.buffer)
            shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))
            values = np.frombuffer(bytes(np.asarray(data, np.uint8)), dtype=_NUMPY[kind])
            size = int(np.prod(shape)) if shape else values.size
            sparse = tensor.sparsity is not None
            if size < min_size or (not sparse and size != values.size):
                continue
            if sparse:  # the nonzeros (and any stored zeros of a block) only
                stored, values = values, None
            else:
                values = values.reshape(shape) if shape else values
                stored = values
            q = tensor.quantization
            scale = None if q is None or q.scale is None else np.asarray(q.scale, np.float32)
            axis = int(q.quantizedDimension) if scale is not None and scale.size > 1 else None
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            rows.append(
                {
                    "name": name,
                    "shape": shape,
                    "type": kind,
                    "size": size,
                    "values": values,
                    "sparse": sparse,
                    "scale": scale,
                    "axis": axis,
                    "distinct": len(np.unique(stored)) + (1 if sparse and np.count_nonzero(stored) < size and np.all(stored) else 0),
                    "distinct_per_channel": _per_channel(values, axis) if not sparse else None,
                    "zeros": size - int(np.count_nonzero(stored)),
                }
            )
    rows.sort(key=lambda r: -r["size"])
    return rows


def _per_channel(values, axis):
    if axis is None:
        return len(np.unique(values))
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    return max(len(np.unique(row)) for row in moved)


def fewest_per_channel(values):
    """The most distinct values one channel holds, along the axis where that
    is fewest: a weight clustered per channel keeps at most `clusters` values
    along its channel axis, wherever the converter put that axis."""
    values = np.asarray(values)
    return min(_per_channel(values, axis) for axis in range(values.ndim))
