"""`train`: fit the model (built from `model.build`, or the user's own)."""

from tfcompress.recipe import schema
from tfcompress.recipe.step import Step, StepResult, register_step, training_flags


@register_step
class Train(Step):
    name = "train"
    summary = "train the model (a new one from model.build, or yours from model.load)"
    schema = dict(schema.TRAINING)
    flags = training_flags(2)
    learning_rate = 2e-3
    """Adam's rate when the step's `learning_rate` is not given."""

    def run(self, ctx, args):
        from tfcompress import precision

        with precision.policy_scope(ctx.precision), ctx.strategy.scope():
            model = ctx.model
            if model is None:
                model = ctx.loaded_model() if ctx.recipe.config["model"]["load"] else ctx.build_model(ctx.recipe.config["model"]["build"])
            model = ctx.fit(model, args, default_lr=self.learning_rate)
        return StepResult(model, [ctx.keras_record("train", model)])
