"""Teacher outputs computed once and carried with the data."""

import numpy as np
import tensorflow as tf

from tfcompress._keras import ensure_tf_keras
from tfcompress._keras import predict as keras_predict
from tfcompress.distillation.losses import resolve_kind, to_logits

# The keys of `y` when it carries the teacher's outputs (read by `Distiller`).
TEACHER_KEY = "teacher_logits"
LABELS_KEY = "labels"
LABELED_KEY = "labeled"  # 1.0 for an example with a label, 0.0 for one of a transfer set


def is_arrays(x):
    """True for an array or a non-empty list of arrays (what `keras_predict` takes)."""
    if isinstance(x, (np.ndarray, tf.Tensor)):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(a, (np.ndarray, tf.Tensor)) for a in x)


def attach_teacher_outputs(data, teacher, batch_size=256, teacher_output="auto"):
    """Pairs each example with the teacher's logits, computed once.

    Use it on an *unbatched*, not yet shuffled dataset (or on arrays) and
    shuffle and batch afterwards: every example carries its own teacher
    output, so the teacher never runs again, whatever the order.

    Args:
        data: `(x, y)` arrays, or a `tf.data.Dataset` of unbatched `(x, y)`.
        teacher: the teacher model.

    Returns:
        The same kind of data, with `y` replaced by
        `{"labels": y, "teacher_logits": logits}`, which `Distiller` reads.
    """
    teacher = ensure_tf_keras(teacher, argument="teacher", caller="attach_teacher_outputs")
    kind = resolve_kind(teacher, teacher_output, "teacher_output")
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise ValueError(
                "attach_teacher_outputs: the dataset must yield unbatched (x, y) pairs. "
                f"Received elements of spec {spec}."
            )
        if spec[0].shape.rank is not None and teacher.inputs[0].shape.rank is not None and spec[0].shape.rank == teacher.inputs[0].shape.rank:
            raise ValueError(
                "attach_teacher_outputs: the dataset looks batched (its x has the model "
                "input's rank). Fix: attach before .batch(), then shuffle and batch."
            )
        logits = to_logits(teacher.predict(data.map(lambda x, y: x).batch(batch_size), verbose=0), kind).numpy()
        outputs = tf.data.Dataset.from_tensor_slices(logits)
        return tf.data.Dataset.zip((data, outputs)).map(
            lambda xy, t: (xy[0], {LABELS_KEY: xy[1], TEACHER_KEY: t})
        )
    x, y = data
    logits = to_logits(keras_predict(teacher, x, batch_size=batch_size), kind).numpy()
    return x, {LABELS_KEY: y, TEACHER_KEY: logits}
