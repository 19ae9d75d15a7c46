"""`sensitivity`: each layer pruned, rounded and clustered alone, measured on
the selection split (no fine-tuning); the table goes into the report."""

import os


from tfcompress.recipe import schema
from tfcompress.recipe.step import Step, StepResult, register_step


def _list_of(check, what):
    return schema.expects(f"a list of {what}")(lambda v: isinstance(v, list) and all(check(i) for i in v))


def _int_in(lo, hi):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


@register_step
class Sensitivity(Step):
    name = "sensitivity"
    summary = "measure each layer pruned, rounded to fewer bits and clustered alone (no fine-tuning), on the selection split"
    schema = {
        "sparsities": (_list_of(schema.open_fraction, "numbers in (0, 1)"), [0.5, 0.8, 0.9, 0.95]),
        "bits": (_list_of(_int_in(2, 16), "integers in [2, 16]"), [8, 4]),
        "clusters": (_list_of(_int_in(2, 256), "integers in [2, 256]"), [16, 8]),
        "layers": (schema.optional(schema.str_list, "a list of layer names, or null"), None),
        "max_examples": (schema.positive_int, 2000),
    }
    saves_model = False
    chooses = True

    def run(self, ctx, args):
        from tfcompress import sensitivity

        model = ctx.require_model()
        x, y, metric = ctx.selection(args["max_examples"])
        try:
            table = sensitivity.analyze(
                model, x, y, sparsities=args["sparsities"], bits=args["bits"], clusters=args["clusters"],
                layers=args["layers"], metric=metric,
            )
        except ValueError as err:
            from tfcompress.recipe.schema import RecipeError

            raise RecipeError(f"{ctx.recipe.source}, step {ctx.index} sensitivity: {err}") from None
        os.makedirs(ctx.step_dir(ctx.index, self.name), exist_ok=True)
        table.save(os.path.join(ctx.step_dir(ctx.index, self.name), "sensitivity.json"))
        plot = f"sensitivity-{ctx.index}.png"
        table.plot(os.path.join(ctx.out, plot))
        record = ctx.keras_record("sensitivity (model unchanged)", model, table.summary())
        body = f"Measured on the selection split ({metric} {table.baseline:.4f} there).\n\n{table.to_markdown()}\n![sensitivity]({plot})\n"
        return StepResult(None, [record], {f"Sensitivity (step {ctx.index})": body})
