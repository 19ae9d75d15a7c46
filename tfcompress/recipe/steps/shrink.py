"""`shrink`: remove whole units (structural pruning), then fine-tune or distil
from the model as it was."""

import numpy as np

from tfcompress.recipe import schema
from tfcompress.recipe.step import Flag, Step, StepResult, register_step, training_flags

SCORING_EXAMPLES = 1024
"""Training examples the `activation` and `taylor` criteria score units on."""


@schema.expects("a number in (0, 1) (the fraction of units kept), or a mapping {layer name or class name: fraction or count}")
def _units(v):
    if schema.open_fraction(v):
        return True
    return isinstance(v, dict) and bool(v) and all(
        isinstance(k, str) and (schema.open_fraction(n) or schema.positive_int(n)) for k, n in v.items()
    )


@register_step
class Shrink(Step):
    name = "shrink"
    summary = "remove whole units (LSTM units, embedding dimensions, Dense units): a smaller, faster dense model, then fine-tune"
    schema = {
        **schema.TRAINING,
        "units": (_units, 0.5),
        "criterion": (schema.choice("l2", "activation", "taylor"), "l2"),
        "distill": (schema.choice(True, False), False),
        "alpha": (schema.unit, 0.1),
        "temperature": (schema.positive_number, 2.0),
    }
    flags = (
        *training_flags(2),
        Flag("--shrink", "units", float, 0.5, "fraction of each layer's units the shrink step keeps (default: 0.5)"),
    )

    def validate(self, args, earlier, config, fail):
        later = [name for name, _ in earlier if name in ("prune", "cluster", "quantize")]
        if later:
            fail([], f"shrink cannot follow {later[0]} (removing units would undo its sparsity, clusters or quantization ranges)", "move shrink before prune, cluster and quantize")
        return args

    def run(self, ctx, args):
        from tfcompress import distillation, keras, precision, pruning

        model = ctx.require_model()
        data = None
        if args["criterion"] != "l2":
            arrays = ctx.subset(args)
            if arrays is None:  # a large corpus: its windows are made as they are read
                data = ctx.window_batches(args)[0]
            else:
                rng = np.random.default_rng(ctx.recipe.step_seed(ctx.index))
                idx = np.sort(rng.choice(len(arrays[0]), min(len(arrays[0]), SCORING_EXAMPLES), replace=False))
                data = (arrays[0][idx], arrays[1][idx])
        with precision.policy_scope(ctx.precision), ctx.strategy.scope():
            small = pruning.shrink(
                model, data=data, units=args["units"], criterion=args["criterion"], loss="sparse_categorical_crossentropy", samples=SCORING_EXAMPLES
            )
            report = small.tfcompress_shrink_report
            lr = args["learning_rate"] or 1e-3
            if args["distill"]:
                from tfcompress.recipe.steps.distill import fit_distiller

                distiller = distillation.Distiller(model, small, alpha=args["alpha"], temperature=args["temperature"])
                distiller.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
                fit_distiller(ctx, args, distiller)
                small.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
            else:
                small = ctx.fit(small, {**args, "learning_rate": lr}, default_lr=1e-3)
        widths = ", ".join(f"{name} {r['before']}->{r['after']}" for name, r in report["layers"].items())
        notes = (
            f"{widths}; {report['params_before']:,} -> {report['params_after']:,} parameters"
            + (f", {report['multiply_adds_before'] / 1e6:,.2f} -> {report['multiply_adds_after'] / 1e6:,.2f} M multiply-adds" if report["multiply_adds_before"] else "")
            + f"; criterion {args['criterion']}"
            + (f"; distilled from the model before (alpha {args['alpha']}, T {args['temperature']})" if args["distill"] else "")
        )
        units = args["units"]
        label = f"shrink {units:.0%}" if isinstance(units, float) else "shrink " + ", ".join(f"{k} {v}" for k, v in units.items())
        return StepResult(small, [ctx.keras_record(label, small, notes)])
