"""`distill`: train a smaller student on the model's soft targets."""

from tfcompress.recipe import schema
from tfcompress.recipe.schema import RecipeError
from tfcompress.recipe.step import Flag, Step, StepResult, register_step, training_flags


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
        "transfer": (schema.optional(schema.mapping, "a mapping such as {size: 10x, methods: [mask, pos_swap, ngram]}, or null"), None),
    }
    flags = (
        *training_flags(2),
        Flag("--transfer", "transfer", lambda v: {"size": int(v) if v.strip().isdigit() else v}, None,
             "distill also on a transfer set of this size made from the training texts (10x, or a number of texts; "
             "masking, part-of-speech swaps, WordNet synonyms, n-grams), labelled by the teacher"),
    )

    def validate(self, args, earlier, config, fail):
        if args["teacher"] == "trained" and not any(name == "train" for name, _ in earlier):
            fail(["teacher"], "teacher 'trained' needs a train step before it", "add a train step, or use teacher: current")
        allowed = schema.CLASSIFIER_ARGS if config["data"]["task"] == "classification" else schema.LM_ARGS
        bad = sorted(set(args["student"]) - allowed)
        if bad:
            fail(["student", bad[0]], f"unknown model argument {bad[0]!r}", f"use {', '.join(sorted(allowed))}")
        if args["transfer"] is not None:
            args = {**args, "transfer": _check_transfer(args["transfer"], config, fail)}
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
            note = fit_distiller(ctx, args, distiller, transfer=args["transfer"])
        student.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"])
        return StepResult(student, [ctx.keras_record("distill -> student", student, note)])


def fit_distiller(ctx, args, distiller, transfer=None):
    """Fits a compiled `Distiller` on the step's training examples, as the
    step's `epochs` say (with `auto`, the student is watched on the selection
    split, and the chosen epoch count refit on train + selection: see
    `RunContext.fit_auto`); with a `transfer` mapping, on its transfer set
    too. Returns the report note."""
    notes = []
    ctx.fit_auto(distiller, args, lambda a: notes.append(_fit_distiller_once(ctx, a, distiller, transfer)))
    return notes[-1]


def _fit_distiller_once(ctx, args, distiller, transfer):
    validation, stopping = ctx.validation(args, weights_of=distiller.student)
    arrays = ctx.subset(args)
    fit_args = dict(epochs=ctx.max_epochs(args), callbacks=[*ctx.callbacks, *stopping], verbose=ctx.verbose)
    if stopping:  # epochs: auto watches the student on the selection split (fixed epochs: no validation, as before)
        fit_args["validation_data"] = validation
    if arrays is None:  # a corpus too large to hold as windows: the teacher runs on each batch
        ds, steps = ctx.window_batches(args)
        distiller.fit(ds, steps_per_epoch=steps, **fit_args)
        return ""
    unlabeled, note = _transfer_inputs(ctx, arrays[0], transfer) if transfer else (None, "")
    distiller.fit(*arrays, unlabeled=unlabeled, batch_size=args["batch_size"], **fit_args)
    return note


TRANSFER_KEYS = {"size", "methods", "rates", "max_ngram"}


TRANSFER_FIXES = {
    "size": "size: 10x (ten times the training texts) or a number of texts",
    "methods": "methods: [mask, pos_swap, ngram, wordnet_synonym] or some of them",
    "rates": "rates: {mask: 0.1, pos_swap: 0.1, wordnet_synonym: 0.1, ngram: 0.25} (the first three at most 1 together)",
    "max_ngram": "max_ngram: 5",
}


def _check_transfer(transfer, config, fail):
    """The `transfer` mapping, checked (by `transfer.check_options`, as
    `transfer_set` checks it) and with its defaults."""
    from tfcompress.distillation import transfer as tr

    if config["data"]["task"] != "classification":
        fail(["transfer"], "a transfer set is made of texts for a classifier", "drop transfer (a language model reads its corpus)")
    unknown = sorted(set(transfer) - TRANSFER_KEYS)
    if unknown:
        fail(["transfer", unknown[0]], f"unknown key {unknown[0]!r}", f"use {', '.join(sorted(TRANSFER_KEYS))}")
    out = {"size": "10x", "methods": list(tr.METHODS), "rates": {}, "max_ngram": 5, **transfer}
    try:
        tr.check_options(out["size"], out["methods"], out["rates"], out["max_ngram"], n_name="size")
    except tr.TransferOptionError as err:
        key = "size" if err.option == "n" else err.option
        fail(["transfer", key], str(err).rstrip("."), TRANSFER_FIXES[key])
    return out


def _transfer_inputs(ctx, x, transfer):
    """The transfer set of the step's training rows, encoded like them:
    `(ids, report note)`. Made from the rows' tokens (after preprocessing;
    the selection split is not among them), and encoded token by token."""
    from tfcompress import distillation

    vocab = ctx.encoder.vocabulary
    texts = [" ".join(vocab.decode(row)) for row in x]
    made = distillation.transfer_set(
        texts, transfer["size"], methods=transfer["methods"], rates=transfer["rates"], max_ngram=transfer["max_ngram"],
        seed=ctx.recipe.config["seed"], mask_token=vocab.oov_token or vocab.tokens[0], log=ctx.log,
    )
    ids = ctx.encoder.encode_tokens([t.split() for t in made])
    seconds = f" in {made.seconds:.0f} s" if made.seconds else " (cached)"
    note = f"transfer set: {len(made):,} texts ({', '.join(transfer['methods'])}) for {len(x):,} labelled{seconds}"
    ctx.log(f"[distill] {note}")
    return ids, note
