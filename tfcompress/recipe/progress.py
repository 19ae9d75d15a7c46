"""What a user sees while a recipe runs: epoch lines or Keras' progress bar,
and TensorBoard logs."""

import os
import sys
import time

from tfcompress._keras import keras

__all__ = ["default_verbose", "EpochLog", "require_tensorboard", "step_callbacks", "log_report"]


def default_verbose(log):
    """Keras' progress bar (1) when lines go to a terminal through `print`;
    otherwise 0 (and `EpochLog` writes one line per epoch through `log`)."""
    return 1 if log is print and _isatty(sys.stdout) else 0


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class EpochLog(keras.callbacks.Callback):
    """One line per epoch through `log`: the epoch, its metrics, its seconds."""

    def __init__(self, log, indent="    "):
        super().__init__()
        self.log = log
        self.indent = indent

    def on_train_begin(self, logs=None):
        self._epochs = self.params.get("epochs")

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        figures = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if isinstance(v, (int, float)))
        self.log(f"{self.indent}epoch {epoch + 1}/{self._epochs}: {figures} ({time.perf_counter() - self._t0:.0f} s)")


def require_tensorboard(source):
    """A clear error, before anything runs, when TensorBoard logs are asked
    for but the `tensorboard` package (which writes them) is missing."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        from tfcompress.recipe.schema import RecipeError

        raise RecipeError(
            f"{source}: tensorboard: writing TensorBoard logs needs the tensorboard package, which is not "
            "installed. Fix: pip install 'tfcompress[tensorboard]' (or 'tensorboard>=2.21,<2.22'), or drop "
            "the tensorboard option."
        )


def step_callbacks(board, index, name, ctx):
    """The callbacks a run adds to the training steps' `fit`: epoch lines
    (unless Keras draws its progress bar), and TensorBoard under
    `board/NN-name` (with per-layer sparsity for prune steps)."""
    callbacks = [] if ctx.verbose else [EpochLog(ctx.log)]
    ctx.tensorboard_dir = os.path.join(board, f"{index:02d}-{name}") if board else None
    if ctx.tensorboard_dir:
        from tfcompress import keras

        callbacks.append(keras.callbacks.TensorBoard(ctx.tensorboard_dir, write_graph=False, profile_batch=0))
    return callbacks


def log_report(board, report):
    """The report's figures as TensorBoard scalars (one point per row, x =
    the row's position) and its Markdown table as text, under `board/report`."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(os.path.join(board, "report"))
    with writer.as_default():
        for i, r in enumerate(report.records):
            tf.summary.scalar(f"{r.metric}", r.value, step=i, description=r.step)
            if r.gzip_bytes:
                tf.summary.scalar("gzip KiB", r.gzip_bytes / 1024, step=i, description=r.step)
            if r.latency_ms:
                tf.summary.scalar("latency ms", r.latency_ms, step=i, description=r.step)
        tf.summary.text("report", report.to_markdown(), step=0)
    writer.close()
