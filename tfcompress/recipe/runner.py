"""Running a recipe: resume or execute each step, checkpoint, record."""

import contextlib
import dataclasses
import json
import os
import shutil
import time

from tfcompress.recipe.config import Recipe
from tfcompress.recipe.context import RunContext
from tfcompress.recipe.data import carve_selection, prepare_data
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
    from tfcompress.recipe import progress

    if not isinstance(recipe, Recipe):
        recipe = Recipe.load(recipe) if isinstance(recipe, (str, os.PathLike)) else Recipe.from_dict(recipe)
    board = os.fspath(tensorboard) if tensorboard else recipe.resolve(recipe.config["tensorboard"])
    if board:
        progress.require_tensorboard(recipe.source)
    state = _RunState(recipe, out, log, restart)
    determinism = _op_determinism()
    try:
        return _execute(recipe, state, log, callbacks, verbose, board)
    finally:
        state.release()
        _op_determinism(determinism)  # a deterministic recipe does not leave the caller deterministic


def _execute(recipe, state, log, callbacks, verbose, board):
    """The run proper: data, then each step resumed or executed, then the report."""
    from tfcompress import devices
    from tfcompress.recipe import progress
    from tfcompress.report import Record, Report

    started = time.perf_counter()
    data, encoder, vocab, meta = prepare_data(recipe, state)
    choices = ", ".join(recipe.makes_choices)
    if choices:
        data, how = carve_selection(recipe, data, meta)
        log(
            f"[data] selection split: {len(data['x_sel']):,} examples carved from training for the run's choices "
            f"({choices}): {how}; the {len(data['x_dev']):,} dev examples are used for no choice"
        )
    ctx = RunContext(
        recipe, data, encoder, vocab, meta, devices.strategy(recipe.config["strategy"]), recipe.config["precision"],
        state.out, state.state, log, steps=recipe.steps, verbose=progress.default_verbose(log) if verbose is None else verbose,
    )
    kind = "text classifier" if meta["task"] == "classification" else "character language model"
    report = Report(f"{recipe.config['name']}: {kind}", meta={"recipe": recipe.source, "train examples": len(data["x_train"]), "dev examples": len(data["x_dev"])})
    if choices:
        report.meta["selection examples"] = len(data["x_sel"])
        report.meta["selection"] = (
            f"{choices} chose on a split carved from the training data ({how}); "
            "dev figures come from data no choice has seen"
        )
    if meta.get("dev_split"):
        report.meta["dev split"] = meta["dev_split"]
    if meta.get("prepared_model"):  # the user's model as it came in: the baseline of every later row
        report.add(ctx.keras_record("your model (as loaded)", ctx.loaded_model()))
    ctx.chain_end = chain_end = _chain_end(recipe, meta["task"])
    ctx.chosen_counts = chosen = {}  # step index -> the epoch count its (first) run chose

    def run_step(index, name, args, key, add=True):
        """Resumes step `index` from its checkpoint (`key`: its folder's name) or
        runs it; returns its records, after adding them to the report (`add`)."""
        label, step = f"[{index}/{len(recipe.steps)} {key}]", get_step(name)
        if state.done(index, key):
            done = state.read(index, key)
            records, sections, facts = [Record.from_dict(r) for r in done["records"]], done.get("sections", {}), done.get("meta", {})
            if os.path.exists(state.model_path(index, key)):
                ctx.model = ctx.load(state.model_path(index, key))
            log(f"{label} resumed from its checkpoint")
        else:
            _seed(recipe, index)
            t0 = time.perf_counter()
            log(f"{label} running ...")
            ctx.index, ctx.chosen_epochs = index, None
            ctx.callbacks = [*callbacks, *progress.step_callbacks(board, index, key, ctx)]
            result = step.run(ctx, args)
            ctx.model = result.model if result.model is not None else ctx.model
            records, sections, facts = list(result.records), dict(result.sections), dict(result.meta)
            if ctx.chosen_epochs is not None:  # a replayed step chooses nothing (None)
                facts[_chosen_key(index, name)] = ctx.chosen_epochs
            state.finish(index, key, ctx.model if step.saves_model else None, records, time.perf_counter() - t0, sections, facts)
            for r in records:
                log(f"    {r.step}: {r.metric} {r.value:.4f}" + (f", {r.gzip_bytes / 1024:,.1f} KiB gzipped" if r.gzip_bytes else ""))
            log(f"{label} done in {time.perf_counter() - t0:.0f} s")
        if add:
            for r in records:
                report.add(r)
            report.sections.update(sections)
        report.meta.update(facts)
        if _chosen_key(index, name) in facts:
            chosen[index] = facts[_chosen_key(index, name)]
        return records

    first_run = []
    last = _last_choice(recipe, meta["task"])
    with contextlib.ExitStack() as after_choices:
        for index, (name, args) in enumerate(recipe.steps, start=1):
            records = run_step(index, name, args, name, add=index > chain_end)
            if index <= chain_end:
                first_run += [(index, r) for r in records]
            if index == last:  # nothing chooses after this step: the split trains every later step too
                count = after_choices.enter_context(ctx.training_with_selection())
                if index == chain_end:
                    _refit_chain(recipe, ctx, chosen, first_run, report, log, run_step, count)
                else:
                    _after_choices(recipe, index, count, report, log)
    report.meta["seconds"] = round(time.perf_counter() - started, 1)
    report.save(state.out)
    if board:
        progress.log_report(board, report)
    log(f"report: {os.path.join(state.out, 'report.md')}")
    return report


