"""`factorize`: a low-rank factorised embedding table (SVD start), fine-tuned."""

from tfcompress.recipe import schema
from tfcompress.recipe.step import Flag, Step, StepResult, register_step, training_flags


@register_step
class Factorize(Step):
    name = "factorize"
    summary = "replace the embedding table by two low-rank factors (SVD start), then fine-tune"
    schema = {
        **schema.TRAINING,
        "rank": (schema.optional(schema.positive_int, "an integer >= 1, or null (use max_error)"), None),
        "max_error": (schema.optional(schema.open_fraction, "a number in (0, 1), or null (use rank)"), None),
        "layer": (schema.str_or_none, None),
    }
    flags = (
        *training_flags(1),
        Flag("--embedding-rank", "rank", int, None, "inner dimension of the factorised embedding (factorize step)"),
    )

    def validate(self, args, earlier, config, fail):
        if (args["rank"] is None) == (args["max_error"] is None):
            fail([], "factorize needs exactly one of rank or max_error", "give rank: 16 (the inner dimension) or max_error: 0.3")
        if any(name in ("prune", "cluster", "quantize") for name, _ in earlier):
            fail([], "factorize must come before prune, cluster and quantize", "move factorize right after train (or first, with a loaded model)")
        return args

    def run(self, ctx, args):
        from tfcompress import embeddings

        model = ctx.require_model()
        with ctx.float32_scope():
            model = embeddings.factorize(model, rank=args["rank"], max_error=args["max_error"], layer=args["layer"])
            report = model.tfcompress_factorize_report
            model = ctx.fit(model, {**args, "learning_rate": args["learning_rate"] or 1e-3}, default_lr=1e-3)
        notes = (
            f"{report['layer']} rank {report['rank']}: {report['params_before']:,} -> {report['params_after']:,} parameters, "
            f"SVD start error {report['relative_error']:.3f}"
        )
        return StepResult(model, [ctx.keras_record(f"factorize rank {report['rank']}", model, notes)])
