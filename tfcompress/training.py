"""Training until the model stops improving: `BestEpoch`.

Keras' `EarlyStopping(restore_best_weights=True)` restores the best weights
only when it stops the run itself: a run that reaches its last epoch keeps
the last weights, even when an earlier epoch was better (tf-keras 2.21). It
also counts every epoch as a candidate, which is wrong while a pruning
schedule is still raising the sparsity: an early, denser epoch would win.
`BestEpoch` restores the best candidate in every case, skips the epochs
before `first_candidate`, and says what it did (`summary()`).

    stop = tfcompress.training.BestEpoch("val_accuracy", patience=2)
    model.fit(x, y, epochs=50, validation_data=(x_sel, y_sel), callbacks=[stop])
    print(stop.summary())  # "6 epochs (at most 50), best 4 (val_accuracy 0.8412): ..."

With `choose="one_se"` and the validation examples, it keeps the fewest
epochs whose value is within one paired standard error of the best epoch's
(the one-standard-error rule): on a small selection split, an epoch that is
"best" by less than the split can measure is not worth its extra training.

    stop = BestEpoch("val_loss", choose="one_se", examples=(x_sel, y_sel))
"""

import numpy as np

from tfcompress import keras

__all__ = ["BestEpoch", "per_example"]

CHOICES = ("best", "one_se")


def per_example(model, x, y, what="loss", batch_size=512):
    """Each example's value on `(x, y)`: its cross-entropy loss (nats; the
    outputs are probabilities, one sigmoid unit or a softmax), or for
    `what="accuracy"` 1.0 when its predicted class is the label; for a
    sequence of predictions (a language model's window), the mean over its
    positions. Computed in chunks: a language model's outputs for a whole
    split need not fit in memory at once."""
    from tfcompress._keras import predict

    if what not in ("loss", "accuracy"):
        raise ValueError(f"what must be 'loss' or 'accuracy'. Received: what={what!r}.")
    x, y = np.asarray(x), np.asarray(y)
    out, chunk = [], batch_size * 8
    for i in range(0, len(x), chunk):
        probs = np.asarray(predict(model, x[i : i + chunk], batch_size=batch_size), dtype=np.float32)
        labels = y[i : i + chunk]
        n = len(probs)
        if probs.shape[-1] == 1 or probs.ndim == 1:  # one sigmoid unit
            p = np.clip(probs.reshape(n, -1), 1e-7, 1 - 1e-7)
            truth = labels.reshape(n, -1).astype(np.float32)
            value = (p > 0.5) == (truth > 0.5) if what == "accuracy" else -(truth * np.log(p) + (1 - truth) * np.log(1 - p))
        else:  # a softmax over the last axis, the label its class id
            flat, ids = probs.reshape(-1, probs.shape[-1]), labels.reshape(-1).astype(np.int64)
            if what == "accuracy":
                value = flat.argmax(-1) == ids
            else:
                value = -np.log(np.clip(flat[np.arange(len(ids)), ids], 1e-7, 1.0))
            value = value.reshape(n, -1)
        out.append(value.astype(np.float64).mean(axis=1))
    return np.concatenate(out) if out else np.zeros(0)


