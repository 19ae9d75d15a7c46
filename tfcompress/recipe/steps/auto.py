"""`auto`: the smallest model within an accuracy budget (`tfcompress.budget`):
whole units removed first when that leaves room in the budget, then
sensitivity, per-layer plans, each fine-tuned and verified on the selection
split, backing off when over budget; the chosen plan is then refit with the
selection split back in training (`refit`), from the train step's dense model
made again on train + selection (`refit_dense`), or with `refit_from:
verified` the verified model itself is trained further on them."""

import os
import warnings

import numpy as np

from tfcompress.recipe import schema
from tfcompress.recipe.schema import yes_no_arg
from tfcompress.recipe.step import REFIT_HELP, Flag, Step, StepResult, register_step


def _cluster_choice(v):
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 256)


# Whether the rounds are verified on each held-out sentence's mean over itself and its phrases
# (SST-2, one seed: the paired standard error fell from ±1.0 to ±0.5 point; BENCHMARKS.md).
PHRASES_DEFAULT = True

# Whether the chosen plan is replayed with the selection split added to training before it is handed on.
REFIT_DEFAULT = True

# Whether that replay starts from a dense model trained again on train + selection (when one train step
# made it), rather than from the dense model the search started from, which never saw the split.
REFIT_DENSE_DEFAULT = True

# What the refit starts from: "plan" (the plan replayed, from a dense model) or "verified" (the verified
# model trained `refit_epochs` more, at the QAT rate of the fine-tune: cheaper, but on SST-2, 3 seeds,
# 0.8093 on dev against the plan's 0.8184 and no better than the verified model as it is; BENCHMARKS.md).
REFIT_FROM_DEFAULT = "plan"

# Candidates fine-tuned at most (with shrink_first, round 1 is the shrink).
ROUNDS_DEFAULT = 4

# The fractions of the embedding's rows the plans may keep, the rarest token ids sharing one row
# ("auto": ROW_FRACTIONS for a classifier whose Embedding reads integer ids, else none).
ROW_FRACTIONS = [0.75, 0.5]
ROWS_DEFAULT = "auto"


def rows_arg(text):
    """`--embedding-rows`: "auto", "all" (every row stays: []) or comma-separated fractions in (0, 1)."""
    import argparse

    if text in ("auto", "all"):
        return "auto" if text == "auto" else []
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = None
    if not values or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected auto, all, or comma-separated fractions in (0, 1) such as 0.5,0.35; got {text!r}")
    return values


def _row_fractions(rows, model, x_train, metric, latency):
    """`(fractions, why none)`: the `rows` argument resolved for this model;
    "auto" tries `ROW_FRACTIONS` only where keeping fewer rows is known to
    work (a classifier whose largest Embedding reads integer token ids)."""
    if rows != "auto":
        return [float(r) for r in rows], None
    from tfcompress import embeddings
    from tfcompress._keras import ensure_tf_keras

    if metric != "accuracy":
        return [], "a language model's table is a few dozen characters"
    if latency:
        return [], None
    table, why = embeddings.row_table(ensure_tf_keras(model, caller="auto"))
    if table is None:
        return [], why
    if not np.issubdtype(np.asarray(x_train).dtype, np.integer):
        return [], "the model reads text, not token ids, so the token counts are not known here"
    return list(ROW_FRACTIONS), None


