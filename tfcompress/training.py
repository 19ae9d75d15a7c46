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
"""

import numpy as np

from tfcompress import keras

__all__ = ["BestEpoch"]


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
    """

    def __init__(self, monitor="val_loss", mode="auto", patience=2, first_candidate=1, min_delta=0.0, weights_of=None):
        super().__init__()
        if mode == "auto":
            mode = "min" if "loss" in monitor or "bits" in monitor else "max"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto'. Received: mode={mode!r}.")
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1. Received: patience={patience!r}.")
        if not isinstance(first_candidate, int) or first_candidate < 1:
            raise ValueError(f"first_candidate must be an integer >= 1. Received: first_candidate={first_candidate!r}.")
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.first_candidate, self.min_delta, self.weights_of = first_candidate, float(min_delta), weights_of
        self.refit = None  # what the chosen epoch count was trained again on, when the caller refits (a line)
        self._reset()

    def _reset(self):
        self.best = self.best_epoch = None
        self.epochs_run, self.wait, self.stopped_early, self.restored = 0, 0, False, False
        self.history = []
        self._best_weights = None

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
        if self._better(value):
            self.best, self.best_epoch, self.wait = value, self.epochs_run, 0
            self._best_weights = self._target().get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_early = True
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_weights is not None and self.best_epoch != self.epochs_run:
            self._target().set_weights(self._best_weights)
            self.restored = True
        self._best_weights = None

    def summary(self):
        """One line: epochs run, the best epoch and its value, why it stopped."""
        most = f" (at most {self._max_epochs})" if getattr(self, "_max_epochs", None) else ""
        if self.best_epoch is None:
            return f"{self.epochs_run} epochs{most}, none of them a candidate (first_candidate {self.first_candidate})"
        why = f"no improvement in {self.patience} epoch(s)" if self.stopped_early else "reached the last epoch"
        kept = f"weights of epoch {self.best_epoch} restored" if self.restored else "the last epoch was the best"
        refit = f"; {self.refit}" if self.refit else ""
        return f"{self.epochs_run} epochs{most}, best {self.best_epoch} ({self.monitor} {self.best:.4f}); stopped: {why}; {kept}{refit}"
