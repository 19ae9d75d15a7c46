"""TFLite export that is checked to answer like the Keras model.

`to_tflite(model, "out/model.tflite", mode=...)` gets the traps of converting a
Keras text model right:

- pruning and QAT wrappers are stripped (masks applied; QAT weights baked to
  their 8-bit values), and a mixed-precision model is rebuilt in float32;
- the batch dimension is fixed (a dynamic one stops LSTMs converting);
- recurrent layers (LSTM, GRU, SimpleRNN, Bidirectional) go in a form that
  keeps no state between `invoke()` calls (`recurrent="auto"`: a loop over
  the cell for float32/float16/dynamic, the cell unrolled per step for int8;
  see `forms`), checked on a raw interpreter with no reset, exactly as an
  Android, iOS or C++ app runs it. `recurrent="fused"` keeps TFLite's fused
  sequence ops, which carry their state from call to call (for streaming); the
  JSON then tells the app to reset variable tensors before each sequence;
- `verify=data` (on when `representative_data` is given, and in `compress`)
  runs the file and the Keras model on a sample and refuses a file whose class
  agrees on fewer than `VERIFY_THRESHOLDS[mode]` of the examples, listing the
  ones that disagree (`VerificationError`; nothing is written);
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
- the files are named after the model and written as one set:
  `NAME.tflite`, `NAME.json` (inputs, outputs, dtypes, quantization
  parameters, label names, the SHA-256 of every file of the set) and, given a
  `TextEncoder`, `NAME.vocab.txt` and `NAME.preprocessing.json`, so two models
  in one folder never share a vocabulary. A kill while the set is written
  leaves the old set or (once a tfcompress reader or writer has completed it
  from its journal) the new one.

Modes (`MODES`): `"float32"`; `"float16"` (half-size weights); `"dynamic"`
(int8 weights, float activations); `"int8"` (full integer, calibrated on
`representative_data`). Their size, speed and accuracy on SST-2 are in
BENCHMARKS.md; `DEFAULT_MODE` is the one that measured best without
calibration data. For integer-only accelerators use `"int8"`: the stateless
(unrolled) int8 file measured within 0.5 point of Keras on SST-2 and faster
than the fused dynamic file up to 128 tokens. A QAT model's int8 file can
carry the activation ranges the model learned (`qat_ranges=`,
`tfcompress.export.ranges`). `file_weights(path)` reads a file's weight
tensors back (type, scales, distinct values, zeros): how a clustered or pruned
model's structure is checked in the file itself.
"""

from tfcompress.export import forms, weights
from tfcompress.export.convert import DEFAULT_MODE, VERIFY_THRESHOLDS, VERIFY_TIE, ExportResult, to_tflite
from tfcompress.export.errors import ConversionCrashed, TFLiteConversionError, VerificationError
from tfcompress.export.measure import evaluate
from tfcompress.export.options import MODES
from tfcompress.export.runtime import TFLiteModel, interpreter_class, runtime_name
from tfcompress.export.weights import file_weights

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
    "weights",
    "file_weights",
    "MODES",
    "DEFAULT_MODE",
    "interpreter_class",
    "runtime_name",
]
