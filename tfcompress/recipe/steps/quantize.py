"""`quantize`: quantization-aware training (8-bit weights and activations)."""

from tfcompress.recipe import schema
from tfcompress.recipe.step import Step, StepResult, register_step, training_flags


@register_step
class Quantize(Step):
    name = "quantize"
    summary = "quantization-aware training, 8-bit (keeps the zeros of a pruned model)"
    schema = {
        **schema.TRAINING,
        "skip": (schema.str_list, []),
        "preserve_sparsity": (schema.choice("auto", True, False), "auto"),
    }
    flags = training_flags(1)

    def run(self, ctx, args):
        from tfcompress import quantization

        model = ctx.require_model()
        with ctx.float32_scope():
            model = quantization.quantize(model, skip=args["skip"] or None, preserve_sparsity=args["preserve_sparsity"])
            model = ctx.fit(model, {**args, "learning_rate": args["learning_rate"] or 5e-4}, default_lr=5e-4)
        kept = model.tfcompress_quantization_report["preserve_sparsity"]
        return StepResult(model, [ctx.keras_record("quantize (8-bit QAT)", model, "sparsity kept" if kept else "")])