def _chain_end(recipe, task):
    """The last step of a whole-chain refit, or 0 for none.

    A classifier's recipe whose `epochs: auto` steps (two or more, all with
    `refit`) are the only steps that choose on the selection split runs its
    steps up to the last of them twice: first each such step chooses its
    epoch count on the split (the model trained on less data), then the
    steps run again from the start with those counts, the split back in
    training. A step's own refit cannot do this when a later step still
    chooses: the split must stay unseen by the model that later step
    measures. With one such step its own refit is enough; with a step that
    chooses otherwise (`auto`, `sensitivity`) the steps refit alone."""
    if task != "classification":
        return 0
    steps = recipe.steps
    auto = [i for i, (_, args) in enumerate(steps, start=1) if args.get("epochs") == "auto"]
    if len(auto) < 2 or not all(steps[i - 1][1].get("refit", True) for i in auto):
        return 0
    if any(getattr(get_step(name), "chooses", False) for name, _ in steps):
        return 0
    return auto[-1]


def _last_choice(recipe, task):
    """The last step that chooses on the selection split (`epochs: auto`, or a
    step that measures for choices), or 0: a classifier's later steps train
    on train + selection, which nothing measures any more. A language
    model's split is the end of its corpus, which training does not take
    back (0)."""
    steps = recipe.choosing_steps
    return steps[-1] if steps and task == "classification" else 0


def _after_choices(recipe, last, count, report, log):
    """Says which training steps after step `last`, the last to choose, train
    on train + selection (`count` examples)."""
    later = [f"step {i} {n}" for i, (n, a) in enumerate(recipe.steps, start=1) if i > last and "epochs" in a]
    if later:
        said = f"{', '.join(later)} on train + selection ({count:,} examples): no step after step {last} {recipe.steps[last - 1][0]} chooses on the split"
        log(f"[data] {said}")
        report.meta["after choices"] = said


def _chosen_key(index, name):
    return f"epochs chosen (step {index} {name})"


def _refit_chain(recipe, ctx, chosen, first_run, report, log, run_step, count):
    """Runs steps 1 to `ctx.chain_end` again from the start on train +
    selection (`count` examples; `ctx` already trains on them), each
    `epochs: auto` step for the count its first run chose; the first run's
    rows go into a report section."""
    end = ctx.chain_end
    rows = [
        f"| {index} | {r.step} | {chosen.get(index, '—')} | {r.value:.4f} | {r.notes or ''} |"
        for index, r in first_run
    ]
    metric = first_run[0][1].metric if first_run else "dev metric"
    report.sections["Epochs chosen on the selection split"] = (
        f"Steps 1-{end} ran twice. First, each `epochs: auto` step chose its epoch count on the selection split, "
        f"trained on the rest of the training data; these are that run's models, measured on dev ({metric}), "
        "none of them handed on:\n\n"
        f"| step | model | epochs chosen | dev {metric} | how it stopped |\n|---:|---|---:|---:|---|\n" + "\n".join(rows) + "\n\n"
        f"Then steps 1-{end} ran again from the start with those counts on train + selection: the report's rows. "
        "Nothing chose on that second run."
    )
    ctx.model, ctx.chain_rerun = None, True
    counts = ", ".join(f"step {i} {recipe.steps[i - 1][0]}: {n}" for i, n in sorted(chosen.items()))
    log(f"[refit] steps 1-{end} again from the start on train + selection ({count:,} examples), epochs as chosen ({counts})")
    report.meta["refit"] = (
        f"steps 1-{end} ran again with the epoch counts chosen on the selection split ({counts}), and every step "
        f"trained on train + selection ({count:,} examples) from then on; the first run is under 'Epochs chosen on "
        "the selection split'"
    )
    try:
        for index, (name, args) in enumerate(recipe.steps[:end], start=1):
            ctx.replay_epochs = chosen.get(index) if args.get("epochs") == "auto" else None
            run_step(index, name, args, f"{name}-refit")
    finally:
        ctx.replay_epochs = None


