"""How much of the embedding table can go, rarest words first, on SST-2?

After the budget search's shrink (50% of the units), the embedding table is
nearly the whole file: a cheaper table is the way to a smaller file. This
probe trains the dense model 2 epochs on the training data without the
selection split (25%, as the auto step carves it), then for each fraction of
rows kept (`embeddings.prune_rows`: the rarest ids share one row, their
count-weighted mean) measures on the selection split:

- the accuracy lost at once (no training);
- the accuracy lost after one epoch of training with the smaller table (on
  the training data without the split);

and estimates the table's gzip size as the budget search does (int8 codes),
pruned 0% or 80% and clustered to 8 values or not. Nothing here looks at dev.
"""

import os
import tempfile

import numpy as np

from bench_budget import SEED, _recipe
from common import emit, parser, require_shared, table

KEEP = [1.0, 0.75, 0.5, 0.35, 0.25, 0.15]
MEASURED = {}


def _register():
    from tfcompress.recipe import Step, StepResult, register_step

    @register_step
    class Rows(Step):
        name = "probe_rows"
        summary = "measure embedding row pruning on the selection split (benchmarks only)"
        schema = {}
        saves_model = False
        chooses = True
        key = None

        def run(self, ctx, args):
            MEASURED[Rows.key] = _measure(ctx, ctx.require_model())
            return StepResult(None, [])

    return Rows


def _measure(ctx, model):
    import tensorflow as tf

    from tfcompress import embeddings, keras
    from tfcompress.budget import _weight_bytes
    from tfcompress.training import per_example

    x, y, _ = ctx.selection(10**9)
    xt, yt = ctx.data["x_train"], ctx.data["y_train"]
    base = float(per_example(model, x, y, "accuracy").mean())
    table_ = max((l for l in model.layers if isinstance(l, keras.layers.Embedding)), key=lambda l: l.embeddings.shape[0]).embeddings.numpy()
    rows = table_.shape[0]
    counts = np.bincount(np.asarray(xt).ravel(), minlength=rows)[:rows]
    out = {"base": base, "rows": rows, "tokens": int(counts[2:].sum())}
    for keep in KEEP:
        k = rows if keep == 1.0 else max(3, int(round(rows * keep)))
        sizes = {(s, c): _weight_bytes([table_[:k]], s, c) for s in (0.0, 0.8) for c in (None, 8)}
        covered = float(counts[2:k].sum() / max(counts[2:].sum(), 1))
        if keep == 1.0:
            out[keep] = dict(once=0.0, tuned=None, sizes=sizes, covered=covered, k=k)
            continue
        small = embeddings.prune_rows(model, keep=k, counts=counts)
        once = base - float(per_example(small, x, y, "accuracy").mean())
        small.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy" if model.output_shape[-1] == 1 else "sparse_categorical_crossentropy")
        batches = tf.data.Dataset.from_tensor_slices((xt, yt)).shuffle(len(xt), seed=ctx.recipe.step_seed(ctx.index)).batch(128)
        small.fit(batches, epochs=1, verbose=0)
        tuned = base - float(per_example(small, x, y, "accuracy").mean())
        out[keep] = dict(once=once * 100, tuned=tuned * 100, sizes=sizes, covered=covered, k=k)
        print(f"  keep {keep:.0%} ({k} rows, {covered:.1%} of tokens): loss at once {once * 100:+.2f}, after 1 epoch {tuned * 100:+.2f} points", flush=True)
    # the control: the full table trained one more epoch the same way
    same = keras.models.clone_model(model)
    same.set_weights(model.get_weights())
    same.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy" if model.output_shape[-1] == 1 else "sparse_categorical_crossentropy")
    same.fit(tf.data.Dataset.from_tensor_slices((xt, yt)).shuffle(len(xt), seed=ctx.recipe.step_seed(ctx.index)).batch(128), epochs=1, verbose=0)
    out[1.0]["tuned"] = (base - float(per_example(same, x, y, "accuracy").mean())) * 100
    return out


def main():
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    require_shared()
    from tfcompress import recipe as recipes

    step = _register()
    seeds = list(range(SEED, SEED + args.seeds))
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            rec = _recipe("rows", [{"train": {"epochs": "auto", "min_epochs": 2, "max_epochs": 2, "refit": False}}, {"probe_rows": {}}], args.quick, 0.25, seed)
            step.key = seed
            recipes.run(rec, os.path.join(tmp, str(seed)), log=lambda line: None, verbose=0)
            print(f"seed {seed}: {MEASURED[seed]['base']:.4f} on the selection split, {MEASURED[seed]['rows']} rows", flush=True)
    rows = []
    for keep in KEEP:
        got = [MEASURED[s][keep] for s in seeds]
        sizes = {key: np.mean([g["sizes"][key] for g in got]) / 1024 for key in got[0]["sizes"]}
        rows.append([
            f"{keep:.0%} ({got[0]['k']:,})", f"{np.mean([g['covered'] for g in got]):.1%}", f"{np.mean([g['once'] for g in got]):+.2f}",
            ", ".join(f"{g['tuned']:+.2f}" for g in got),
            *[f"{sizes[key]:,.1f}" for key in [(0.0, None), (0.0, 8), (0.8, None), (0.8, 8)]],
        ])
    body = table(["rows kept", "training tokens covered", "loss at once (points)", "loss after 1 epoch, per seed", "KiB int8", "+ 8 clusters", "80% pruned", "80% + 8 clusters"], rows)
    body += (
        "\n\nThe dense model (train 2 epochs, 64 units) trains without the selection split (25% of the training sentences with their phrases); "
        "losses are against it on that split, so nothing here is dev. The 100% row's \"after 1 epoch\" is the control: the whole table trained "
        "the same extra epoch. Sizes: the embedding table alone (full width), gzip of int8 codes, as the budget search estimates them."
    )
    emit(args, "Probe: embedding rows kept (rarest words out) on SST-2", body)


if __name__ == "__main__":
    main()
