"""Does fine-tuning against the dense model's own outputs keep the
compressed model closer to it?

The accuracy-budget search (`--max-loss`) fine-tunes each plan (prune,
cluster, QAT) on the training labels alone, then measures its loss against
the dense model on the selection split, paired example by example. Two
things decide whether a plan passes a 0.5-point budget: the loss itself and
its paired standard error, which grows with the share of examples on which
the two models disagree. Training the compressed model towards the dense
model's outputs (self-distillation: targets `alpha * label + (1 - alpha) *
dense probability`, the dense model being the teacher) could lower both.

Per seed: the dense model trains 2 epochs on the training data without the
selection split (25% of the training sentences, with their phrases, as the
auto step carves it); then, from it and with the same step seed each time,
the fixed plan "every layer pruned 80%, 8 clusters, QAT" (20x on SST-2,
BENCHMARKS "Smaller") is fine-tuned (prune 2 epochs, cluster 1, QAT 1) with
each `alpha`. Each result is scored on the selection split as the auto step
scores a candidate (each held-out sentence the mean over itself and its
phrases; loss against the dense model, paired standard error) and, as a
Keras QAT model, on dev.
"""

import os
import tempfile

import numpy as np

from bench_budget import SEED, _recipe
from common import emit, parser, require_shared, table

SPARSITY, CLUSTERS = 0.8, 8
MEASURED = {}  # (seed, alpha) -> dict
QUICK_EXAMPLES = None  # --quick: fine-tune on this many training examples


def _alphas(text):
    alphas = sorted({float(a) for a in text.split(",")}, reverse=True)
    if 1.0 not in alphas or not all(0 <= a <= 1 for a in alphas):
        raise ValueError("--alphas are in [0, 1] and include 1 (the labels alone: the fine-tune as it is)")
    return alphas


def _register_step(alphas):
    from tfcompress.recipe import Step, StepResult, register_step

    @register_step
    class SelfDistill(Step):
        name = "probe_self_distill"
        summary = "fine-tune one fixed plan with each alpha of self-distillation and score it (benchmarks only)"
        schema = {}
        saves_model = False
        chooses = True  # measures on the selection split: the runner keeps it out of this step's training data
        seed = None

        def run(self, ctx, args):
            for alpha in alphas:
                MEASURED[SelfDistill.seed, alpha] = _measure(ctx, ctx.require_model(), alpha)
            return StepResult(None, [])

    return SelfDistill


def _measure(ctx, dense, alpha):
    import tensorflow as tf

    from tfcompress import budget, keras
    from tfcompress._keras import predict
    from tfcompress.pruning.layers import PRUNABLE_TYPES, all_layers
    from tfcompress.sensitivity import loss_between, paired_standard_error

    xt, yt = ctx.data["x_train"][:QUICK_EXAMPLES], ctx.data["y_train"][:QUICK_EXAMPLES]
    target = budget.teacher_targets(dense, xt, yt, 1 - alpha)  # alpha: the labels' weight
    loss = budget.target_loss(dense, target)
    batch = 128

    def fit(m, epochs, learning_rate):
        m.compile(keras.optimizers.Adam(learning_rate), loss)
        data = tf.data.Dataset.from_tensor_slices((xt, target)).shuffle(len(xt), seed=ctx.recipe.step_seed(ctx.index), reshuffle_each_iteration=True)
        m.fit(data.batch(batch), epochs=epochs, verbose=0)
        return m

    ctx.reseed()
    names = [layer.name for layer in all_layers(dense) if isinstance(layer, PRUNABLE_TYPES)]
    plan = budget.Plan({n: SPARSITY for n in names}, CLUSTERS)
    with ctx.float32_scope():
        small = budget.fine_tuner(dense, fit, steps_per_epoch=int(np.ceil(len(xt) / batch)))(plan)
    score = budget.selection_scorer(None, None, "accuracy", ctx.selection_groups(10**9))
    base, got = score(dense), score(small)
    sentences = budget.selection_scorer(ctx.data["x_sel"], ctx.data["y_sel"], "accuracy")
    sent_base, sent_got = sentences(dense), sentences(small)
    from tfcompress import metrics

    dev_dense = metrics.correct(np.asarray(predict(dense, ctx.data["x_dev"], batch_size=512)), ctx.data["y_dev"])
    dev_small = metrics.correct(np.asarray(predict(small, ctx.data["x_dev"], batch_size=512)), ctx.data["y_dev"])
    return {
        "loss": loss_between(base.mean(), got.mean(), "accuracy"),
        "dense sel": float(base.mean()),
        "sel": float(got.mean()),
        "sentence loss": loss_between(sent_base.mean(), sent_got.mean(), "accuracy"),
        "sentence se": paired_standard_error(sent_base, sent_got, "accuracy"),
        "se": paired_standard_error(base, got, "accuracy"),
        "disagree": float(np.mean(np.abs(base - got) > 0)),
        "dense dev": float(np.mean(dev_dense)),
        "dev": float(np.mean(dev_small)),
        "dev disagree": float(np.mean(dev_dense != dev_small)),  # one right, one wrong: for two classes, the predictions differ
        "sentences": len(base),
    }


