"""Does the selection split measure a compressed model's loss as dev does?

The `auto` step checks its budget on a selection split carved from SST-2's
training sentences. On 3 seeds its verified losses were about a point below
the same files' losses on dev. This probe measures the loss of ordinary
compression steps (no choice among candidates, so no selection effect) after
each step, against the run's dense model, on four sets:

- **phrase means**: each held-out sentence scored as the mean over itself
  and the phrases cut from it (what `auto` verifies on by default);
- **sentences**: the held-out sentences alone (`auto: {phrases: false}`);
- **all selection examples**: the sentences and their phrases, unweighted;
- **dev**: SST-2's dev set (full sentences), used here only to measure.

Two chains per seed, from the same dense model (train 2 epochs): the fixed
recipe (prune 80% 2 epochs, QAT 1) and `auto`'s usual first candidate
(shrink to 50% of the units 2 epochs, 8 clusters 1 epoch, QAT 1). Each loss
is in points, with its paired standard error.
"""

import tempfile

import numpy as np

from common import DATA, emit, parser, require_shared, table

CHAINS = {
    "fixed": [{"prune": {"target_sparsity": 0.8, "epochs": 2}}, {"measure": {"label": "prune 80%"}}, {"quantize": {"epochs": 1}}, {"measure": {"label": "prune 80% + QAT"}}],
    "auto-like": [
        {"shrink": {"units": 0.5, "epochs": 2}}, {"measure": {"label": "shrink 50%"}},
        {"cluster": {"clusters": 8, "epochs": 1}}, {"measure": {"label": "shrink 50% + 8 clusters"}},
        {"quantize": {"epochs": 1}}, {"measure": {"label": "shrink 50% + 8 clusters + QAT"}},
    ],
}

SETS = ("phrase means", "sentences", "all selection examples", "dev")
_BASE = {}  # (seed) -> per-example correctness of the dense model on each set
_ROWS = []  # (seed, chain, label, {set: (loss or accuracy, se or None)})


def _register():
    from tfcompress import sensitivity
    from tfcompress._keras import predict
    from tfcompress.recipe import Step, StepResult, register_step
    from tfcompress.recipe import schema as checks

    @register_step(replace=True)
    class Measure(Step):
        name = "measure"
        summary = "probe: the loss against the run's dense model on the selection split (two ways) and dev"
        chooses = True  # so that the run carves the selection split
        schema = {"label": (checks.str_or_none, None), "chain": (checks.str_or_none, None)}
        saves_model = False

        def run(self, ctx, args):
            model = ctx.require_model()
            xg, yg, group = ctx.selection_groups(10**9)

            def correct(x, y):
                return sensitivity.per_example(predict(model, x, batch_size=512), y, "accuracy")

            parts = correct(xg, yg)  # every selection example, once: two of the sets are made from it
            got = dict(zip(SETS, (
                sensitivity.group_means(parts, group), correct(ctx.data["x_sel"], ctx.data["y_sel"]), parts, correct(ctx.data["x_dev"], ctx.data["y_dev"]),
            )))
            seed = ctx.recipe.config["seed"]
            if args["label"] == "dense":
                _BASE[seed] = got
                _ROWS.append((seed, args["chain"], "dense", {k: (float(np.mean(v)), None) for k, v in got.items()}))
            else:
                base = _BASE[seed]
                losses = {k: (sensitivity.loss_between(np.mean(base[k]), np.mean(v), "accuracy"), sensitivity.paired_standard_error(base[k], v, "accuracy")) for k, v in got.items()}
                _ROWS.append((seed, args["chain"], args["label"], losses))
            ctx.log(f"[measure] {_ROWS[-1]}")
            return StepResult(None, [])


def _recipe(chain, seed, quick):
    common = {"batch_size": 128, **({"max_steps": 20} if quick else {})}
    steps = [{"train": {**common, "epochs": 2}}, {"measure": {"label": "dense", "chain": chain}}]
    for step in CHAINS[chain]:
        (key, a), = step.items()
        a = {**a, "chain": chain} if key == "measure" else {**common, **a}
        steps.append({key: a})
    return {
        "name": f"probe-{chain}", "seed": seed,
        "data": {"train": str(DATA / "sst2" / "train.tsv"), "dev": str(DATA / "sst2" / "dev.tsv")},
        "text": {"max_len": 64}, "steps": steps,
    }


def main():
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    require_shared()
    from tfcompress import recipe as recipes

    _register()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for i, chain in enumerate(CHAINS):
                recipes.run(_recipe(chain, seed, args.quick), f"{tmp}/{seed}-{i}", log=lambda line: print(line, flush=True), verbose=0)
    rows = []
    for seed, chain, label, got in _ROWS:
        if label == "dense" and chain != "fixed":
            continue
        cells = [f"{got[k][0]:.4f}" if label == "dense" else f"{got[k][0]:+.2f} ± {got[k][1]:.2f}" for k in SETS]
        rows.append([str(seed), "dense (accuracy)" if label == "dense" else f"{chain}: {label}", *cells])
    gaps = {}
    for seed, chain, label, got in _ROWS:
        if label != "dense":
            for k in SETS[:-1]:
                gaps.setdefault(k, []).append(got["dev"][0] - got[k][0])
    summary = "\n".join(
        f"- dev loss minus {k} loss: mean {np.mean(v):+.2f} points over {len(v)} measurements (sd {np.std(v, ddof=1) if len(v) > 1 else 0:.2f})" for k, v in gaps.items()
    )
    body = (
        table(["seed", "model", *SETS], rows)
        + "\n\nLosses in points against the same run's dense model (± one paired standard error). The selection split is 10% of the "
        "training sentences with the phrases cut from them; no step here makes a choice on it, so these are plain measurements.\n\n"
        + summary
    )
    emit(args, f"Does the selection split measure loss as dev does? ({args.seeds} seeds)", body)


if __name__ == "__main__":
    main()
