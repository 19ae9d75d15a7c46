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
    split); with a `transfer` mapping, on its transfer set too. Returns the
    report note."""
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


def _check_transfer(transfer, config, fail):
    """The `transfer` mapping, checked and with its defaults."""
    from tfcompress.distillation import transfer as tr

    if config["data"]["task"] != "classification":
        fail(["transfer"], "a transfer set is made of texts for a classifier", "drop transfer (a language model reads its corpus)")
    unknown = sorted(set(transfer) - TRANSFER_KEYS)
    if unknown:
        fail(["transfer", unknown[0]], f"unknown key {unknown[0]!r}", f"use {', '.join(sorted(TRANSFER_KEYS))}")
    out = {"size": "10x", "methods": list(tr.METHODS), "rates": {}, "max_ngram": 5, **transfer}
    size = out["size"]
    if isinstance(size, bool) or not (isinstance(size, int) and size >= 1 or isinstance(size, str)):
        fail(["transfer", "size"], f"expected a number of texts or a multiple such as 10x; got {size!r}", "size: 10x")
    if isinstance(size, str):
        try:
            tr._size(size, 1)
        except ValueError:
            fail(["transfer", "size"], f"expected a multiple such as 10x; got {size!r}", "size: 10x")
    methods = out["methods"]
    if not isinstance(methods, list) or not methods or any(m not in tr.METHODS for m in methods):
        fail(["transfer", "methods"], f"expected a list of {', '.join(tr.METHODS)}; got {methods!r}", "methods: [mask, pos_swap, ngram]")
    rates = out["rates"]
    if not isinstance(rates, dict):
        fail(["transfer", "rates"], f"expected a mapping of method to probability; got {rates!r}", "rates: {mask: 0.1, ngram: 0.25}")
    for name, value in rates.items():
        if name not in tr.METHODS or not schema.unit(value):
            fail(["transfer", "rates", str(name)], f"expected a method ({', '.join(tr.METHODS)}) and a probability in [0, 1]; got {name}: {value!r}", "rates: {mask: 0.1}")
    if isinstance(out["max_ngram"], bool) or not isinstance(out["max_ngram"], int) or out["max_ngram"] < 1:
        fail(["transfer", "max_ngram"], f"expected an integer >= 1; got {out['max_ngram']!r}", "max_ngram: 5")
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
