"""Knowledge distillation that trains with plain `model.fit`.

`Distiller(teacher=..., student=...)` is a `keras.Model` whose `train_step` and
`test_step` train the student on

    alpha * student_loss(labels, student)
    + (1 - alpha) * distillation_loss(teacher, student)
    + feature_weight * feature_loss(teacher layers, student layers)

so `compile`, `fit`, `evaluate`, callbacks, `validation_data`, strategies,
mixed precision and `jit_compile` work as usual. `fit`/`evaluate` report the
total `loss`, `student_loss`, `distillation_loss` (and `feature_loss`) and
your compiled metrics, all on the student.

- The distillation loss is the KL divergence between temperature-softened
  teacher and student distributions, scaled by T² (Hinton et al., 2015), or
  the mean squared error between logits (`distillation_loss="mse"`).
- Models may output logits or probabilities (softmax, or a 1-unit sigmoid):
  probabilities are turned into log-probabilities, which give exactly the same
  softened distribution (they differ from logits by a constant).
- The teacher runs in inference mode and its weights are never touched: the
  training step differentiates the student's weights only. Its `trainable`
  flag is left as you set it, so the teacher can go on training, or be
  shrunk (`pruning.shrink` keeps each layer's flag), after distilling.
- The teacher's forward pass is the expensive part. With array inputs,
  `Distiller(..., cache_teacher=True)` computes the teacher's outputs once per
  `fit` call and reuses them every epoch; for a `tf.data` pipeline,
  `attach_teacher_outputs` does it once per example, before your shuffling.
- `transfer_set(texts, n="10x")` makes new inputs from the training texts
  (words masked, swapped for others of the same part of speech or for
  WordNet synonyms, n-grams), for the teacher to label (Tang et al., 2019).
- `save`, `save_weights` and checkpoints of a Distiller write its **student**,
  a plain model, ready for pruning, QAT and export.
"""

from tfcompress.distillation.distiller import Distiller
from tfcompress.distillation.losses import OutputKindError, distillation_per_example, output_kind, to_logits
from tfcompress.distillation.teacher import attach_teacher_outputs
from tfcompress.distillation.transfer import TransferSet, transfer_set

__all__ = ["Distiller", "attach_teacher_outputs", "output_kind", "OutputKindError", "to_logits", "distillation_per_example", "transfer_set", "TransferSet"]
