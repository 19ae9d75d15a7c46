"""8-bit quantization-aware training (QAT) for text models.

TFMOT's QAT refuses the layers text models are made of (LSTM, GRU,
SimpleRNN, Embedding, Conv1D, LayerNormalization), and its experimental RNN
configuration, which also fake-quantizes the gate activations inside the
cell, pushes tf_keras' LSTM off its fused code path, so the converter emits a
slow unfused `WHILE` loop. `quantize(model)` instead gives every weight-bearing
layer a `TextQuantizeConfig`:

- **weights** (kernels, recurrent kernels, embedding tables) are fake-quantized
  to 8 bits, symmetric, per tensor (per output channel for Conv1D), the way
  TFLite stores them;
- the **layer output** is fake-quantized (8 bits, moving-average range), as
  TFMOT does for Dense;
- nothing inside an RNN cell is touched, so the layer keeps the implementation
  that converts to TFLite's fused `UNIDIRECTIONAL_SEQUENCE_LSTM` (or, as
  `tfcompress.export` does by default, to a stateless loop);
- integer token-id inputs get no quantize layer (a fake-quant op on int32 ids
  fails), and layers you name in `skip` stay in float.

With `preserve_sparsity` (the default for models that have many exact zeros,
e.g. after `tfcompress.pruning.strip`), each weight quantizer multiplies the
weight by `stop_gradient(weight != 0)`: zeros receive exactly zero gradient, so
they stay zero through QAT, with no mask to store (`TextWeightQuantizer`).

`strip(model)` returns the float model with the QAT-trained weights (each
weight replaced by its 8-bit fake-quantized value, so 8-bit export reproduces
it); `tfcompress.export` converts either form.
"""

from tfcompress.quantization.configs import (
    PassThroughQuantizer,
    TextQuantizeConfig,
    TextWeightQuantizer,
    config_for,
    custom_objects,
    quantize_scope,
)
from tfcompress.quantization.wrap import is_quantized, quantize, quantize_model, strip

__all__ = [
    "quantize",
    "quantize_model",
    "strip",
    "is_quantized",
    "TextQuantizeConfig",
    "TextWeightQuantizer",
    "PassThroughQuantizer",
    "config_for",
    "quantize_scope",
    "custom_objects",
]
