"""`Distiller`: a keras.Model whose train_step and test_step distill."""

import tensorflow as tf

from tfcompress._keras import ensure_tf_keras, is_keras3, keras
from tfcompress._keras import predict as keras_predict
from tfcompress.distillation.features import feature_loss_per_example, feature_views
from tfcompress.distillation.losses import distillation_per_example, ensemble_logits, resolve_kind, to_logits
from tfcompress.distillation.teacher import LABELED_KEY, LABELS_KEY, TEACHER_KEY, is_arrays


@keras.saving.register_keras_serializable(package="tfcompress")
class Distiller(keras.Model):
    """Trains a small student to imitate a large teacher.

    Args:
        teacher: the trained model to imitate (frozen here), or a list of
            models taking the same inputs: an ensemble, whose soft targets
            are the mean of the teachers' softened distributions (the mean
            of their logits for `"mse"`).
        student: the model to train; its inputs are the teacher's. A Keras 3
            student is trained as a tf_keras copy (`distiller.student`), and
            every `fit` ends by copying the trained weights into the Keras 3
            model you passed.
        alpha: weight of the student's own loss on the labels, in [0, 1];
            `1 - alpha` goes to the distillation loss. `alpha=1` is plain
            training of the student.
        temperature: softening temperature (> 0) for `"kl"`.
        distillation_loss: `"kl"` (KL divergence × T²) or `"mse"` (mean
            squared error between logits).
        feature_pairs: optional `[(teacher_layer_name, student_layer_name),
            ...]` whose outputs are matched with mean squared error; a student
            feature of another width is projected by a trainable Dense layer
            (not part of the student).
        feature_weight: weight of the feature loss.
        teacher_output, student_output: `"auto"` (read from the graph by
            `output_kind`, through float32 casts and pruning/QAT wrappers,
            and checked on one example), `"logits"`, `"probabilities"` or
            `"sigmoid"`.
        cache_teacher: compute the teacher's outputs once per `fit` call when
            `x` is an array (or list of arrays) and reuse them every epoch.

    Example:

    >>> distiller = Distiller(teacher=big, student=small, alpha=0.1, temperature=3)  # doctest: +SKIP
    >>> distiller.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
    ...                   metrics=["accuracy"])  # doctest: +SKIP
    >>> distiller.fit(x, y, epochs=2, validation_data=(x_dev, y_dev))  # doctest: +SKIP
    >>> small = distiller.student  # trained; prune, quantize, export it  # doctest: +SKIP
    """

    def __init__(
        self,
        teacher,
        student,
        alpha=0.1,
        temperature=3.0,
        distillation_loss="kl",
        feature_pairs=None,
        feature_weight=1.0,
        teacher_output="auto",
        student_output="auto",
        cache_teacher=True,
        name="distiller",
        **kwargs,
    ):
        _check_arguments(alpha, temperature, distillation_loss, teacher_output, student_output)
        super().__init__(name=name, **kwargs)
        # A Keras 3 student is trained as a tf_keras copy (TFMOT's Keras); fit() copies the
        # trained weights back into the caller's object, so the model they passed is trained.
        self._caller_student = _Untracked(student if is_keras3(student) else None)
        ensemble = isinstance(teacher, (list, tuple))
        if ensemble and (not teacher or feature_pairs):
            raise ValueError(
                "Distiller: teacher is a list: give at least one model"
                + (", and no feature_pairs (an ensemble has no single layer to match)." if feature_pairs else ".")
            )
        teachers = [_check_model(t, f"teacher[{i}]" if ensemble else "teacher") for i, t in enumerate(teacher if ensemble else [teacher])]
        student = _check_model(student, "student")
        t_kinds = [resolve_kind(t, teacher_output, "teacher_output") for t in teachers]
        s_kind = resolve_kind(student, student_output, "student_output")
        for t, kind in zip(teachers, t_kinds):
            _check_pair(t, student, kind, s_kind)  # the teacher's `trainable` is left as given: train_step updates the student only
        teacher, t_kind = teachers[0], t_kinds[0]
        self._teachers, self._t_kinds = _Untracked(teachers), t_kinds
        self.teacher = teachers if ensemble else teacher
        self.student = student
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.distillation_loss = distillation_loss
        self.feature_pairs = [tuple(p) for p in (feature_pairs or [])]
        self.feature_weight = float(feature_weight)
        self.teacher_output = teacher_output
        self.student_output = student_output
        self.cache_teacher = bool(cache_teacher)
        self._t_kind, self._s_kind = t_kind, s_kind
        self._teacher_view, self._student_view, self._projections = feature_views(
            teacher, student, self.feature_pairs
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.feature_loss_tracker = keras.metrics.Mean(name="feature_loss") if self.feature_pairs else None

    # ----------------------------------------------------------------- calls

    def call(self, inputs, training=None):
        """The student's output: a Distiller predicts like its student."""
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.student_loss_tracker, self.distillation_loss_tracker]
        if self.feature_loss_tracker is not None:
            trackers.append(self.feature_loss_tracker)
        compiled = self.compiled_metrics.metrics if self.compiled_metrics is not None else []
        return trackers + list(compiled)

    def _distill_unpack(self, data):
        """(x, labels, the student loss's sample weights, the distillation
        term's sample weights, cached teacher logits or None)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        teacher_logits = labeled = None
        if isinstance(y, dict) and LABELS_KEY in y:
            teacher_logits = y.get(TEACHER_KEY)
            labeled = y.get(LABELED_KEY)
            y = y[LABELS_KEY]
        student_weight = sample_weight
        if labeled is not None:  # examples without labels (a transfer set) add nothing to the student loss
            labeled = tf.cast(labeled, tf.float32)
            student_weight = labeled if sample_weight is None else tf.cast(sample_weight, tf.float32) * labeled
        return x, y, student_weight, sample_weight, teacher_logits

    def _distill_forward(self, x, training, teacher_logits):
        """(student outputs, teacher logits, student logits, feature loss)."""
        features_t = []
        if len(self._teachers.model) > 1:
            if teacher_logits is None:
                teacher_logits = self._combine([to_logits(t(x, training=False), k) for t, k in zip(self._teachers.model, self._t_kinds)])
        elif teacher_logits is None or self.feature_pairs:
            t_outs = self._teacher_view(x, training=False)
            t_outs = t_outs if isinstance(t_outs, (list, tuple)) else [t_outs]
            if teacher_logits is None:
                teacher_logits = to_logits(t_outs[0], self._t_kind)
            features_t = t_outs[1:]
        teacher_logits = tf.stop_gradient(tf.cast(teacher_logits, tf.float32))
        s_outs = self._student_view(x, training=training)
        s_outs = s_outs if isinstance(s_outs, (list, tuple)) else [s_outs]
        student_out = s_outs[0]
        student_logits = to_logits(student_out, self._s_kind)
        feature_loss = feature_loss_per_example(features_t, s_outs[1:], self._projections) if self.feature_pairs else None
        return student_out, teacher_logits, student_logits, feature_loss

    def _distill_losses(self, x, y, student_weight, sample_weight, teacher_logits, training):
        student_out, t_logits, s_logits, feature_pe = self._distill_forward(x, training, teacher_logits)
        # compiled_loss already averages over the global batch under a strategy.
        student_loss = self.compiled_loss(y, student_out, student_weight, regularization_losses=self.student.losses)
        distill = tf.nn.compute_average_loss(
            distillation_per_example(t_logits, s_logits, self.distillation_loss, self.temperature),
            sample_weight=sample_weight,
        )
        total = self.alpha * student_loss + (1.0 - self.alpha) * distill
        feature = None
        if feature_pe is not None:
            feature = tf.nn.compute_average_loss(feature_pe, sample_weight=sample_weight)
            total += self.feature_weight * feature
        return student_out, total, student_loss, distill, feature

    def _distill_record(self, y, student_out, student_weight, total, student_loss, distill, feature):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # The losses above are scaled for summation across replicas; the
        # trackers show the per-example means.
        self.loss_tracker.update_state(total * replicas)
        self.student_loss_tracker.update_state(student_loss * replicas)
        self.distillation_loss_tracker.update_state(distill * replicas)
        if feature is not None:
            self.feature_loss_tracker.update_state(feature * replicas)
        self.compiled_metrics.update_state(y, student_out, student_weight)  # labelled examples only
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, y, student_weight, sample_weight, teacher_logits = self._distill_unpack(data)
        variables = self.student.trainable_variables + [
            v for p in self._projections if p is not None for v in p.trainable_variables
        ]
        with tf.GradientTape(watch_accessed_variables=False) as tape:  # the teacher's variables are read, never recorded
            tape.watch(variables)
            student_out, total, student_loss, distill, feature = self._distill_losses(
                x, y, student_weight, sample_weight, teacher_logits, training=True
            )
            scaled = self.optimizer.get_scaled_loss(total) if _loss_scaled(self.optimizer) else total
        gradients = tape.gradient(scaled, variables)
        if _loss_scaled(self.optimizer):
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._distill_record(y, student_out, student_weight, total, student_loss, distill, feature)

    def test_step(self, data):
        x, y, student_weight, sample_weight, teacher_logits = self._distill_unpack(data)
        student_out, total, student_loss, distill, feature = self._distill_losses(
            x, y, student_weight, sample_weight, teacher_logits, training=False
        )
        return self._distill_record(y, student_out, student_weight, total, student_loss, distill, feature)

    # ----------------------------------------------------------------- caching

    def fit(self, x=None, y=None, *args, unlabeled=None, **kwargs):
        """`keras.Model.fit`; with `cache_teacher` and array inputs, the teacher
        runs once over `x` (and over array `validation_data`) instead of every epoch.

        `unlabeled`: inputs without labels (arrays shaped like `x`), such as a
        `transfer_set` encoded like `x`. They are shuffled in with `x`, so an
        epoch sees `len(unlabeled)` of them for `len(x)` labelled ones, and
        they train on the distillation term alone: `(1 - alpha) * distill`
        (with `feature_weight * feature`), where a labelled example adds
        `alpha * student_loss` too. The teacher cache covers them. The
        reported `student_loss` averages over every example of a batch, with
        the unlabelled ones adding 0; compiled metrics count labelled ones only.
        """
        if unlabeled is not None:
            x, y, kwargs = self._with_unlabeled(x, y, unlabeled, args, kwargs)
        carried = isinstance(y, dict) and TEACHER_KEY in y  # attach_teacher_outputs did it already
        if self.cache_teacher and y is not None and is_arrays(x) and not self.feature_pairs and not carried:
            y = {**(y if isinstance(y, dict) else {LABELS_KEY: y}), TEACHER_KEY: self.teacher_logits(x)}
            validation = kwargs.get("validation_data")
            if isinstance(validation, (tuple, list)) and len(validation) in (2, 3) and is_arrays(validation[0]):
                vx, vy = validation[0], validation[1]
                kwargs["validation_data"] = (vx, {LABELS_KEY: vy, TEACHER_KEY: self.teacher_logits(vx)}) + tuple(
                    validation[2:]
                )
        try:
            return super().fit(x, y, *args, **kwargs)
        finally:
            self._update_caller_student()

    def _with_unlabeled(self, x, y, unlabeled, args, kwargs):
        """`x` and `unlabeled` as one set, with a 0/1 mask of which have labels."""
        import numpy as np

        where = "Distiller.fit(unlabeled=...)"
        if not (is_arrays(x) and is_arrays(unlabeled)) or y is None or isinstance(y, dict):
            raise ValueError(
                f"{where} takes arrays: x and y as arrays, and unlabeled as an array (or list of arrays) shaped like x. "
                "Fix: encode the transfer set as you encoded x; for a tf.data pipeline, give each example "
                f"y = {{'{LABELS_KEY}': label (any valid class for an unlabelled one), '{LABELED_KEY}': 1.0 or 0.0}} yourself."
            )
        if args:
            raise ValueError(f"{where}: pass fit's other arguments by name (batch_size=..., epochs=...), not by position.")
        if kwargs.get("validation_split"):
            raise ValueError(f"{where}: validation_split would take its examples from the unlabelled end. Fix: validation_data=(x_dev, y_dev).")
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        us = list(unlabeled) if isinstance(unlabeled, (list, tuple)) else [unlabeled]
        if len(xs) != len(us) or any(np.shape(a)[1:] != np.shape(b)[1:] for a, b in zip(xs, us)):
            raise ValueError(
                f"{where}: unlabeled must be shaped like x: x has shapes {[tuple(np.shape(a)) for a in xs]}, "
                f"unlabeled {[tuple(np.shape(b)) for b in us]} (all but the first dimension must agree). "
                "Fix: encode and pad the transfer set with the same encoder and max_len as x."
            )
        n, m = len(xs[0]), len(us[0])
        joined = [np.concatenate([np.asarray(a), np.asarray(b).astype(np.asarray(a).dtype)]) for a, b in zip(xs, us)]
        y = np.asarray(y)
        labels = np.concatenate([y, np.zeros((m,) + y.shape[1:], y.dtype)])  # any valid class: weighted out
        labeled = np.concatenate([np.ones(n, np.float32), np.zeros(m, np.float32)])
        if kwargs.get("sample_weight") is not None:
            kwargs = {**kwargs, "sample_weight": np.concatenate([np.asarray(kwargs["sample_weight"], np.float32), np.ones(m, np.float32)])}
        return (joined if isinstance(x, (list, tuple)) else joined[0]), {LABELS_KEY: labels, LABELED_KEY: labeled}, kwargs

    def _update_caller_student(self):
        """Copies the trained weights into the Keras 3 student the caller passed
        (layer by layer, by name: the conversion keeps names and weight order)."""
        target = self._caller_student.model
        if target is None:
            return
        trained = {layer.name: layer for layer in self.student.layers}
        for layer in target.layers:
            source = trained.get(layer.name)
            if source is not None and layer.weights:
                layer.set_weights(source.get_weights())

    def teacher_logits(self, x, batch_size=256):
        """The teacher's outputs on `x`, as logits (float32 array); an
        ensemble's combined logits."""
        return self._combine(
            [to_logits(keras_predict(t, x, batch_size=batch_size), k) for t, k in zip(self._teachers.model, self._t_kinds)]
        ).numpy()

    def _combine(self, logits):
        return ensemble_logits(logits, self.distillation_loss, self.temperature)

    # ----------------------------------------------------------------- saving

    def save(self, filepath, *args, **kwargs):
        """Saves the **student** (the model you deploy), in any Keras format."""
        return self.student.save(filepath, *args, **kwargs)

    def save_weights(self, filepath, *args, **kwargs):
        """Saves the **student**'s weights (so checkpoints hold the student)."""
        return self.student.save_weights(filepath, *args, **kwargs)

    def load_weights(self, filepath, *args, **kwargs):
        """Loads weights saved by `save_weights` into the student."""
        return self.student.load_weights(filepath, *args, **kwargs)

    def get_config(self):
        return {
            "teacher": [keras.saving.serialize_keras_object(t) for t in self._teachers.model] if isinstance(self.teacher, (list, tuple)) else keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "distillation_loss": self.distillation_loss,
            "feature_pairs": [list(p) for p in self.feature_pairs],
            "feature_weight": self.feature_weight,
            "teacher_output": self.teacher_output,
            "student_output": self.student_output,
            "cache_teacher": self.cache_teacher,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        teacher = config["teacher"]
        config["teacher"] = [keras.saving.deserialize_keras_object(t) for t in teacher] if isinstance(teacher, list) else keras.saving.deserialize_keras_object(teacher)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        return cls(**config)


class _Untracked:
    """Holds an object out of Keras' attribute tracking (a Keras 3 model set as
    an attribute of a tf_keras model would join its weights)."""

    __slots__ = ("model",)

    def __init__(self, model):
        self.model = model


def _check_arguments(alpha, temperature, distillation_loss, teacher_output, student_output):
    """Refuses out-of-range weights and unknown choices, naming the argument."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(
            f"Distiller: alpha is the weight of the student's label loss and must be in "
            f"[0, 1] (1 - alpha weights the distillation loss). Received: alpha={alpha!r}."
        )
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(
            f"Distiller: temperature must be > 0 (1 leaves the outputs as they are; 2-5 is "
            f"usual). Received: temperature={temperature!r}."
        )
    if distillation_loss not in ("kl", "mse"):
        raise ValueError(
            f"Distiller: distillation_loss must be 'kl' or 'mse'. Received: distillation_loss={distillation_loss!r}."
        )
    for arg, value in (("teacher_output", teacher_output), ("student_output", student_output)):
        if value not in ("auto", "logits", "probabilities", "sigmoid"):
            raise ValueError(
                f"Distiller: {arg} must be 'auto', 'logits', 'probabilities' or 'sigmoid'. "
                f"Received: {arg}={value!r}."
            )


def _check_pair(teacher, student, t_kind, s_kind):
    """Refuses a teacher and student whose outputs or inputs do not correspond."""
    t_classes = 2 if t_kind == "sigmoid" or teacher.output_shape[-1] == 1 else teacher.output_shape[-1]
    s_classes = 2 if s_kind == "sigmoid" or student.output_shape[-1] == 1 else student.output_shape[-1]
    if t_classes != s_classes or teacher.output_shape[:-1] != student.output_shape[:-1]:
        raise ValueError(
            f"Distiller: teacher {teacher.name!r} outputs shape {teacher.output_shape} "
            f"({t_kind}) but student {student.name!r} outputs {student.output_shape} "
            f"({s_kind}); distillation compares them class by class. Fix: give the student "
            "the teacher's number of classes."
        )
    if len(teacher.inputs) != len(student.inputs):
        raise ValueError(
            f"Distiller: the teacher takes {len(teacher.inputs)} input(s), the student "
            f"{len(student.inputs)}; both must read the same inputs."
        )


def _check_model(model, role):
    model = ensure_tf_keras(model, argument=role, caller="Distiller")
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"Distiller({role}=...): model {model.name!r} is not built (it has no inputs "
            f"yet). Fix: give it an Input layer, or call {role}.build(input_shape) "
            f"{'and train it ' if role.startswith('teacher') else ''}before distilling."
        )
    return model


def _loss_scaled(optimizer):
    return isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