@register_step
class Auto(Step):
    name = "auto"
    summary = (
        "the smallest model within --max-loss: whole units removed first when that costs at most shrink_share of the budget, then per-layer "
        "sparsity, clusters (and with rows, fewer embedding rows) from a sensitivity table, fine-tuned (prune, cluster, QAT) "
        "and verified on the selection split, the chosen one refit on train + selection; with --objective latency, the one with the fewest multiply-adds (whole units removed)"
    )
    schema = {
        "max_loss": (schema.optional(schema.nonneg_number, "a number >= 0 (points of accuracy, or bits/char)"), None),
        "rounds": (schema.positive_int, ROUNDS_DEFAULT),
        "margin": (schema.expects("a number >= 0 (standard errors)")(schema.nonneg_number), 1.0),
        "start": (schema.choice("front", "uniform"), "front"),
        "start_sparsity": (schema.fraction, 0.8),
        "start_clusters": (schema.expects('"fewest", null or an integer in [2, 256] that clusters lists')(lambda v: v == "fewest" or _cluster_choice(v)), "fewest"),
        "recovery": (schema.optional(schema.positive_number, "a number > 0, or null (start from start_sparsity)"), None),
        "sparsities": (schema.expects("a list of numbers in (0, 1)")(lambda v: isinstance(v, list) and v and all(schema.open_fraction(i) for i in v)), [0.5, 0.8, 0.9, 0.95]),
        "clusters": (schema.expects("a list of null (no clustering) and integers in [2, 256]")(lambda v: isinstance(v, list) and v and all(_cluster_choice(i) for i in v)), [None, 16, 8]),
        # Fractions of the embedding table's rows a plan may keep, the rarest token ids sharing one row.
        "rows": (schema.expects('"auto" or a list of numbers in (0, 1) (fractions of the embedding\'s rows to keep; [] keeps every row)')(lambda v: v == "auto" or (isinstance(v, list) and all(schema.open_fraction(i) for i in v))), ROWS_DEFAULT),
        "prune_epochs": (schema.positive_int, 2),
        "cluster_epochs": (schema.positive_int, 1),
        "quantize_epochs": (schema.positive_int, 1),
        "batch_size": (schema.positive_int, 128),
        "max_steps": schema.TRAINING["max_steps"],
        "max_examples": (schema.positive_int, 2000),
        "best_effort": (schema.choice(True, False), False),
        "objective": (schema.choice("size", "latency"), "size"),
        "start_units": (schema.open_fraction, 0.5),
        "shrink_epochs": (schema.positive_int, 2),
        "backoff": (schema.choice("local", "front"), "local"),
        "shrink_first": (schema.optional(schema.open_fraction, "a fraction in (0, 1) of the units, or null (no shrinking first)"), 0.5),
        "shrink_share": (schema.expects("a number in (0, 1]")(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1), 0.5),
        "phrases": (schema.choice(True, False), PHRASES_DEFAULT),
        "refit": (schema.choice(True, False), REFIT_DEFAULT),
        "refit_dense": (schema.choice(True, False), REFIT_DENSE_DEFAULT),
        "refit_from": (schema.choice("plan", "verified"), REFIT_FROM_DEFAULT),
        "refit_epochs": (schema.positive_int, 1),
        # None: budget.TEACHER_WEIGHT for a classifier, 0 for a language model.
        "teacher_weight": (schema.optional(schema.unit, "a number in [0, 1] (the dense model's share of each fine-tune target), or null (the default)"), None),
    }
    flags = (
        Flag("--max-loss", "max_loss", float, None, "the accuracy budget of the auto step: points of accuracy (bits/char for a language model) the compressed model may lose on the selection split"),
        Flag("--rounds", "rounds", int, ROUNDS_DEFAULT, f"fine-tuned candidates the auto step tries at most (default: {ROUNDS_DEFAULT})"),
        Flag("--margin", "margin", float, 1.0, "a candidate of the auto step keeps --max-loss only when its loss on the selection split plus this many "
             "paired standard errors does (default: 1; 0 checks the loss alone, which is optimistic)"),
        Flag("--refit", "refit", yes_no_arg, REFIT_DEFAULT, REFIT_HELP),
        Flag("--refit-from", "refit_from", str, REFIT_FROM_DEFAULT, f"what the auto step's refit starts from: plan (the chosen plan replayed from a dense model) or verified "
             f"(the verified model trained one more epoch on train + selection; it keeps its weights, zeros and clusters) (default: {REFIT_FROM_DEFAULT})"),
        Flag("--teacher-weight", "teacher_weight", float, None, "the dense model's share in the targets of each fine-tune of the auto step: each trains towards "
             "(1 - w) x label + w x the dense model's output (default: 0.5 for a classifier; 0, the labels alone, for a language model)"),
        Flag("--embedding-rows", "rows", rows_arg, ROWS_DEFAULT, "the fractions of the embedding table's rows the auto step's plans may keep, the rarest token ids "
             f"sharing one row: auto ({','.join(f'{r:g}' for r in ROW_FRACTIONS)} for a classifier that reads token ids), all (every row stays), or a list such as 0.5,0.35 (default: {ROWS_DEFAULT})"),
        Flag("--objective", "objective", str, "size", "what the auto step makes as small as the budget allows: size (the gzip size of the file) "
             "or latency (multiply-adds: whole units removed, for a faster model; the export then writes the unrolled form unless --recurrent is given)"),
    )
    chooses = True

    def validate(self, args, earlier, config, fail):
        if args["max_loss"] is None:
            fail(["max_loss"], "the auto step needs a budget", "auto: {max_loss: 0.5} (points of accuracy; bits/char for a language model), or --max-loss 0.5")
        if any(name in ("prune", "cluster", "quantize", "auto") for name, _ in earlier):
            fail([], "auto compresses a trained float model, so it cannot follow prune, cluster, quantize or another auto", "put auto right after train (or first, with a loaded model)")
        if args["teacher_weight"] and config["data"]["task"] == "language_model":
            fail(["teacher_weight"], f"teacher_weight {args['teacher_weight']:g} needs a classifier: a language model's fine-tunes train on the next characters alone", "leave teacher_weight out (or 0) for a language model")
        if args["objective"] == "latency" and args["rows"] not in ("auto", []):
            fail(["rows"], f"rows {args['rows']} with objective latency: that search removes whole units, and fewer embedding rows do not change the multiply-adds", "leave rows out (or []) with objective latency, or use objective size")
        if args["start_clusters"] not in ("fewest", None) and args["start_clusters"] not in args["clusters"]:
            fail(["start_clusters"], f"start_clusters {args['start_clusters']} is not one of clusters {args['clusters']}", f"add {args['start_clusters']} to clusters, or use \"fewest\" or null")
        return args

    def run(self, ctx, args):
        from tfcompress import budget, sensitivity

        model = ctx.require_model()
        x, y, metric = ctx.selection(args["max_examples"])
        latency = args["objective"] == "latency"
        # None: budget's per-task default (a language model's windows train on their labels alone; validate refuses a weight for one)
        teacher = budget.default_teacher_weight(metric) if args["teacher_weight"] is None else args["teacher_weight"]
        if teacher:
            ctx.log(f"[auto] fine-tunes train towards {1 - teacher:g} x label + {teacher:g} x the dense model's output (teacher_weight {teacher:g})")

        rows, why_not = _row_fractions(args["rows"], model, ctx.data.get("x_train"), metric, latency)
        if why_not:
            ctx.log(f"[auto] every row of the embedding stays: {why_not}")
        # How often each id occurs in the data the fine-tunes train on: the shared row of the rare ids is their weighted mean.
        counts = budget.token_counts(model, ctx.data["x_train"]) if rows and not latency else None

        def analyze(m):
            clusters = [c for c in args["clusters"] if c is not None]
            table = sensitivity.analyze(m, x, y, sparsities=args["sparsities"], bits=[8], clusters=clusters, rows=rows, counts=counts, metric=metric)
            ctx.log(f"[auto] sensitivity: {table.summary()}")
            return table

        train_args = {**{k: d for k, (_, d) in schema.TRAINING.items()}, "batch_size": args["batch_size"], "max_steps": args["max_steps"]}

        def fit(m, epochs, learning_rate):
            return ctx.fit(m, {**train_args, "epochs": epochs, "learning_rate": learning_rate}, default_lr=learning_rate)

        def tuner_for(base):
            # The pruning schedule's steps per epoch, of the data training sees now (more in a refit).
            steps = int(np.ceil(ctx.train_count(train_args) / args["batch_size"]))
            tune = budget.fine_tuner(
                base, fit, prune_epochs=args["prune_epochs"], cluster_epochs=args["cluster_epochs"], quantize_epochs=args["quantize_epochs"],
                steps_per_epoch=steps, shrink_epochs=args["shrink_epochs"], counts=counts,
            )

            def fine_tune(plan):
                with ctx.float32_scope():
                    return tune(plan)

            return fine_tune

        def tune_shrunk(small):
            with ctx.float32_scope():
                return fit(small, args["shrink_epochs"], 1e-3)

        # With phrase groups (SST-2: a training sentence and the phrases cut from it), each held-out
        # sentence is scored as the mean over itself and its phrases: the same sentences weigh alike,
        # and the paired standard error over those means is the error clustered by sentence.
        grouped = ctx.selection_groups(args["max_examples"]) if args["phrases"] else None
        evaluate = budget.selection_scorer(x, y, metric, grouped)

        search_args = {"margin": args["margin"], "start": args["start"], "start_sparsity": args["start_sparsity"], "start_clusters": args["start_clusters"], "recovery": args["recovery"], "clusters": args["clusters"], "backoff": args["backoff"]}
        with ctx.targets_from(model, teacher):
            if latency:
                result = budget.search_units(
                    model, tuner_for(model), evaluate, args["max_loss"], metric=metric, rounds=args["rounds"], margin=args["margin"], start_units=float(args["start_units"]), log=ctx.log
                )
            elif args["shrink_first"] is None:
                result = budget.search(model, analyze(model), tuner_for(model), evaluate, args["max_loss"], rounds=args["rounds"], log=ctx.log, **search_args)
            else:
                result = budget.search_shrunk(
                    model, tune_shrunk, analyze, tuner_for, evaluate, args["max_loss"], units=float(args["shrink_first"]), share=args["shrink_share"],
                    metric=metric, rounds=args["rounds"], log=ctx.log, **search_args,
                )
        no_refit = ctx.no_refit_reason()
        if args["refit"] and no_refit is None:
            # Two budgets may choose the same plan by different searches: the refit (the dense model built and
            # trained again, the plan replayed) must then give the same model, whatever the search drew.
            ctx.reseed()
            with ctx.training_with_selection() as count:
                data = f"train + selection ({count:,} examples)"
                if args["refit_from"] == "verified":
                    ctx.log(f"[auto] refit: the verified model ({result.chosen.plan.describe()}) trained {args['refit_epochs']} more epoch(s) on {data}")
                    with ctx.float32_scope(), ctx.targets_from(model, teacher):
                        budget.refit_verified(result, fit, data, args["refit_epochs"])
                else:
                    base, again = model, ctx.train_again_args() if args["refit_dense"] else None
                    if again is not None:
                        ctx.log(f"[auto] refit: the train step again on {data}, for the dense model the plan starts from")
                        base = ctx.train_again(again)
                        data += ", from a dense model trained on them too"
                    elif args["refit_dense"]:
                        ctx.log("[auto] refit: the steps before auto are not one train step, so the plan starts from the dense model as it came")
                    ctx.log(f"[auto] refit: {result.chosen.plan.describe()}, trained again on {data}")
                    with ctx.targets_from(base, teacher):
                        budget.refit_plan(base, result, tuner_for, tune_shrunk, data)
        elif args["refit"]:
            ctx.log(f"[auto] no refit: {no_refit}")
        if grouped is not None:
            result.examples_label = f"selection sentences, each the mean over itself and its phrases ({len(grouped[1]):,} examples)"
        table = result.table
        plot = f"auto-{ctx.index}.png"
        result.plot(os.path.join(ctx.out, plot))
        chosen = result.chosen
        notes = f"{chosen.plan.describe()}; selection loss {chosen.loss_text(result.unit)} (budget {sensitivity.format_loss(args['max_loss'], result.unit)}); {len(result.candidates)} candidates"
        if teacher:
            notes += f", each fine-tuned towards {1 - teacher:g} x label + {teacher:g} x the dense model's output (teacher_weight)"
        if result.refit_epochs:
            notes += f"; then trained {result.refit_epochs} more epoch(s) on {result.refit} (the dev figures are after that, which nothing verified)"
        elif result.refit:
            notes += f"; then refit on {result.refit} (the dev figures are the refit model's, which nothing verified)"
        if result.unresolved():
            ctx.log(f"[auto] NOTE: {result.resolution_note()}")
        meta = {"budget met": result.within_budget, "budget": result.summary(), "best effort": args["best_effort"], "refit": bool(result.refit)}
        if not result.within_budget:
            notes = "BUDGET NOT MET: " + notes
            message = (
                f"auto: no candidate kept the budget of {sensitivity.format_loss(args['max_loss'], result.unit)} in {len(result.candidates)} "
                f"round(s); handing on the one that lost least ({sensitivity.format_loss(chosen.loss, result.unit)}). Fix: a larger "
                "max_loss, more rounds, a smaller margin (standard errors added to each loss), a lower start_sparsity (start_units with objective latency: a more careful first plan), or a larger data.selection_fraction "
                "when the losses are within their ± standard errors of the budget."
            )
            ctx.log(f"[auto] WARNING: {message}")
            warnings.warn(message, stacklevel=2)
        record = ctx.keras_record(f"auto (max loss {args['max_loss']:g})", result.model, notes)
        body = f"{result.summary()}.\n\n{result.to_markdown()}\n![candidates against the budget]({plot})\n\n"
        if teacher:
            body += (
                f"Every fine-tune{' and the refit' if result.refit else ''} trained towards {1 - teacher:g} x the label + {teacher:g} x the dense model's own "
                f"output (`teacher_weight: {teacher:g}`, self-distillation), the dense model being the one each loss is measured against{' (in the refit: the dense model it starts from)' if result.refit and not result.refit_epochs else ''}.\n\n"
            )
        if table is not None:
            body += f"Sensitivity behind the plans:\n\n{table.to_markdown()}"
        return StepResult(result.model, [record], {f"Accuracy budget (step {ctx.index})": body}, meta)
