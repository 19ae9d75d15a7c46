"""What a step sees while it runs: `RunContext`."""

import contextlib
import dataclasses
import gzip
import os
import tempfile
import warnings

import numpy as np

from tfcompress.recipe.schema import RecipeError

__all__ = ["RunContext", "WINDOWS_IN_MEMORY"]

WINDOWS_IN_MEMORY = 256 << 20
"""A language model's training windows are built as arrays up to this many
bytes; above it they are made as they are read, from the corpus ids."""


@dataclasses.dataclass
class RunContext:
    """The state a step runs in.

    Attributes:
        recipe: the `Recipe`.
        data: `{"x_train", "y_train", "x_dev", "y_dev"}` arrays (encoded); for
            a language model `x_train` is a `text.CharWindows` and `y_train`
            None (see `subset`). With `epochs: auto` somewhere in the recipe,
            also `x_sel`/`y_sel`: the selection split carved from training.
        encoder: the `TextEncoder` (classification), else None.
        vocab: the `Vocabulary` (token ids, or characters for a language model).
        meta: task facts: `task`, `labels`, `num_classes`, `max_len`, ...
        strategy: the `tf.distribute` strategy steps train under.
        precision: the policy of training steps (`float32`, `mixed_float16`, ...).
        out: the output folder.
        log: a function taking progress lines.
        callbacks: Keras callbacks every training step passes to `fit`
            (progress, TensorBoard, the user's own).
        verbose: Keras' `fit` verbosity for the training steps.
        tensorboard_dir: this step's TensorBoard folder, or None.
        index: the number of the running step (1-based).
        steps: the recipe's `(name, args)` list.
        model: the model the previous step handed on (None before the first).
    """

    recipe: object
    data: dict
    encoder: object
    vocab: object
    meta: dict
    strategy: object
    precision: str
    out: str
    state_dir: str
    log: object = print
    callbacks: list = dataclasses.field(default_factory=list)
    verbose: int = 0
    tensorboard_dir: str = None
    index: int = 0
    steps: list = dataclasses.field(default_factory=list)
    model: object = None
    stopping: object = None
    """The `BestEpoch` of the step's last `epochs: auto` fit, until its report row takes it."""
    chain_end: int = 0
    """With a whole-chain refit (see `runner`), the last step of the chain; 0: none."""
    chain_rerun: bool = False
    """Whether the chain's second run has begun."""
    replay_epochs: int = None
    """While the chain is refit: the running step's chosen epoch count (None: its own epochs)."""
    chosen_epochs: int = None
    """The epoch count the running step's `epochs: auto` chose, for the runner to keep."""
    chosen_counts: dict = dataclasses.field(default_factory=dict)
    """Step index -> the epoch count its `epochs: auto` chose (kept by the runner, resumed runs included)."""

    # -------------------------------------------------------------- models

    @property
    def task(self):
        return self.meta["task"]

    def step_dir(self, index, name):
        """The checkpoint folder of step `index` (`out/.run/NN-name`)."""
        return os.path.join(self.state_dir, f"{index:02d}-{name}")

    def load(self, path):
        """`tfcompress.load_model` with the recipe's trust setting."""
        from tfcompress import load_model

        return load_model(path, safe_mode=not self.recipe.config["model"]["trust_code"])

    def loaded_model(self):
        """The user's model (`model.load`) as data preparation checked it."""
        return self.load(os.path.join(self.step_dir(0, "data"), "model.keras"))

    def require_model(self, step=None):
        """The model to work on: the previous step's, else the user's loaded
        model; a clear error when there is neither."""
        if self.model is not None:
            return self.model
        if self.recipe.config["model"]["load"]:
            return self.loaded_model()
        raise RecipeError(
            f"{self.recipe.source}: step '{step or self.steps[self.index - 1][0]}' needs a trained model, but no "
            "'train' step came before it and model.load is not set. Fix: start the steps with '- train: {...}', "
            "or load your model."
        )

    def checkpoint_of(self, name):
        """The model saved by the first earlier step called `name` (once the
        chain runs again, its second run's: see `runner`)."""
        for i, (n, _) in enumerate(self.steps[: self.index - 1], start=1):
            if n == name:
                folder = f"{n}-refit" if self.chain_rerun and i <= self.chain_end else n
                return self.load(os.path.join(self.step_dir(i, folder), "model.keras"))
        raise RecipeError(f"{self.recipe.source}: no '{name}' step ran before step {self.index}.")

    def build_model(self, args):
        """A new model for the task (`model.build` / a student's arguments)."""
        from tfcompress import models

        args = dict(args or {})
        if self.task == "classification":
            return models.lstm_classifier(len(self.vocab), num_classes=self.meta["num_classes"], max_len=self.meta["max_len"], **args)
        return models.char_lstm_lm(len(self.vocab), window=self.meta["max_len"], **args)

    def train_again_args(self):
        """The arguments `train_again` trains with: the single `train` step's
        before the running one, with `epochs: auto` replaced by the count it
        chose. None when the steps before are anything else: they cannot be
        made again here."""
        earlier = list(self.steps or ())[: self.index - 1]
        if [name for name, _ in earlier] != ["train"]:
            return None
        args = dict(earlier[0][1])
        if args["epochs"] == "auto":
            args["epochs"] = self.chosen_counts.get(1)
        return args if args["epochs"] is not None else None

    def reseed(self):
        """The random state back to where the step started (the step's seed).
        What follows is then a function of the seed and its inputs alone, not
        of the path the step took before: Keras draws each new layer's
        initializer seed from this state, so a search that built more models
        would otherwise start the next model elsewhere."""
        from tfcompress import keras

        keras.utils.set_random_seed(self.recipe.step_seed(self.index))

    def train_again(self, args):
        """The dense model again, trained on the data training sees now (call
        it inside `training_with_selection`): the train step's model built (or
        loaded) anew and trained with `args` (`train_again_args`)."""
        from tfcompress.recipe.step import get_step

        return get_step("train").train(self, None, args)

    # -------------------------------------------------------------- training

    def train_count(self, args):
        """How many training examples one epoch of the step sees."""
        n, limit = len(self.data["x_train"]), args.get("max_steps")
        return min(n, limit * args["batch_size"]) if limit else n

    def subset(self, args, seed=None):
        """The training examples of one step as `(x, y)` arrays: all, or
        `max_steps` batches of them. None for a language model whose windows
        are too many to hold (over WINDOWS_IN_MEMORY bytes): `fit` then makes
        them as it reads (`CharWindows.dataset`)."""
        x, y = self.data["x_train"], self.data["y_train"]
        windows = y is None  # a language model's CharWindows
        limit = args.get("max_steps")
        if limit and limit * args["batch_size"] < len(x):
            rng = np.random.default_rng(self.index if seed is None else seed)
            idx = np.sort(rng.choice(len(x), limit * args["batch_size"], replace=False))
            return x.take(idx) if windows else (x[idx], y[idx])
        if windows:
            return x.arrays() if x.nbytes <= WINDOWS_IN_MEMORY else None
        return x, y

    def window_batches(self, args):
        """`(dataset, steps_per_epoch)` of every training window, made as they are read."""
        windows = self.data["x_train"]
        ds = windows.dataset(args["batch_size"], epochs=self.max_epochs(args), seed=self.recipe.step_seed(self.index))
        return ds, int(np.ceil(len(windows) / args["batch_size"]))

    def calibration_inputs(self, count):
        """Training inputs for int8 calibration: all (the converter samples
        `count`), or `count` windows of a language model's corpus."""
        x = self.data["x_train"]
        if self.data["y_train"] is not None:
            return x
        rng = np.random.default_rng(self.recipe.config["seed"])
        return x.take(np.sort(rng.choice(len(x), min(len(x), count), replace=False)))[0]

    def selection(self, limit):
        """`(x, y, metric)`: the selection split, at most `limit` examples of it
        (evenly spread: a language model's windows are in corpus order), and
        the name of the metric to judge on it ("accuracy" or "bits/char")."""
        x, y = self.data["x_sel"], self.data["y_sel"]
        if len(y) > limit:
            keep = np.linspace(0, len(y) - 1, limit).astype(int)
            x, y = x[keep], y[keep]
        return x, y, "bits/char" if self.task == "language_model" else "accuracy"

    def selection_groups(self, limit):
        """`(x, y, group)`: every example of the selection split's held-out
        groups (a sentence and the phrases cut from it), at most `limit`
        groups, evenly spread; None for a language model, or when no phrase
        was found inside a held-out text (then `selection` is the same data)."""
        parts = self.data.get("sel_parts")
        if parts is None:
            return None
        x, y, group = parts
        ids = np.unique(group)
        if len(ids) == len(group):
            return None
        if len(ids) > limit:
            keep = np.isin(group, ids[np.linspace(0, len(ids) - 1, limit).astype(int)])
            x, y, group = x[keep], y[keep], group[keep]
        return x, y, group

    @contextlib.contextmanager
    def training_with_selection(self):
        """Inside, the steps' training data is the training split and every
        example the selection split held out (a sentence with its phrases),
        for a refit once every choice is made; a classifier only: a language
        model's selection windows are the end of its corpus."""
        saved = self.data
        parts = saved.get("sel_parts")
        x, y = (parts[0], parts[1]) if parts is not None else (saved["x_sel"], saved["y_sel"])
        self.data = {**saved, "x_train": np.concatenate([saved["x_train"], x]), "y_train": np.concatenate([saved["y_train"], y])}
        try:
            yield len(self.data["x_train"])
        finally:
            self.data = saved

    @contextlib.contextmanager
    def targets_from(self, teacher, weight):
        """Inside, the steps train towards `budget.teacher_targets`: each
        training example's label mixed with `teacher`'s output, `weight` the
        teacher's share (0: the labels alone, nothing changes). A classifier
        only; enter it inside `training_with_selection`, not around it."""
        from tfcompress.budget import teacher_targets

        saved = self.data
        if weight:
            self.data = {**saved, "y_train": teacher_targets(teacher, saved["x_train"], saved["y_train"], weight)}
        try:
            yield
        finally:
            self.data = saved

    @contextlib.contextmanager
    def float32_scope(self):
        """Where a compression step builds and trains its wrapped model: the
        float32 policy (TFMOT's wrappers compute in float32; a mixed-precision
        model is rebuilt in float32 by them) inside the run's strategy."""
        from tfcompress import precision

        with precision.policy_scope("float32"), self.strategy.scope():
            yield

    @staticmethod
    def max_epochs(args):
        """The epochs `fit` is given: the step's, or its `max_epochs` with `epochs: auto`."""
        return args["max_epochs"] if args["epochs"] == "auto" else args["epochs"]

    def validation(self, args, first_candidate=1, weights_of=None):
        """`((x, y) arrays to validate on, callbacks)` for a step's `fit`. Fixed epochs
        validate on dev (a curve to watch, no choice made); `epochs: auto`
        validates on the selection split, stops when its metric has not
        improved for `patience` epochs and keeps the fewest epochs within one
        standard error of the best (`choose: one_se`, the default) or the best
        (`choose: best`) (`BestEpoch`, whose summary goes into the step's report
        row), never one before `min_epochs` (nor before `first_candidate`, e.g.
        a pruning ramp)."""
        from tfcompress.recipe.schema import TRAINING
        from tfcompress.training import BestEpoch

        if args["epochs"] != "auto":
            return (self.data["x_dev"], self.data["y_dev"]), []
        # Loss by default: on a split that shares phrases with training (SST-2's phrases come from its
        # sentences) accuracy kept rising for 10+ epochs while the loss turned after 2 (BENCHMARKS.md).
        # A distiller's val_loss mixes in its distillation term: its student is judged on its own loss.
        if args["monitor"] == "accuracy":
            monitor = "val_accuracy"
        else:
            monitor = "val_student_loss" if weights_of is not None else "val_loss"
        first = min(max(first_candidate, args.get("min_epochs", 1)), args["max_epochs"])
        examples = (self.data["x_sel"], self.data["y_sel"])
        choose = args.get("choose", TRAINING["choose"][1])
        stop = BestEpoch(monitor, patience=args["patience"], first_candidate=first, weights_of=weights_of, choose=choose, examples=examples)
        self.stopping = stop
        return examples, [stop]

    def fit(self, model, args, default_lr, callbacks=(), first_candidate=1):
        """Compiles `model` (Adam at the step's learning rate, unless it is
        already compiled and no rate is given) and fits it on the step's
        training examples with the run's callbacks, validating on dev; with
        `epochs: auto`, on the selection split until it stops improving (see
        `validation`), then, with `refit` (the default), the best epoch count
        again on train + selection (see `fit_auto`)."""
        from tfcompress import keras

        lr = args.get("learning_rate") or default_lr
        if model.optimizer is None or args.get("learning_rate"):
            model.compile(keras.optimizers.Adam(lr), loss_for(model, self.data["y_train"]), ["accuracy"])
        self.fit_auto(model, args, lambda a: self._fit_once(model, a, callbacks, first_candidate))
        return model

    def _fit_once(self, model, args, callbacks, first_candidate):
        import tensorflow as tf

        arrays, steps = self.subset(args), None
        if arrays is None:
            train, steps = self.window_batches(args)
        else:
            # Ready datasets: Keras' own array pipeline makes TF 2.21 log "NodeDef mentions attribute
            # use_unbounded_threadpool" under op determinism (see _keras.predict). Shuffled each epoch
            # with the step's seed, as Keras shuffles arrays.
            x, y = arrays
            train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=self.recipe.step_seed(self.index), reshuffle_each_iteration=True)
            train = train.batch(args["batch_size"])
        validation, stopping = self.validation(args, first_candidate)
        if loss_for(model, self.data["y_train"]) == "categorical_crossentropy":  # teacher targets: the labels to validate on as probabilities too
            vx, vy = validation
            validation = vx, np.eye(model.output_shape[-1], dtype=np.float32)[np.asarray(vy).reshape(-1).astype(np.int64)]
        model.fit(
            train,
            epochs=self.max_epochs(args),
            steps_per_epoch=steps,
            validation_data=tf.data.Dataset.from_tensor_slices(validation).batch(512),
            callbacks=[*self.callbacks, *callbacks, *stopping],
            verbose=self.verbose,
        )

    def later_choices(self):
        """The steps after the running one that choose on the selection split
        (`epochs: auto`, or a step that measures for choices), as `"step N
        name"` labels."""
        from tfcompress.recipe.step import get_step

        return [
            f"step {i} {name}"
            for i, (name, args) in enumerate(self.steps or (), start=1)
            if i > self.index and (args.get("epochs") == "auto" or getattr(get_step(name), "chooses", False))
        ]

    def no_refit_reason(self):
        """Why a step that chose on the selection split may not train again
        with it back in training (None: it may): a language model's split is
        the end of its corpus, which its training does not take back; and a
        later step's choices need the split unseen by the model they measure."""
        if self.task != "classification":
            return "a language model's selection split is the end of its corpus, which training does not take back"
        later = self.later_choices()
        if later:
            return f"{', '.join(later)} still {'chooses' if len(later) == 1 else 'choose'} on the selection split, which a refit would put into training"
        return None

    def refits(self, args):
        """Whether a step's `fit_auto` trains again after `epochs: auto` chose
        (`refit`, and no `no_refit_reason`)."""
        return args["epochs"] == "auto" and args.get("refit", True) and self.no_refit_reason() is None

    def fit_auto(self, model, args, fit_once):
        """`fit_once(args)` fits `model` as the step's `args` say. With
        `epochs: auto` and `refit` (a classifier), the epoch count it chose
        on the selection split is then trained again from the step's start
        (the weights and optimizer state before the first fit) on train +
        selection, so that the split costs the model no training data; the
        step's report row says so. Nothing chooses on the refit: dev measures
        it as it measures a fixed-epoch step. No refit when a later step still
        chooses on the selection split (`no_refit_reason`): its row says so.

        In a whole-chain refit (`chain_end`, set by the runner) a step only
        chooses (`chosen_epochs`); when the runner runs the chain again
        (`replay_epochs`) it trains that count on train + selection."""
        if self.replay_epochs is not None:  # the whole chain again: this step's chosen count, nothing chosen
            self.stopping = None
            fit_once({**args, "epochs": self.replay_epochs})
            self.stopping = _Replayed(self.replay_epochs, self.chain_end, len(self.data["x_train"]))
            return
        start = _training_state(model) if self.refits(args) and not self.chain_end else None
        fit_once(args)
        stop = self.stopping
        if stop is None:
            return
        self.chosen_epochs = stop.best_epoch or stop.epochs_run  # no candidate epoch: all it ran
        if stop.best_epoch is None:
            return
        if self.chain_end:
            stop.refit = f"refit: steps 1-{self.chain_end} run again with the counts chosen, on train + selection"
            return
        if start is None:
            if args["epochs"] == "auto" and args.get("refit", True) and self.task == "classification":
                stop.refit = f"no refit: {self.no_refit_reason()}"
                self.log(f"[{self.steps[self.index - 1][0]}] {stop.refit}")
            return
        _restore_training_state(model, start)
        with self.training_with_selection() as count:
            step = self.steps[self.index - 1][0] if self.steps else "fit"
            self.log(f"[{step}] refit: {stop.best_epoch} epoch(s), the count chosen on the selection split, again from the step's start on train + selection ({count:,} examples)")
            fit_once({**args, "epochs": stop.best_epoch})
        stop.refit = f"then refit: {stop.best_epoch} epoch(s) from the step's start on train + selection ({count:,} examples)"
        self.stopping = stop

    # -------------------------------------------------------------- measuring

    def metric(self, probs, labels=None):
        """`(name, value, higher_is_better, accuracy)` of predicted
        probabilities on dev: accuracy, or bits per character for a
        language model."""
        from tfcompress import metrics

        labels = self.data["y_dev"] if labels is None else labels
        accuracy = metrics.accuracy(probs, labels)
        if self.task == "language_model":
            return "bits/char", metrics.bits_per_char(probs, labels), False, accuracy
        return "accuracy", accuracy, True, accuracy

    def keras_record(self, step, model, notes=""):
        """A report `Record` for a Keras model: the dev metric, parameters,
        non-zero weights, and the float weights' size (raw and gzip)."""
        from tfcompress import quantization
        from tfcompress._keras import predict as keras_predict
        from tfcompress.report import Record

        stop, self.stopping = self.stopping, None
        if stop is not None:  # the step trained with epochs: auto
            notes = "; ".join(n for n in (notes, stop.summary()) if n)
        plain = quantization.strip(model)
        probs = keras_predict(model, self.data["x_dev"], batch_size=512)
        name, value, higher, accuracy = self.metric(probs)
        weights = plain.get_weights()
        params = int(sum(w.size for w in weights))
        nonzero = int(sum(np.count_nonzero(w) for w in weights))
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*HDF5 file via `model.save\(\)`.*")
            path = os.path.join(tmp, "model.h5")  # the size of the float model's weights
            plain.save(path, include_optimizer=False)
            with open(path, "rb") as f:
                raw = f.read()
        if self.task == "language_model":
            notes = "; ".join(x for x in (notes, f"accuracy {accuracy:.4f}") if x)
        return Record(
            step, "keras", params, len(raw), len(gzip.compress(raw, 9)), name, value, higher, None,
            nonzero if nonzero < params * 0.95 else None, notes,
        )


