"""Magnitude pruning for text models, through TFMOT's Keras wrappers.

`prune(model, target_sparsity=0.8, epochs=2, steps_per_epoch=500)` returns a
copy of the model whose chosen weights (kernels and embeddings; never biases)
are driven to the target sparsity while you train it with `model.fit`.
`strip(model)` then returns a plain Keras model with the zeros baked in, and
`sparsity_report(model)` tells the sparsity of every pruned weight at any time.

What tfcompress adds to TFMOT:

- **Bidirectional** layers are pruned (both directions' kernels and recurrent
  kernels); TFMOT refuses them.
- **The step callback cannot be forgotten.** TFMOT's wrapper fails at the first
  training step unless `UpdatePruningStep` is passed to `fit`. Models from
  `prune()` add it themselves when `fit` is called without it, and their
  wrappers start their step counter where the callback would have put it, so
  even a model loaded by plain Keras trains without it.
- **Structure**: block sparsity (`block_size=(1, 4)`) and 2:4 structured
  sparsity (`structure="2:4"`: two zeros in every group of four consecutive
  weights along the input dimension, the layout sparse kernels use).
- **Layer choice** by type, name or predicate; a report of what was pruned,
  what was skipped and why.
- Keras 3 models are converted, and mixed-precision models are pruned in
  float32 (TFMOT's wrappers break under `mixed_float16`), with one warning.
- **Structural pruning** (`shrink`): whole LSTM/GRU units, Dense units and
  embedding dimensions removed, for a smaller dense model that is also
  faster (zeros inside a dense kernel still cost multiply-adds).
"""

from tfcompress.pruning.layers import (
    PRUNABLE_TYPES,
    PrunableBidirectional,
    PruneLowMagnitude,
    PruningSummaries,
    UpdatePruningStep,
    custom_objects,
    is_pruned,
)
from tfcompress.pruning.report import SparsityReport, m_by_n_violations, sparsity_report
from tfcompress.pruning.schedules import schedule
from tfcompress.pruning.shrink import multiply_adds, shrink
from tfcompress.pruning.wrap import install_fit_hook, prune, strip

__all__ = [
    "prune",
    "strip",
    "shrink",
    "multiply_adds",
    "sparsity_report",
    "SparsityReport",
    "PruneLowMagnitude",
    "PrunableBidirectional",
    "UpdatePruningStep",
    "PruningSummaries",
    "schedule",
    "is_pruned",
    "install_fit_hook",
    "custom_objects",
    "PRUNABLE_TYPES",
    "m_by_n_violations",
]
