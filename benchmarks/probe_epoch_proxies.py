"""Can the selection split tell which dense epoch count compresses best?

`probe_epochs_for_compression` trains the fixed recipe's dense model for 1-4
epochs and compresses each the same way; the file's dev accuracy measures
what the epoch count does. An `epochs: auto` train step has to choose that
count without dev, on the selection split carved from the training data.
This probe scores each count by candidate signals on that split and reports
the file each signal's choice would give:

- the dense model's selection loss and accuracy (what `epochs: auto`
  watches today);
- the same after pruning every prunable weight to the prune step's 80% at
  once (magnitude, no training: an evaluation's cost);
- the same after 80% pruning and 100 steps of training at it (a tenth of
  an epoch of pruned training, from a copy).

Per seed and count, the recipe is train (`epochs: auto` with min_epochs =
max_epochs = the count and no refit, so it trains exactly that many epochs
on the training data without the selection split), a step that measures the
signals (a step that chooses: the pruned copy's 100 steps train without
the split too) and hands the model on unchanged, then prune 80% 2 epochs,
QAT 1 epoch and dynamic export, every count with the same seeds. Nothing
chooses after the signal step, so the prune and QAT steps train on every
phrase, the selection split included, as they would in `compress`.

(The run recorded in BENCHMARKS.md, 2026-12-05, came before the signal step
said it chooses: its 100 pruned steps trained on the selection split too.)
"""

import os
import tempfile

import numpy as np

from bench_budget import _recipe
from common import emit, table
from probe_epochs_for_compression import TAIL, _values, arguments

FINE_TUNE_STEPS = 100
SPARSITY = 0.8
SIGNALS = {  # name: (what, higher is better)
    "dense loss": ("dense", "loss"),
    "dense accuracy": ("dense", "accuracy"),
    "pruned at once: loss": ("at once", "loss"),
    "pruned at once: accuracy": ("at once", "accuracy"),
    f"pruned + {FINE_TUNE_STEPS} steps: loss": ("tuned", "loss"),
    f"pruned + {FINE_TUNE_STEPS} steps: accuracy": ("tuned", "accuracy"),
}
MEASURED = {}  # (seed, epochs) -> {(model, what): mean over the selection split}


def _register_signal_step():
    from tfcompress.recipe import Step, StepResult, register_step

    @register_step
    class Signals(Step):
        name = "probe_signals"
        summary = "measure candidate signals of the epoch count on the selection split (benchmarks only)"
        schema = {}
        saves_model = False
        chooses = True  # measures on the selection split: the runner keeps the split out of training up to here
        key = None  # (seed, epochs) of the run

        def run(self, ctx, args):
            MEASURED[Signals.key] = _signals(ctx, ctx.require_model())
            return StepResult(None, [])

    return Signals


def _signals(ctx, model):
    import tensorflow as tf

    from tfcompress import keras, pruning
    from tfcompress.pruning.layers import PRUNABLE_TYPES, all_layers, prunable_weights
    from tfcompress.sensitivity import prune_array
    from tfcompress.training import per_example

    x, y, _ = ctx.selection(10**9)
    out = {}

    def measure(name, m):
        for what in ("loss", "accuracy"):
            out[name, what] = float(per_example(m, x, y, what).mean())

    measure("dense", model)
    variables = [v for layer in all_layers(model) if isinstance(layer, PRUNABLE_TYPES) for v in prunable_weights(layer)]
    originals = [v.numpy() for v in variables]
    try:
        for v, w in zip(variables, originals):
            v.assign(prune_array(w, SPARSITY))
        measure("at once", model)
    finally:
        for v, w in zip(variables, originals):
            v.assign(w)
    pruned = pruning.prune(model, target_sparsity=SPARSITY, schedule="constant", epochs=1, steps_per_epoch=FINE_TUNE_STEPS)
    pruned.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy" if model.output_shape[-1] == 1 else "sparse_categorical_crossentropy")
    xt, yt = ctx.data["x_train"], ctx.data["y_train"]
    batches = tf.data.Dataset.from_tensor_slices((xt, yt)).shuffle(len(xt), seed=ctx.recipe.step_seed(ctx.index)).batch(128).take(FINE_TUNE_STEPS)
    pruned.fit(batches, epochs=1, verbose=0)
    measure("tuned", pruning.strip(pruned))
    return out


