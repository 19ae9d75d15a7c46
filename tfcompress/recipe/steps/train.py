"""`train`: fit the model (built from `model.build`, or the user's own)."""

from tfcompress.recipe import schema
from tfcompress.recipe.step import Step, StepResult, register_step, training_flags


@register_step
class Train(Step):
    name = "train"
    summary = "train the model (a new one from model.build, or yours from model.load)"
    schema = dict(schema.TRAINING)
    # `compress` trains until the selection split stops improving, never fewer than the 2 epochs it
    # trained before: a set that 2 epochs underfit gets more (BENCHMARKS.md, "a character language
    # model"); on SST-2 it kept 2 or 3, and a third epoch moved the compressed file by about a point,
    # down on all the training data, up without the selection split; no selection signal tried predicts
    # which (BENCHMARKS.md, the two "Probe: ... epochs" sections). With --max-loss, 2 (cli).
    flags = training_flags("auto", min_epochs=2)

    def run(self, ctx, args):
        model = self.train(ctx, ctx.model, args)
        return StepResult(model, [ctx.keras_record("train", model)])

    @staticmethod
    def train(ctx, model, args):
        """`model` (None: a new one from `model.build`, or the user's from
        `model.load`) fitted as `args` say, in the run's precision and
        strategy (also the `auto` step's refit of the dense model)."""
        from tfcompress import precision

        with precision.policy_scope(ctx.precision), ctx.strategy.scope():
            if model is None:
                model = ctx.loaded_model() if ctx.recipe.config["model"]["load"] else ctx.build_model(ctx.recipe.config["model"]["build"])
            return ctx.fit(model, args, default_lr=2e-3)
