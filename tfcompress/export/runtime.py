"""Running a `.tflite` file: the LiteRT interpreter, state reset per invoke."""

import os
import warnings

import numpy as np
import tensorflow as tf


def interpreter_class():
    """`ai_edge_litert.interpreter.Interpreter` when installed, else
    `tf.lite.Interpreter` (its deprecation warning is shown once, not per model)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        cls = tf.lite.Interpreter
        if not getattr(interpreter_class, "_warned", False):
            interpreter_class._warned = True
            warnings.warn(
                "ai-edge-litert is not installed; using the deprecated tf.lite.Interpreter. "
                "pip install ai-edge-litert (a tfcompress dependency) to use LiteRT.",
                UserWarning,
                stacklevel=3,
            )

        def make(*args, **kwargs):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
                return cls(*args, **kwargs)

        return make


def runtime_name():
    """"ai_edge_litert" or "tf.lite": the interpreter `TFLiteModel` uses."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401

        return "ai_edge_litert"
    except ImportError:
        return "tf.lite"


class TFLiteModel:
    """Runs a `.tflite` file so that each input's output is independent.

    The interpreter's variable tensors (the fused LSTM's state) are reset
    before every invoke. Inputs are split into chunks of the file's batch
    size (the last one padded); int8 inputs/outputs are quantized and
    dequantized with the file's parameters.

    Args:
        model: path of a `.tflite` file, or its bytes.
        num_threads: interpreter threads (None: the runtime's default).
    """

    def __init__(self, model, num_threads=None):
        make = interpreter_class()
        kwargs = {"num_threads": num_threads} if num_threads else {}
        if isinstance(model, (bytes, bytearray)):
            self.interpreter = make(model_content=bytes(model), **kwargs)
            self.path = None
        else:
            self.path = os.fspath(model)
            if not os.path.exists(self.path):
                raise FileNotFoundError(f"TFLiteModel: no file at {self.path!r}.")
            self.interpreter = make(model_path=self.path, **kwargs)
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        self.batch_size = int(self.inputs[0]["shape"][0])

    @property
    def ops(self):
        try:
            return sorted({op["op_name"] for op in self.interpreter._get_ops_details()})  # noqa: SLF001
        except AttributeError:  # pragma: no cover - older runtimes
            return []

    def _set(self, detail, value):
        value = np.asarray(value)
        if detail["dtype"] in (np.int8, np.uint8) and value.dtype.kind == "f":
            scale, zero = detail["quantization"]
            limits = np.iinfo(detail["dtype"])  # uint8 is 0..255, not int8's range
            value = np.clip(np.round(value / scale + zero), limits.min, limits.max).astype(detail["dtype"])
        self.interpreter.set_tensor(detail["index"], value.astype(detail["dtype"], copy=False))

    def _get(self, detail):
        value = self.interpreter.get_tensor(detail["index"])
        if detail["dtype"] in (np.int8, np.uint8):
            scale, zero = detail["quantization"]
            value = (value.astype(np.float32) - zero) * scale
        return value.copy()

    def invoke(self, *batch):
        """One invoke on exactly one batch (one array per input); returns the outputs."""
        self.interpreter.reset_all_variables()
        for detail, value in zip(self.inputs, batch):
            self._set(detail, value)
        self.interpreter.invoke()
        return [self._get(d) for d in self.outputs]

    def predict(self, *inputs):
        """Outputs for any number of examples (first output if there is one)."""
        inputs = [np.asarray(x) for x in inputs]
        n = len(inputs[0])
        b = self.batch_size
        results = None
        for start in range(0, n, b):
            chunk = [x[start : start + b] for x in inputs]
            real = len(chunk[0])
            if real < b:  # pad with copies of the first row; they are discarded
                chunk = [np.concatenate([c, np.repeat(c[:1], b - real, axis=0)]) for c in chunk]
            outs = self.invoke(*chunk)
            if results is None:
                results = [[] for _ in outs]
            for acc, out in zip(results, outs):
                acc.append(out[:real])
        results = [np.concatenate(r) for r in results]
        return results[0] if len(results) == 1 else results
