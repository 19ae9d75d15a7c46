"""The distillation losses: outputs to logits, and the KL / MSE terms."""

import tensorflow as tf


def output_kind(model):
    """'probabilities' (softmax), 'sigmoid' (one unit) or 'logits'."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", str(activation))
    if name == "softmax":
        return "probabilities"
    if name == "sigmoid" and model.output_shape[-1] == 1:
        return "sigmoid"
    return "logits"


def to_logits(outputs, kind):
    """Outputs of a model whose output is `kind` (see `output_kind`) as logits:
    log-probabilities, which soften exactly like the logits they came from."""
    outputs = tf.cast(outputs, tf.float32)
    if kind == "probabilities":
        return tf.math.log(tf.clip_by_value(outputs, 1e-7, 1.0))
    if kind == "sigmoid":
        p = tf.clip_by_value(outputs, 1e-7, 1 - 1e-7)
        return tf.concat([tf.math.log(1 - p), tf.math.log(p)], axis=-1)
    if outputs.shape[-1] == 1:  # one binary logit
        return tf.concat([tf.zeros_like(outputs), outputs], axis=-1)
    return outputs


def distillation_per_example(teacher_logits, student_logits, loss="kl", temperature=1.0):
    """The distillation loss of each example: KL(teacher || student) between
    temperature-softened distributions, scaled by T² (`loss="kl"`), or the mean
    squared error between logits (`loss="mse"`)."""
    if loss == "mse":
        return tf.reduce_mean(tf.square(student_logits - teacher_logits), axis=-1)
    t = temperature
    p_teacher = tf.nn.softmax(teacher_logits / t, axis=-1)
    log_p_teacher = tf.nn.log_softmax(teacher_logits / t, axis=-1)
    log_p_student = tf.nn.log_softmax(student_logits / t, axis=-1)
    return tf.reduce_sum(p_teacher * (log_p_teacher - log_p_student), axis=-1) * (t * t)
