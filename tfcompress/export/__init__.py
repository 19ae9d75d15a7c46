"""TFLite export that is checked to answer like the Keras model.

`to_tflite(model, "out/model.tflite", mode=...)` gets the traps of converting a
Keras text model right:

- pruning and QAT wrappers are stripped (masks applied; QAT weights baked to
  their 8-bit values), and a mixed-precision model is rebuilt in float32;
- the batch dimension is fixed (a dynamic one stops LSTMs converting), so
  LSTM/GRU layers become TFLite's fused sequence ops;
- the conversions seen to crash the converter (full int8 of recurrent
  layers, QAT graphs) run in a separate process, so a crash raises
  `ConversionCrashed` instead of killing yours (`isolate=True` does this for
  every mode);
- a model that starts with a `TextVectorization` layer (string input, whose
  ops TFLite lacks) is split: the file reads token ids, and the layer's
  vocabulary and rules go beside it as a `TextEncoder`;
- weights quantization-aware trained below 8 bits are stored in the mode's
  type (TFLite has no lower-bit storage for LSTM, FULLY_CONNECTED or GATHER);
  the JSON says so and gives the grid (`weight_grid`);
- the file is written completely or not at all, beside the deployment files:
  `<name>.json` (inputs, outputs, dtypes, quantization parameters, labels) and,
  given a `TextEncoder`, `vocab.txt` and `preprocessing.json`.

The fused LSTM op keeps its state between `invoke()` calls. `TFLiteModel`
(and `evaluate`) reset the interpreter's variable tensors before every
invoke, so the same input always gives the same output; the JSON tells an app
to do the same (`Interpreter.resetVariableTensors()` on Android,
`ResetVariableTensors()` in C++).

Modes (`MODES`): `"float32"`; `"float16"` (half-size weights); `"dynamic"`
(int8 weights, float activations); `"int8"` (full integer, calibrated on
`representative_data`). Their size, speed and accuracy on SST-2 are in
BENCHMARKS.md; `DEFAULT_MODE` is the one that measured best.
"""

from tfcompress.export import forms
from tfcompress.export.convert import DEFAULT_MODE, VERIFY_THRESHOLDS, VERIFY_TIE, ExportResult, to_tflite
from tfcompress.export.errors import ConversionCrashed, TFLiteConversionError, VerificationError
from tfcompress.export.measure import evaluate
from tfcompress.export.options import MODES
from tfcompress.export.runtime import TFLiteModel, interpreter_class, runtime_name

__all__ = [
    "to_tflite",
    "evaluate",
    "TFLiteModel",
    "ExportResult",
    "TFLiteConversionError",
    "VerificationError",
    "ConversionCrashed",
    "VERIFY_THRESHOLDS",
    "VERIFY_TIE",
    "forms",
    "MODES",
    "DEFAULT_MODE",
    "interpreter_class",
    "runtime_name",
]
