"""Can a .tflite file store text-model weights in fewer than 8 bits, and run?

Two checks on the runtime and tools tfcompress pins (one process):

1. **INT4 tensors, written by hand.** A small Embedding -> Dense -> Dense model
   whose weights sit on a 4-bit grid is exported (dynamic and full int8); each
   int8 weight tensor read by FULLY_CONNECTED, then the one read by GATHER (the
   embedding table), is rewritten as a packed INT4 tensor (scale x 127/7; for
   GATHER its output's scale too). The file is run on 64 inputs and compared
   with Keras; the unchanged file's difference is the baseline.
2. **ai-edge-quantizer** (if installed; not a tfcompress dependency): its
   4- and 8-bit recipes applied to the float32 file of that small model and of
   an LSTM classifier in each form tfcompress exports (stateless loop and the
   fused op): size before and after, and the largest difference from Keras.
"""

import os
import tempfile

import numpy as np

from common import emit, parser, table


def int4_rewrite(flat, target_op):
    """`flat` with each int8 constant read by `target_op` stored as INT4."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in schema.TensorType.__dict__.items() if not k.startswith("_")}
    ops = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    graph = model.subgraphs[0]
    readers = {}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        for t in op.inputs:
            readers.setdefault(int(t), []).append(ops[max(code.builtinCode, code.deprecatedBuiltinCode)])
    changed = 0
    for i, tensor in enumerate(graph.tensors):
        data = model.buffers[tensor.buffer].data if tensor.buffer else None
        if names.get(tensor.type) != "INT8" or data is None or len(data) < 64 or target_op not in readers.get(i, []):
            continue
        q = np.frombuffer(bytes(np.asarray(data, np.uint8)), np.int8).astype(np.int16)
        q4 = np.clip(np.round(q * 7 / 127), -8, 7).astype(np.int8)
        if q4.size % 2:
            q4 = np.append(q4, np.int8(0))
        model.buffers[tensor.buffer].data = ((q4[0::2] & 0x0F) | ((q4[1::2] & 0x0F) << 4)).astype(np.uint8)
        old = float(tensor.quantization.scale[0])
        tensor.quantization.scale = (np.asarray(tensor.quantization.scale) * 127 / 7).astype(np.float32)
        tensor.type = schema.TensorType.INT4
        changed += 1
        if target_op == "GATHER":  # the gathered rows keep the table's scale
            for j, other in enumerate(graph.tensors):
                qq = other.quantization
                if j != i and qq is not None and qq.scale is not None and len(qq.scale) == 1 and abs(float(qq.scale[0]) - old) < 1e-12:
                    qq.scale = np.array([old * 127 / 7], np.float32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), changed


def main():
    args = parser(__doc__).parse_args()
    from tfcompress import export, keras, models

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    vocab, length = 500, 8
    inp = keras.Input((length,), dtype="int32")
    h = keras.layers.Flatten()(keras.layers.Embedding(vocab, 16)(inp))
    out = keras.layers.Dense(3)(keras.layers.Dense(32, activation="relu")(h))
    small = keras.Model(inp, out)
    for layer in small.layers:  # weights on a symmetric 4-bit grid (per output channel for kernels)
        for w in layer.trainable_weights:
            if w.shape.rank == 2:
                v = w.numpy()
                s = np.abs(v).max(0 if "kernel" in w.name else None) / 7
                w.assign(np.round(v / s) * s)
    x = rng.integers(0, vocab, (64, length)).astype("int32")
    want = small.predict(x, verbose=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("dynamic", "int8"):
            path = os.path.join(tmp, f"small_{mode}.tflite")
            export.to_tflite(small, path, mode=mode, representative_data=x, verify=False, isolate=False)
            flat = open(path, "rb").read()
            base = float(np.abs(export.TFLiteModel(flat).predict(x) - want).max())
            for op in ("FULLY_CONNECTED", "GATHER"):
                new, changed = int4_rewrite(flat, op)
                if not changed:
                    rows.append([mode, op, "no int8 weight read by it", "—", "—", "—"])
                    continue
                try:
                    diff = float(np.abs(export.TFLiteModel(new).predict(x) - want).max())
                    verdict = "runs, same answers" if diff <= 2 * base + 1e-3 else "runs, WRONG answers"
                    rows.append([mode, op, verdict, f"{len(flat):,} → {len(new):,}", f"{base:.1e}", f"{diff:.1e}"])
                except (RuntimeError, ValueError) as err:
                    rows.append([mode, op, f"refused: {str(err)[:80]}", f"{len(flat):,} → {len(new):,}", f"{base:.1e}", "—"])
        part1 = table(["file", "INT4 weights read by", "result", "bytes", "max diff unchanged", "max diff INT4"], rows)

        try:
            from ai_edge_quantizer import quantizer, recipe
        except ImportError:
            part2 = "ai-edge-quantizer is not installed: `pip install ai-edge-quantizer` to run this part."
        else:
            import importlib.metadata as md

            classifier = models.lstm_classifier(2000, max_len=32)
            cx = rng.integers(0, 2000, (64, 32)).astype("int32")
            subjects = [("Embedding→Dense→Dense", small, x, "auto")]
            subjects += [(f"LSTM classifier, {form}", classifier, cx, form) for form in ("auto", "fused")]
            rows = []
            for label, model, data, form in subjects:
                path = os.path.join(tmp, "float.tflite")
                export.to_tflite(model, path, mode="float32", recurrent=form, verify=False, isolate=False)
                reference = model.predict(data, verbose=0)
                for name in ("dynamic_wi8_afp32", "dynamic_wi4_afp32", "weight_only_wi4_afp32"):
                    try:
                        qt = quantizer.Quantizer(path)
                        qt.load_quantization_recipe(getattr(recipe, name)())
                        out_path = os.path.join(tmp, f"aeq_{name}.tflite")
                        qt.quantize().export_model(out_path, overwrite=True)
                        diff = float(np.abs(export.TFLiteModel(out_path).predict(data) - reference).max())
                        rows.append([label, name, f"{os.path.getsize(path):,} → {os.path.getsize(out_path):,}", f"{os.path.getsize(path) / os.path.getsize(out_path):.2f}×", f"{diff:.1e}"])
                    except Exception as err:  # noqa: BLE001 - a third-party tool's failure is the finding
                        rows.append([label, name, f"failed: {type(err).__name__}: {str(err)[:80]}", "—", "—"])
            part2 = f"ai-edge-quantizer {md.version('ai-edge-quantizer')}:\n\n" + table(["float32 file", "recipe", "bytes", "smaller", "max diff"], rows)
    emit(args, "Smaller: weights below 8 bits in the file (probe)", part1 + "\n\n" + part2)


if __name__ == "__main__":
    main()
