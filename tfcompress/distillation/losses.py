"""The distillation losses: outputs to logits, and the KL / MSE terms."""

import tensorflow as tf


# Layers that pass their input on unchanged at inference (or only change its dtype/shape).
_PASS_THROUGH = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Reshape", "Flatten")
_OP_KINDS = {"nn.softmax": "probabilities", "math.softmax": "probabilities", "math.sigmoid": "sigmoid", "nn.sigmoid": "sigmoid", "identity": None, "cast": None}
KINDS = ("logits", "probabilities", "sigmoid")


class OutputKindError(ValueError):
    """What a model outputs (logits or probabilities) cannot be told from its layers."""


def output_kind(model, argument="teacher_output"):
    """What `model` outputs, read from its graph: "probabilities" (a softmax),
    "sigmoid" (one sigmoid unit) or "logits".

    From the output layer back, layers that pass values on (a linear or
    float32 `Activation`, `Dropout`, reshapes, casts, pruning and QAT
    wrappers) are skipped; the first layer that computes decides: a softmax
    (activation, `Activation` or `Softmax` layer, `tf.nn.softmax`) means
    probabilities, a linear `Dense`/`Conv1D` means logits.

    Raises:
        OutputKindError: the deciding layer is something else (a `Lambda`, a
            `tanh` head, several sigmoid units...); the message says to pass
            `argument=` explicitly.
    """
    from tfcompress._keras import inner_layer, keras

    layer = model.layers[-1]
    path = []
    while True:
        inner = inner_layer(layer)
        path.append(f"{inner.name!r} ({type(inner).__name__})")
        if isinstance(inner, keras.Model):
            return output_kind(inner, argument)
        if isinstance(inner, keras.layers.Softmax):
            return "probabilities"
        kind, passes = _layer_kind(inner)
        if kind == "sigmoid" and layer.output_shape[-1] != 1:  # the wrapper's shape: a wrapped layer has no nodes
            kind = None  # several sigmoid units: multi-label, not a distribution
        if kind is not None:
            return kind
        previous = _single_input_layer(layer) if passes else None
        if previous is None or previous.__class__.__name__ == "InputLayer":
            raise OutputKindError(
                f"Distiller: cannot tell whether model {model.name!r} outputs logits or probabilities "
                f"(from its output back: {' <- '.join(path)}). Fix: say it with {argument}='logits', "
                f"'probabilities' (softmax) or 'sigmoid' (one unit)."
            )
        layer = previous


def _layer_kind(layer):
    """(kind or None, whether the layer passes its input on unchanged)."""
    name = type(layer).__name__
    if name == "TFOpLambda":
        symbol = getattr(layer, "symbol", "")
        if symbol in _OP_KINDS:
            kind = _OP_KINDS[symbol]
            return kind, kind is None
        return None, False
    if name in _PASS_THROUGH:
        return None, True
    if not hasattr(layer, "activation"):
        return None, False
    from tfcompress._keras import activation_name

    activation = activation_name(layer.activation)
    if activation == "softmax":
        return "probabilities", False
    if activation == "sigmoid":
        return "sigmoid", False
    if activation == "linear":
        if name == "Activation":
            return None, True
        return "logits", False
    return None, False


def _single_input_layer(layer):
    nodes = getattr(layer, "inbound_nodes", [])
    if len(nodes) != 1:
        return None
    inbound = nodes[0].inbound_layers
    inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
    return inbound[0] if len(inbound) == 1 else None


def resolve_kind(model, given, argument):
    """`given` ("auto" or a kind) made definite and checked on one example."""
    if given not in ("auto",) + KINDS:
        raise ValueError(f"Distiller: {argument} must be 'auto', 'logits', 'probabilities' or 'sigmoid'. Received: {argument}={given!r}.")
    kind = output_kind(model, argument) if given == "auto" else given
    check_outputs(model, kind, argument, suspect_logits=given == "auto")
    return kind


def check_outputs(model, kind, argument, suspect_logits=True):
    """Runs `model` on one all-zero example and refuses a `kind` its values
    contradict: "probabilities" that do not sum to 1, or (with
    `suspect_logits`) "logits" that look like probabilities."""
    example = [
        tf.zeros([1] + [d or 1 for d in tensor.shape[1:]], tensor.dtype) for tensor in model.inputs
    ]
    out = model(example if len(example) > 1 else example[0], training=False)
    out = tf.cast(out[0] if isinstance(out, (list, tuple)) else out, tf.float32).numpy().reshape(-1, model.output_shape[-1])
    in_unit = (out >= -1e-3).all() and (out <= 1 + 1e-3).all()
    sums_to_one = abs(out.sum(-1) - 1).max() < 1e-2
    if kind == "probabilities" and not (in_unit and sums_to_one):
        raise OutputKindError(
            f"Distiller: model {model.name!r} was taken to output probabilities, but on an all-zero input its "
            f"outputs are {out[0][:4].round(4).tolist()}..., which do not sum to 1. Fix: pass {argument}='logits'."
        )
    if kind == "sigmoid" and not in_unit:
        raise OutputKindError(
            f"Distiller: model {model.name!r} was taken to output a sigmoid probability, but on an all-zero input "
            f"it outputs {out[0].round(4).tolist()}. Fix: pass {argument}='logits'."
        )
    if kind == "logits" and suspect_logits and out.shape[-1] > 1 and in_unit and sums_to_one:
        raise OutputKindError(
            f"Distiller: model {model.name!r} was taken to output logits, but on an all-zero input its outputs "
            f"{out[0][:4].round(4).tolist()}... lie in [0, 1] and sum to 1, like probabilities. Fix: pass "
            f"{argument}='probabilities' if they are."
        )


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


def ensemble_logits(logits, loss="kl", temperature=1.0):
    """Several teachers' logits as one teacher's: for `"kl"`, logits whose
    softened distribution (at `temperature`) is the mean of the teachers'
    softened distributions; for `"mse"`, the mean of the logits."""
    if len(logits) == 1:
        return logits[0]
    stacked = tf.stack([tf.cast(z, tf.float32) for z in logits])
    if loss == "mse":
        return tf.reduce_mean(stacked, axis=0)
    t = temperature
    log_mean = tf.reduce_logsumexp(tf.nn.log_softmax(stacked / t, axis=-1), axis=0) - tf.math.log(float(len(logits)))
    return log_mean * t