class BestEpoch(keras.callbacks.Callback):
    """Stops training when `monitor` has not improved for `patience` epochs
    and leaves the model with the weights of its best epoch.

    Args:
        monitor: the logged value to watch (`"val_accuracy"`, `"val_loss"`).
        mode: `"max"`, `"min"`, or `"auto"` (max for accuracy-like names,
            min for losses).
        patience: epochs without improvement before stopping (>= 1).
        first_candidate: the first epoch (1-based) that may be chosen; the
            epochs before it neither count as best nor use up patience
            (e.g. while a pruning schedule ramps up).
        min_delta: the smallest change that counts as an improvement.
        weights_of: the model whose weights are kept and restored (default:
            the model being fitted; a `Distiller` passes its student).
        choose: `"best"` keeps the best candidate epoch; `"one_se"` the
            fewest epochs whose value is within one paired standard error
            of the best's, each epoch scored example by example on
            `examples` (its loss, or whether it is right for an accuracy
            monitor; see `per_example`). Patience still counts from the best.
        examples: `(x, y)`, the validation examples (`choose="one_se"`).
    """

    def __init__(self, monitor="val_loss", mode="auto", patience=2, first_candidate=1, min_delta=0.0, weights_of=None, choose="best", examples=None):
        super().__init__()
        if mode == "auto":
            mode = "min" if "loss" in monitor or "bits" in monitor else "max"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto'. Received: mode={mode!r}.")
        if choose not in CHOICES:
            raise ValueError(f"choose must be one of {', '.join(CHOICES)}. Received: choose={choose!r}.")
        if choose == "one_se" and examples is None:
            raise ValueError(
                "choose='one_se' scores each epoch example by example: pass examples=(x, y), the validation examples "
                "(the ones given to fit as validation_data)."
            )
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1. Received: patience={patience!r}.")
        if not isinstance(first_candidate, int) or first_candidate < 1:
            raise ValueError(f"first_candidate must be an integer >= 1. Received: first_candidate={first_candidate!r}.")
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.first_candidate, self.min_delta, self.weights_of = first_candidate, float(min_delta), weights_of
        self.choose, self.examples = choose, examples
        self.refit = None  # what the chosen epoch count was trained again on, when the caller refits (a line)
        self._reset()

    def _reset(self):
        self.best = self.best_epoch = None
        self.epochs_run, self.wait, self.stopped_early, self.restored = 0, 0, False, False
        self.history = []
        self._best_weights = None
        # one_se: the best epoch by value (best_epoch becomes the one kept), and the candidates that may
        # still be kept: {epoch: (per-example values, weights)}, the best and the earlier ones within one s.e.
        self.lowest_epoch = self.within = None
        self._kept = {}

    def _target(self):
        return self.weights_of if self.weights_of is not None else self.model

    def _better(self, value):
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()
        self._max_epochs = (getattr(self, "params", None) or {}).get("epochs")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(
                f"BestEpoch watches {self.monitor!r}, but the epoch logged only {sorted(logs)}. Fix: pass "
                "validation_data to fit (the 'val_' values come from it), or watch one of the logged names."
            )
        value = float(logs[self.monitor])
        self.epochs_run = epoch + 1
        self.history.append(value)
        if self.epochs_run < self.first_candidate or not np.isfinite(value):
            return
        if self.choose == "one_se":
            self._score_epoch()
        if self._better(value):
            self.best, self.best_epoch, self.wait = value, self.epochs_run, 0
            if self.choose == "best":
                self._best_weights = self._target().get_weights()
            else:
                self._prune_kept()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_early = True
            self.model.stop_training = True

    def _score_epoch(self):
        what = "loss" if self.mode == "min" else "accuracy"
        values = per_example(self._target(), *self.examples, what=what)
        self._kept[self.epochs_run] = (values if what == "loss" else -values, self._target().get_weights())

    def _gap(self, epoch):
        """`(mean, standard error)` of how much worse `epoch` is than the best, example by example."""
        diff = self._kept[epoch][0] - self._kept[self.best_epoch][0]
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        return float(diff.mean()), float(se)

    def _prune_kept(self):
        """Keeps the best epoch and the earlier ones within one standard error of it (the
        epochs after it wait, at most `patience` of them: a later best may find them within)."""
        for epoch in [e for e in self._kept if e != self.best_epoch]:
            mean, se = self._gap(epoch)
            if epoch < self.best_epoch and mean > se:
                del self._kept[epoch]

    def on_train_end(self, logs=None):
        if self.choose == "one_se" and self.best_epoch is not None:
            self._prune_kept()
            self.lowest_epoch = self.best_epoch
            chosen = min(self._kept)
            self.within = self._gap(chosen)
            self._best_weights = self._kept[chosen][1]
            self.best_epoch = chosen
        if self._best_weights is not None and self.best_epoch != self.epochs_run:
            self._target().set_weights(self._best_weights)
            self.restored = True
        self._best_weights = None
        self._kept = {}

    def summary(self):
        """One line: epochs run, the best epoch and its value, why it stopped."""
        most = f" (at most {self._max_epochs})" if getattr(self, "_max_epochs", None) else ""
        if self.best_epoch is None:
            return f"{self.epochs_run} epochs{most}, none of them a candidate (first_candidate {self.first_candidate})"
        why = f"no improvement in {self.patience} epoch(s)" if self.stopped_early else "reached the last epoch"
        refit = f"; {self.refit}" if self.refit else ""
        if self.lowest_epoch is not None and self.lowest_epoch != self.best_epoch:
            mean, se = self.within
            scale = 1 if self.mode == "min" else -1
            value = self.history[self.best_epoch - 1]
            kept = (
                f"kept {self.best_epoch}, the fewest epochs within one standard error of the best ({self.monitor} {value:.4f}, "
                f"{scale * mean:+.4f} ± {se:.4f} per example)"
            )
            kept += f", weights of epoch {self.best_epoch} restored" if self.restored else ""
            return f"{self.epochs_run} epochs{most}, best {self.lowest_epoch} ({self.monitor} {self.best:.4f}); stopped: {why}; {kept}{refit}"
        kept = f"weights of epoch {self.best_epoch} restored" if self.restored else "the last epoch was the best"
        return f"{self.epochs_run} epochs{most}, best {self.best_epoch} ({self.monitor} {self.best:.4f}); stopped: {why}; {kept}{refit}"
