"""`prune`: magnitude pruning during training (TFMOT), wrappers stripped after."""

import numpy as np

from tfcompress.recipe import schema
from tfcompress.recipe.step import Flag, Step, StepResult, register_step, training_flags

DEFAULT_SPARSITY = 0.8
RAMP_EPOCHS = 2
"""With `epochs: auto`, the epochs over which the sparsity rises to its target."""


@register_step
class Prune(Step):
    name = "prune"
    summary = "prune weights to a target sparsity while training (kept through quantize and export)"
    schema = {
        **schema.TRAINING,
        "target_sparsity": (schema.optional(schema.fraction, "a number in [0, 1), or null (0.8; M/N with structure)"), None),
        "schedule": (schema.choice("auto", "constant", "polynomial"), "auto"),
        "structure": (schema.m_by_n, None),
        "block_size": (schema.pair, [1, 1]),
        "layers": (schema.optional(schema.str_list, "a list of layer names or class names, or null"), None),
    }
    flags = (
        *training_flags(2),
        Flag("--sparsity", "target_sparsity", float, None, f"pruning target (default: {DEFAULT_SPARSITY})"),
    )

    def validate(self, args, earlier, config, fail):
        if any(name == "quantize" for name, _ in earlier):
            fail([], "pruning cannot follow quantize (a QAT model cannot be re-wrapped for pruning)", "prune first, then quantize: sparsity is kept through QAT")
        if args["structure"] and args["block_size"] != [1, 1]:
            fail(["structure"], "structure and block_size conflict", "choose M:N structured sparsity or block sparsity, not both")
        if args["structure"]:
            m, n = map(int, args["structure"].split(":"))
            if args["target_sparsity"] is not None and args["target_sparsity"] != m / n:
                fail(["target_sparsity"], f"structure '{args['structure']}' fixes the sparsity at {m / n:g}", "drop target_sparsity")
            return {**args, "target_sparsity": m / n}
        if args["target_sparsity"] is None:
            return {**args, "target_sparsity": DEFAULT_SPARSITY}
        return args

    def run(self, ctx, args):
        from tfcompress import pruning

        model = ctx.require_model()
        steps_per_epoch = int(np.ceil(ctx.train_count(args) / args["batch_size"]))
        # epochs: auto ramps the sparsity up over the first RAMP_EPOCHS, then trains on at the target:
        # only those later epochs may be chosen as the best (an earlier, denser one would win).
        ramp = min(RAMP_EPOCHS, args["max_epochs"]) if args["epochs"] == "auto" else args["epochs"]
        with ctx.float32_scope():
            pruned = pruning.prune(
                model,
                target_sparsity=args["target_sparsity"],
                schedule=args["schedule"],
                epochs=ramp,
                steps_per_epoch=steps_per_epoch,
                structure=args["structure"],
                block_size=tuple(args["block_size"]),
                layers=_layer_selection(args["layers"]),
            )
            summaries = [pruning.PruningSummaries(log_dir=ctx.tensorboard_dir)] if ctx.tensorboard_dir else []  # sparsity per layer
            pruned = ctx.fit(pruned, {**args, "learning_rate": args["learning_rate"] or 1e-3}, default_lr=1e-3, callbacks=summaries, first_candidate=ramp)
        model = pruning.strip(pruned)
        sparsity = pruning.sparsity_report(model).overall()
        label = f"prune {args['structure'] or format(args['target_sparsity'], '.0%')}"
        return StepResult(model, [ctx.keras_record(label, model, f"sparsity {sparsity:.1%}")])


def _layer_selection(names):
    """Layer names, with Keras layer class names turned into the classes."""
    if not names:
        return None
    from tfcompress import keras

    out = []
    for n in names:
        cls = getattr(keras.layers, n, None)
        out.append(cls if isinstance(cls, type) else n)
    return out