class _Replayed:
    """The report note of a step trained again in the whole-chain refit (in
    place of a `BestEpoch`'s summary)."""

    def __init__(self, epochs, chain_end, examples):
        self.epochs, self.chain_end, self.examples = epochs, chain_end, examples

    def summary(self):
        return (
            f"{self.epochs} epoch(s), the count chosen on the selection split (see 'Epochs chosen on the selection "
            f"split'); steps 1-{self.chain_end} run again on train + selection ({self.examples:,} examples)"
        )


def loss_for(model, targets=None):
    """The training loss of a classifier (one sigmoid unit or a softmax) on
    `targets`: class ids, or probabilities per class (`targets_from`)."""
    from tfcompress.budget import target_loss

    return target_loss(model, targets)


def _optimizer_variables(model):
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return []
    found = opt.variables
    return list(found() if callable(found) else found)


def _training_state(model):
    """What a refit starts from: the model's weights (masks, pruning steps and
    quantizer ranges among them) and its optimizer's variables."""
    return model.get_weights(), [v.numpy() for v in _optimizer_variables(model)]


def _restore_training_state(model, state):
    """Back to `_training_state`: optimizer variables made since then (Adam
    builds its moments and step count on the first update) start again at
    zero, as a new optimizer's do."""
    weights, optimizer = state
    model.set_weights(weights)
    for i, v in enumerate(_optimizer_variables(model)):
        v.assign(optimizer[i] if i < len(optimizer) else np.zeros(v.shape, v.dtype.as_numpy_dtype))