def main():
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (from --first-seed)")
    p.add_argument("--first-seed", type=int, default=SEED, help="the first seed")
    p.add_argument("--alphas", type=_alphas, default=[1.0, 0.5, 0.0], help="comma-separated weights of the labels in the targets; must include 1")
    args = p.parse_args()
    require_shared()
    from tfcompress import recipe as recipes

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    global QUICK_EXAMPLES
    QUICK_EXAMPLES = 2560 if args.quick else None
    step = _register_step(args.alphas)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            step.seed = seed
            steps = [{"train": {"epochs": "auto", "min_epochs": 2, "max_epochs": 2, "refit": False}}, {"probe_self_distill": {}}]
            recipes.run(_recipe("self-distillation", steps, args.quick, 0.25, seed), os.path.join(tmp, str(seed)), log=lambda line: None, verbose=0)
            for a in args.alphas:
                m = MEASURED[seed, a]
                print(f"seed {seed}, alpha {a:g}: selection loss {m['loss']:+.2f} ± {m['se']:.2f} ({m['disagree']:.1%} of {m['sentences']} sentence means differ; dense {m['dense sel']:.4f}, this {m['sel']:.4f}); "
                      f"sentences alone {m['sentence loss']:+.2f} ± {m['sentence se']:.2f}; "
                      f"dev {m['dev']:.4f} (dense {m['dense dev']:.4f}, {m['dev disagree']:.1%} predictions differ)", flush=True)

    def mean_se(values):
        v = np.asarray(values)
        return f"{v.mean():+.2f} ± {v.std(ddof=1) / np.sqrt(len(v)):.2f}" if len(v) > 1 else f"{v[0]:+.2f}"

    rows = []
    for a in args.alphas:
        ms = [MEASURED[s, a] for s in seeds]
        dev_loss = [(m["dense dev"] - m["dev"]) * 100 for m in ms]
        rows.append([
            f"{a:g}" + (" (labels alone: today)" if a == 1 else ""),
            ", ".join(f"{m['loss']:+.2f}" for m in ms), f"{np.mean([m['se'] for m in ms]):.2f}",
            ", ".join(f"{m['loss'] + m['se']:+.2f}" for m in ms),
            f"{np.mean([m['dev'] for m in ms]):.4f}", mean_se(dev_loss),
            "—" if a == 1 else mean_se([(MEASURED[s, a]["dev"] - MEASURED[s, 1.0]["dev"]) * 100 for s in seeds]),
            f"{np.mean([m['dev disagree'] for m in ms]):.1%}",
        ])
    dense_dev = np.mean([MEASURED[s, 1.0]["dense dev"] for s in seeds])
    body = (
        table(["alpha (weight of the labels)", f"selection loss, points (seeds {seeds[0]}–{seeds[-1]})", "mean paired se", "loss + 1 se (the budget check)",
               "dev (Keras QAT model)", "dev loss vs dense, points (± se over seeds)", "dev vs alpha 1, points", "dev predictions unlike dense"], rows)
        + f"\n\nThe dense models score {dense_dev:.4f} on dev (mean). Each seed's dense model trains 2 epochs on its training data without the "
        "selection split (25% of the training sentences, held out with their phrases); every alpha then fine-tunes the same plan (every layer "
        f"pruned {SPARSITY:.0%}, {CLUSTERS} clusters, QAT: prune 2 epochs, cluster 1, QAT 1) from it with the same seed. Selection losses are against "
        "the dense model on the held-out sentences, each the mean over itself and its phrases, as the auto step measures a candidate. "
        "SST-2 has one labelled dev set; nothing here chooses on it."
    )
    emit(args, "Probe: fine-tuning against the dense model's outputs (self-distillation), SST-2", body)


if __name__ == "__main__":
    main()
