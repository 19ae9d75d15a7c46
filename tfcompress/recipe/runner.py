"""Running a recipe: resume or execute each step, checkpoint, record."""

import dataclasses
import json
import os
import shutil
import time

from tfcompress.recipe.config import Recipe
from tfcompress.recipe.context import RunContext
from tfcompress.recipe.data import prepare_data
from tfcompress.recipe.schema import RecipeError
from tfcompress.recipe.step import get_step

__all__ = ["run"]


def run(recipe, out, log=print, restart=False, callbacks=(), verbose=None, tensorboard=None):
    """Runs a recipe, writing outputs and the report into `out`.

    Args:
        recipe: a `Recipe`, a dict, or the path of a YAML/JSON recipe.
        out: the output folder (created).
        log: a function receiving progress lines (default `print`).
        restart: discard a previous (possibly finished) run in `out`.
        callbacks: Keras callbacks passed to every training step's `fit`
            (e.g. `keras.callbacks.CSVLogger`); they see each step's model.
        verbose: Keras' `fit` verbosity for the training steps: 0 silent, 1
            a progress bar, 2 one line per epoch. Default: 1 when `log` is
            `print` and standard output is a terminal, else 0.
        tensorboard: a folder for TensorBoard logs (default: the recipe's
            `tensorboard` key): the training curves of every step under
            `NN-step/`, per-layer sparsity for prune steps, the report's
            figures under `report/`.

    Returns:
        The `tfcompress.report.Report`.
    """
    from tfcompress import devices
    from tfcompress.recipe import progress
    from tfcompress.report import Record, Report

    if not isinstance(recipe, Recipe):
        recipe = Recipe.load(recipe) if isinstance(recipe, (str, os.PathLike)) else Recipe.from_dict(recipe)
    board = os.fspath(tensorboard) if tensorboard else recipe.resolve(recipe.config["tensorboard"])
    if board:
        progress.require_tensorboard(recipe.source)
    state = _RunState(recipe, out, log, restart)
    started = time.perf_counter()
    data, encoder, vocab, meta = prepare_data(recipe, state)
    ctx = RunContext(
        recipe, data, encoder, vocab, meta, devices.strategy(recipe.config["strategy"]), recipe.config["precision"],
        state.out, state.state, log, steps=recipe.steps, verbose=progress.default_verbose(log) if verbose is None else verbose,
    )
    kind = "text classifier" if meta["task"] == "classification" else "character language model"
    report = Report(f"{recipe.config['name']}: {kind}", meta={"recipe": recipe.source, "train examples": len(data["x_train"]), "dev examples": len(data["x_dev"])})
    if meta.get("prepared_model"):  # the user's model as it came in: the baseline of every later row
        report.add(ctx.keras_record("your model (as loaded)", ctx.loaded_model()))
    for index, (name, args) in enumerate(recipe.steps, start=1):
        label, step = f"[{index}/{len(recipe.steps)} {name}]", get_step(name)
        if state.done(index, name):
            records = [Record.from_dict(r) for r in state.read(index, name)["records"]]
            if os.path.exists(state.model_path(index, name)):
                ctx.model = ctx.load(state.model_path(index, name))
            log(f"{label} resumed from its checkpoint")
        else:
            _seed(recipe, index)
            t0 = time.perf_counter()
            log(f"{label} running ...")
            ctx.index = index
            ctx.callbacks = [*callbacks, *progress.step_callbacks(board, index, name, ctx)]
            result = step.run(ctx, args)
            ctx.model = result.model if result.model is not None else ctx.model
            records = list(result.records)
            state.finish(index, name, ctx.model if step.saves_model else None, records, time.perf_counter() - t0)
            for r in records:
                log(f"    {r.step}: {r.metric} {r.value:.4f}" + (f", {r.gzip_bytes / 1024:,.1f} KiB gzipped" if r.gzip_bytes else ""))
            log(f"{label} done in {time.perf_counter() - t0:.0f} s")
        for r in records:
            report.add(r)
    report.meta["seconds"] = round(time.perf_counter() - started, 1)
    report.save(state.out)
    if board:
        progress.log_report(board, report)
    log(f"report: {os.path.join(state.out, 'report.md')}")
    return report


class _RunState:
    """The checkpoints of one recipe run in an output folder (`out/.run/`)."""

    def __init__(self, recipe, out, log, restart):
        self.recipe = recipe
        self.out = os.path.abspath(out)
        self.state = os.path.join(self.out, ".run")
        self.log = log
        os.makedirs(self.out, exist_ok=True)
        self._clean_partials()
        fingerprint = recipe.fingerprint()
        marker = os.path.join(self.state, "recipe.json")
        if os.path.exists(marker):
            previous = _read_json(marker)
            if previous.get("fingerprint") != fingerprint and not restart:
                raise RecipeError(
                    f"{self.out} holds a run of a different recipe or data "
                    f"({previous.get('source')}). Fix: choose another output folder, or "
                    "restart from scratch (restart=True, --restart)."
                )
        if restart and os.path.isdir(self.state):
            shutil.rmtree(self.state)
        os.makedirs(self.state, exist_ok=True)
        from tfcompress import _io

        _io.atomic_write_text(
            marker, json.dumps({"fingerprint": fingerprint, "source": recipe.source, "config": recipe.config}, indent=2)
        )

    def _clean_partials(self):
        """Removes temporary files a killed run may have left (never outputs)."""
        for root, dirs, _ in os.walk(self.out):
            for d in list(dirs):
                if d.endswith(".partial") or ".old-" in d:
                    shutil.rmtree(os.path.join(root, d), ignore_errors=True)
                    dirs.remove(d)

    def step_dir(self, index, name):
        return os.path.join(self.state, f"{index:02d}-{name}")

    def model_path(self, index, name):
        return os.path.join(self.step_dir(index, name), "model.keras")

    def done(self, index, name):
        return os.path.exists(os.path.join(self.step_dir(index, name), "done.json"))

    def read(self, index, name):
        return _read_json(os.path.join(self.step_dir(index, name), "done.json"))

    def finish_data(self, meta):
        """Marks data preparation done (its arrays are written first)."""
        self._done(0, "data", meta)

    def finish(self, index, name, model, records, seconds):
        """Marks a step done: its model (if any) saved first, then `done.json`."""
        if model is not None:
            os.makedirs(self.step_dir(index, name), exist_ok=True)
            model.save(self.model_path(index, name))
        self._done(index, name, {"records": [dataclasses.asdict(r) for r in records], "seconds": seconds})

    def _done(self, index, name, payload):
        from tfcompress import _io

        os.makedirs(self.step_dir(index, name), exist_ok=True)
        _io.atomic_write_text(os.path.join(self.step_dir(index, name), "done.json"), json.dumps(payload, indent=2))


def _seed(recipe, index):
    import tensorflow as tf

    from tfcompress import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(recipe.step_seed(index))
    if recipe.config["deterministic"]:
        tf.config.experimental.enable_op_determinism()


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
