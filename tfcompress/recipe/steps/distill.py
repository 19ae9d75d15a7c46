"""`distill`: train a smaller student on the model's soft targets."""

from tfcompress.recipe import schema
from tfcompress.recipe.schema import RecipeError
from tfcompress.recipe.step import Step, StepResult, register_step, training_flags


@register_step
class Distill(Step):
    name = "distill"
    summary = "train a new, smaller student model on the current (or trained) model's soft targets"
    schema = {
        **schema.TRAINING,
        "student": (schema.expects("a mapping of model builder arguments")(schema.mapping), {}),
        "teacher": (schema.choice("current", "trained"), "current"),
        "alpha": (schema.unit, 0.1),
        "temperature": (schema.positive_number, 2.0),
        "distillation_loss": (schema.choice("kl", "mse"), "kl"),
    }
    flags = training_flags(2)

    def validate(self, args, earlier, config, fail):
        if args["teacher"] == "trained" and not any(name == "train" for name, _ in earlier):
            fail(["teacher"], "teacher 'trained' needs a train step before it", "add a train step, or use teacher: current")
        allowed = schema.CLASSIFIER_ARGS if config["data"]["task"] == "classification" else schema.LM_ARGS
        bad = sorted(set(args["student"]) - allowed)
        if bad:
            fail(["student", bad[0]], f"unknown model argument {bad[0]!r}", f"use {', '.join(sorted(allowed))}")
        return args

    def run(self, ctx, args):
        from tfcompress import distillation, keras, precision

        teacher = ctx.checkpoint_of("train") if args["teacher"] == "trained" else ctx.require_model()
        if teacher.output_shape[-1] == 1:
            raise RecipeError(
                f"{ctx.recipe.source}: step 'distill': the teacher has one sigmoid output; the Distiller "
                "matches softmax distributions over the classes. Fix: drop the distill step, or give a "
                "teacher with one softmax output per class."
            )
        with precision.policy_scope(ctx.precision), ctx.strategy.scope():
            student = ctx.build_model({**args["student"], "learning_rate": 2e-3})
            distiller = distillation.Distiller(
                teacher, student, alpha=args["alpha"], temperature=args["temperature"], distillation_loss=args["distillation_loss"]
            )
            distiller.compile(keras.optimizers.Adam(args["learning_rate"] or 2e-3), "sparse_categorical_crossentropy", ["accuracy"])
            validation, stopping = ctx.validation(args, weights_of=distiller.student)
            arrays = ctx.subset(args)
            fit_args = dict(epochs=ctx.max_epochs(args), callbacks=[*ctx.callbacks, *stopping], verbose=ctx.verbose)
            if stopping:  # epochs: auto watches the student on the selection split (fixed epochs: no validation, as before)
                fit_args["validation_data"] = validation
            if arrays is None:  # a corpus too large to hold as windows: the teacher runs on each batch
                ds, steps = ctx.window_batches(args)
                distiller.fit(ds, steps_per_epoch=steps, **fit_args)
            else:
                distiller.fit(*arrays, batch_size=args["batch_size"], **fit_args)
        student.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"])
        return StepResult(student, [ctx.keras_record("distill -> student", student)])