STATE_FORMAT = 2
"""The layout of `.run/` checkpoints (2: a language model keeps corpus ids, not windows)."""
LOCK_NAME = ".tfcompress-lock"


def _subfolders(folder):
    try:
        return [e.path for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _check_out_folder(out):
    """Refuses an output folder that holds something other than a tfcompress run:
    tfcompress writes, cleans and restarts there, so it must be its own."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise RecipeError(f"{out} is a file; the output must be a folder. Fix: choose another --out.")
    if not os.path.isdir(out):
        return
    entries = [e for e in os.listdir(out) if e != LOCK_NAME]
    if entries and not os.path.isdir(os.path.join(out, ".run")):
        shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise RecipeError(
            f"{out} holds files that are not a tfcompress run ({shown}); tfcompress writes and cleans up in its "
            "output folder, so it only uses a new or empty folder, or one of its own runs (with a .run/ "
            "folder). Fix: choose another --out (a new folder is created)."
        )


def _acquire_lock(path):
    """Creates the folder's lock file (holding this process id); refuses when a
    live process holds it. A lock left by a killed run is taken over."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise RecipeError(
                    f"another tfcompress run (process {pid}) is writing to {os.path.dirname(path)}. Fix: wait "
                    f"for it to finish, or choose another --out. (If no such run exists, delete {path}.)"
                ) from None
            try:
                os.remove(path)  # stale: its process is gone
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return path
    raise RecipeError(f"could not take the lock {path}: another run keeps taking it. Fix: choose another --out.")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _RunState:
    """The checkpoints of one recipe run in an output folder (`out/.run/`)."""

    def __init__(self, recipe, out, log, restart):
        self.recipe = recipe
        self.out = os.path.abspath(out)
        self.state = os.path.join(self.out, ".run")
        self.log = log
        _check_out_folder(self.out)
        os.makedirs(self.out, exist_ok=True)
        self.lock = _acquire_lock(os.path.join(self.out, LOCK_NAME))
        try:
            self._clean_partials()
            self._claim(recipe.fingerprint(), restart)
        except BaseException:
            self.release()
            raise

    def _claim(self, fingerprint, restart):
        """Checks the folder holds no other recipe's run, then records this one."""
        from tfcompress import _io

        marker = os.path.join(self.state, "recipe.json")
        if os.path.exists(marker):
            previous = _read_json(marker)
            if previous.get("state_format", 1) != STATE_FORMAT and not restart:
                raise RecipeError(
                    f"{self.out} holds a run saved by another version of tfcompress (checkpoint format "
                    f"{previous.get('state_format', 1)}, this version reads {STATE_FORMAT}); it cannot be resumed. "
                    "Fix: restart from scratch (restart=True, --restart), or choose another output folder."
                )
            if previous.get("fingerprint") != fingerprint and not restart:
                raise RecipeError(
                    f"{self.out} holds a run of a different recipe or data "
                    f"({previous.get('source')}). Fix: choose another output folder, or "
                    "restart from scratch (restart=True, --restart)."
                )
        if restart and os.path.isdir(self.state):
            shutil.rmtree(self.state)
        os.makedirs(self.state, exist_ok=True)
        recipe = self.recipe
        _io.atomic_write_text(
            marker, json.dumps({"state_format": STATE_FORMAT, "fingerprint": fingerprint, "source": recipe.source, "config": recipe.config}, indent=2)
        )

    def release(self):
        """Lets another run use the folder."""
        try:
            os.remove(self.lock)
        except FileNotFoundError:
            pass

    def _clean_partials(self):
        """Removes temporary files a killed run may have left (never outputs).

        Only in the run folder itself and its `.run/` checkpoints (the folder
        is tfcompress's: `_check_out_folder`), never in folders below them."""
        for root in (self.out, self.state, *_subfolders(self.state)):
            for d in _subfolders(root):
                if d.endswith(".partial") or ".old-" in os.path.basename(d):
                    shutil.rmtree(d, ignore_errors=True)

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

    def finish(self, index, name, model, records, seconds, sections=None, meta=None):
        """Marks a step done: its model (if any) saved first, then `done.json`."""
        if model is not None:
            os.makedirs(self.step_dir(index, name), exist_ok=True)
            model.save(self.model_path(index, name))
        self._done(index, name, {"records": [dataclasses.asdict(r) for r in records], "seconds": seconds, "sections": sections or {}, "meta": meta or {}})

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


def _op_determinism(restore=None):
    """Whether TensorFlow's op determinism is on; with `restore`, sets it back.

    TensorFlow exports only `enable_op_determinism`; reading and turning it
    off use its config module (tensorflow.python.framework.config, TF 2.21)."""
    from tensorflow.python.framework import config as tf_config

    if restore is None:
        return tf_config.is_op_determinism_enabled()
    if not restore and tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()
    return restore


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
