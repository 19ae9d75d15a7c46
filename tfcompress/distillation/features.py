"""Feature matching: the outputs of paired teacher and student layers, compared
with mean squared error (a narrower student feature is projected)."""

import tensorflow as tf

from tfcompress._keras import keras


def feature_views(teacher, student, pairs):
    """Models that return each model's output followed by its paired layers'
    outputs, and one projection per pair (a trainable Dense, or None where the
    widths match): (teacher_view, student_view, projections).

    Args:
        teacher, student: the models.
        pairs: `[(teacher_layer_name, student_layer_name), ...]`; empty gives
            the models themselves and no projections.
    """
    if not pairs:
        return teacher, student, []
    t_feats, s_feats, projections = [], [], []
    for t_name, s_name in pairs:
        for model, name, role in ((teacher, t_name, "teacher"), (student, s_name, "student")):
            if name not in [l.name for l in model.layers]:
                raise ValueError(
                    f"Distiller(feature_pairs=...): the {role} {model.name!r} has no layer "
                    f"{name!r}. Its layers: {[l.name for l in model.layers]}."
                )
        t_out = teacher.get_layer(t_name).output
        s_out = student.get_layer(s_name).output
        if t_out.shape[1:-1] != s_out.shape[1:-1]:
            raise ValueError(
                f"Distiller(feature_pairs=...): teacher layer {t_name!r} outputs "
                f"{tuple(t_out.shape)} and student layer {s_name!r} {tuple(s_out.shape)}; "
                "all but the last dimension must match (the last is projected)."
            )
        t_feats.append(t_out)
        s_feats.append(s_out)
        width = t_out.shape[-1]
        projection = None
        if s_out.shape[-1] != width:
            projection = keras.layers.Dense(width, use_bias=False, name=f"project_{s_name}")
            projection.build(s_out.shape)  # variables exist before the first step
        projections.append(projection)
    teacher_view = keras.Model(teacher.inputs, [teacher.output] + t_feats)
    student_view = keras.Model(student.inputs, [student.output] + s_feats)
    return teacher_view, student_view, projections


def feature_loss_per_example(teacher_features, student_features, projections):
    """Sum over pairs of the mean squared difference, per example; the
    teacher's features receive no gradient."""
    per_example = 0.0
    for t_f, s_f, proj in zip(teacher_features, student_features, projections):
        s_f = tf.cast(s_f, tf.float32)
        if proj is not None:
            s_f = proj(s_f)
        diff = tf.square(s_f - tf.stop_gradient(tf.cast(t_f, tf.float32)))
        per_example += tf.reduce_mean(tf.reshape(diff, [tf.shape(diff)[0], -1]), axis=-1)
    return per_example