def main():
    args, seeds = arguments(__doc__)
    from tfcompress import recipe as recipes

    signals_step = _register_signal_step()
    quiet = dict(log=lambda line: None, verbose=0)
    dense, files = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for k in args.epochs:
                steps = [{"train": {"epochs": "auto", "min_epochs": k, "max_epochs": k, "refit": False}}, {"probe_signals": {}}, *TAIL]
                rec = _recipe(f"train {k} epochs", steps, args.quick, None, seed)
                signals_step.key = (seed, k)
                dense[seed, k], files[seed, k] = _values(recipes.run(rec, os.path.join(tmp, f"{seed}-{k}"), **quiet))
                m = MEASURED[seed, k]
                print(
                    f"seed {seed}, train {k} epochs: dense {dense[seed, k]:.4f}, file {files[seed, k]:.4f}; selection: "
                    + ", ".join(f"{name} {m[key]:.4f}" for name, key in SIGNALS.items()),
                    flush=True,
                )

    def choice(seed, name):
        model, what = SIGNALS[name]
        score = {k: MEASURED[seed, k][model, what] * (1 if what == "accuracy" else -1) for k in args.epochs}
        return max(args.epochs, key=lambda k: (score[k], -k))  # ties: fewer epochs

    rows = []
    for name in ["always 2 (the fixed recipe)", *SIGNALS, "best file (dev: not a choice any run can make)"]:
        if name.startswith("always"):
            chosen = {s: 2 for s in seeds}
        elif name.startswith("best file"):
            chosen = {s: max(args.epochs, key=lambda k: (files[s, k], -k)) for s in seeds}
        else:
            chosen = {s: choice(s, name) for s in seeds}
        got = [files[s, chosen[s]] for s in seeds]
        diff = np.array([files[s, chosen[s]] - files[s, 2] for s in seeds]) * 100
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        rows.append([name, ", ".join(str(chosen[s]) for s in seeds), f"{np.mean(got):.4f}", f"{diff.mean():+.2f} ± {se:.2f}"])
    per_seed = [
        [str(s), str(k), f"{dense[s, k]:.4f}", f"{files[s, k]:.4f}"] + [f"{MEASURED[s, k][key]:.4f}" for key in SIGNALS.values()]
        for s in seeds
        for k in args.epochs
    ]
    body = (
        table(["epochs chosen by", f"epochs (seeds {seeds[0]}–{seeds[-1]})", "file: dev (mean)", "Δ vs 2 epochs (points, ± se)"], rows)
        + "\n\nPer seed and epoch count (selection-split means; loss in nats):\n\n"
        + table(["seed", "train epochs", "dense: dev", "file: dev", *[f"sel. {n}" for n in SIGNALS]], per_seed)
        + "\n\nEvery dense model trains on the training data without the selection split (10% of the training sentences, held out "
        "with their phrases), and so do the 100 steps behind the \"pruned + 100 steps\" signals; then, nothing choosing any more, "
        "the split goes back into training: prune 80% for 2 epochs, QAT 1 epoch on every phrase, dynamic-range export. Within a seed "
        "only the train step's epoch count differs. Each signal picks the count with the best selection value (ties: fewer "
        "epochs); none of them sees dev. SST-2 has one labelled dev set: the last row is read off it."
    )
    emit(args, "Probe: which selection-split signal picks the dense epochs that compress best, SST-2", body)


if __name__ == "__main__":
    main()
