"""The `tfcompress` command (also `python -m tfcompress`)."""

import argparse
import importlib.metadata
import sys


def _versions():
    names = ["tfcompress", "tensorflow", "tf-keras", "tensorflow-model-optimization", "nltk"]
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return parts[0] + " (" + ", ".join(parts[1:]) + ")"


class _Version(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_versions())
        parser.exit()


def _step_flags():
    """The command-line flags the registered steps declare, each flag once."""
    from tfcompress import recipe

    seen = {}
    for step in recipe.registered_steps():
        for flag in step.flags:
            seen.setdefault(flag.flag, flag)
    return list(seen.values())


def _steps_epilog():
    from tfcompress import recipe

    width = max(len(s.name) for s in recipe.registered_steps())
    lines = ["steps (--steps, or the steps: list of a recipe):"]
    lines += [f"  {s.name:<{width}}  {s.summary}" for s in recipe.registered_steps()]
    return "\n".join(lines)


def build_parser():
    from tfcompress import recipe

    parser = argparse.ArgumentParser(
        prog="tfcompress",
        description=(
            "Make Keras text models (LSTMs first) smaller and faster: prune, "
            "quantization-aware train, distil, and export verified TFLite files."
        ),
    )
    parser.add_argument(
        "--version", action=_Version, help="print the versions of tfcompress and its stack"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="show the whole suite on built-in data (no files, no network)",
        description=(
            "Train a character LSTM language model on Python's own documentation, prune it, "
            "quantization-aware train it, distil a smaller student, export TFLite files, and "
            "write a report. It times a training update first and sizes its training to end in about "
            "4 minutes on this machine (--minutes); --quick about one."
        ),
    )
    demo.add_argument("--quick", action="store_true", help="a smaller model, about a minute")
    demo.add_argument(
        "--minutes",
        type=float,
        help="time budget (default: 4, with --quick 1): a training update is timed first and the training sized to fit this machine",
    )
    demo.add_argument("--out", default="tfcompress-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="print only the final table and samples")
    demo.set_defaults(func=_cmd_demo)

    compress = sub.add_parser(
        "compress",
        help="compress a text classifier for your data (or your saved model)",
        description=(
            "Run a compression recipe on your labelled texts: train until the loss on a selection split "
            "carved from the training data stops improving (unless --model is given; --epochs 2 for a fixed "
            "count), prune, quantization-aware train, export TFLite. Give a recipe file for full control. "
            "The output folder gets the .tflite, its deployment files and a report; an "
            "interrupted run resumes where it stopped."
        ),
        epilog=_steps_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compress.add_argument("data", nargs="?", help="training data: .tsv/.csv/.jsonl file or a folder per label")
    compress.add_argument("--recipe", help="a YAML or JSON recipe (see tfcompress.recipe)")
    compress.add_argument("--dev", help="dev data (default: 10%% of the training data)")
    compress.add_argument(
        "--model",
        help="your trained tf_keras/Keras 3 classifier (.keras/.h5/SavedModel); give --tokenizer unless it "
        "starts with a TextVectorization layer",
    )
    compress.add_argument(
        "--tokenizer",
        help="the tokenizer your model was trained with: a Keras Tokenizer JSON (tokenizer.to_json()), a "
        "vocabulary file (TextVectorization order: one token per line, or a JSON list) or a tfcompress TextEncoder folder",
    )
    compress.add_argument(
        "--padding", choices=["pre", "post"], help="how your ids were padded (default: the tokenizer's usual: pre for a Keras Tokenizer, post for TextVectorization)"
    )
    compress.add_argument("--truncating", choices=["pre", "post"], help="which end long texts were cut at (default: as --padding's default)")
    compress.add_argument(
        "--labels", help="label names in your model's class order, comma-separated (default: sorted, numerically if integers)"
    )
    compress.add_argument(
        "--trust-model-code",
        action="store_true",
        help="run code stored in the model file (Lambda layers, custom objects); only for files you trust",
    )
    compress.add_argument("--out", default="tfcompress-out", help="output folder (default: %(default)s)")
    compress.add_argument("--text-column", help="text column name or 0-based position")
    compress.add_argument("--label-column", help="label column name or 0-based position")
    compress.add_argument("--format", choices=["tsv", "csv", "jsonl", "folder"], help="data format (default: from the extension)")
    compress.add_argument(
        "--steps",
        default=None,
        help=f"comma-separated steps from the list below (default: {','.join(recipe.COMPRESS_STEPS)}; without train when --model is given)",
    )
    from tfcompress.recipe.schema import choose_arg, yes_no_arg

    metavars = {yes_no_arg: "{yes,no}", choose_arg: "{one_se,best}"}
    for flag in _step_flags():
        compress.add_argument(flag.flag, type=flag.type, default=None, help=flag.help, metavar=metavars.get(flag.type))
    compress.add_argument("--max-len", type=int, help="sequence length (default: 99th percentile)")
    compress.add_argument(
        "--best-effort",
        action="store_true",
        help="with --max-loss: exit 0 even when no candidate kept the budget (the report still says so)",
    )
    compress.add_argument("--restart", action="store_true", help="discard a previous run in --out")
    compress.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs: every step's training curves, pruning sparsity per layer, the report's figures")
    compress.add_argument("--quiet", action="store_true", help="print nothing but errors (default: a progress bar on a terminal, one line per epoch otherwise)")
    compress.set_defaults(func=_cmd_compress)

    evaluate = sub.add_parser(
        "evaluate",
        help="check a .tflite file against labelled data",
        description=(
            "Evaluate a .tflite classifier written by tfcompress on labelled texts, using the "
            "deployment files its NAME.json points to (NAME.preprocessing.json, NAME.vocab.txt)."
        ),
    )
    evaluate.add_argument("tflite", help="the .tflite file")
    evaluate.add_argument("data", help="labelled data (.tsv/.csv/.jsonl/folder)")
    evaluate.add_argument("--reference", help="the Keras model to compare with")
    evaluate.add_argument(
        "--trust-model-code",
        action="store_true",
        help="run code stored in the reference model file (Lambda layers, custom objects); only for files you trust",
    )
    evaluate.add_argument("--text-column")
    evaluate.add_argument("--label-column")
    evaluate.add_argument(
        "--labels", help="class names in the model's output order, comma-separated (when the file's JSON stores none)"
    )
    evaluate.add_argument("--format", choices=["tsv", "csv", "jsonl", "folder"])
    evaluate.add_argument("--runs", type=int, default=200, help="latency runs (default: %(default)s)")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.set_defaults(func=_cmd_evaluate)

    report = sub.add_parser("report", help="re-render a report folder (Markdown and plot from report.json)")
    report.add_argument("folder")
    report.set_defaults(func=_cmd_report)

    text = sub.add_parser("text", help="text utilities (NLTK data)")
    text_sub = text.add_subparsers(dest="text_command", metavar="TEXT_COMMAND", required=True)
    download = text_sub.add_parser(
        "download",
        help="download NLTK corpora (needs network)",
        description=(
            "Download the NLTK corpora tfcompress can use: punkt_tab (word_tokenize), "
            "stopwords, wordnet (lemmatisation, synonyms), averaged_perceptron_tagger_eng (part of speech, "
            "for distillation.transfer_set). Needs network access; nothing else in "
            "tfcompress downloads. Offline, copy an nltk_data folder and set NLTK_DATA."
        ),
    )
    download.add_argument(
        "resources",
        nargs="*",
        metavar="RESOURCE",
        help="punkt_tab, stopwords, wordnet, averaged_perceptron_tagger_eng (default: all four)",
    )
    download.add_argument(
        "--dir",
        help="where to put them (default: the first folder in NLTK_DATA, else NLTK's default)",
    )
    download.set_defaults(func=_cmd_text_download)
    return parser


def _cmd_demo(args, parser):
    from tfcompress.demo import run_demo

    run_demo(args.out, quick=args.quick, quiet=args.quiet, minutes=args.minutes)
    return 0


BUDGET_TRAIN_EPOCHS = 2
"""The train step's epochs with `--max-loss` (without it: `auto`)."""


def _column(value):
    return int(value) if value is not None and value.isdigit() else value


def _command_config(args, parser):
    """The recipe (as a dict) that `compress DATA --flags` runs."""
    from tfcompress import recipe

    if not args.data:
        parser.error("give the training DATA file or folder, or --recipe FILE")
    default = recipe.BUDGET_STEPS if args.max_loss is not None else recipe.COMPRESS_STEPS
    default = [n for n in default if not (args.model and n == "train")]
    steps = args.steps.split(",") if args.steps else default
    unknown = [s for s in steps if recipe.get_step(s) is None]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(recipe.step_names())}")
    if args.max_loss is not None and "auto" not in steps:
        parser.error("--max-loss is the budget of the auto step: leave --steps out, or include auto (e.g. --steps train,auto,export)")
    step_args = {}
    for name in steps:
        given = {f.key: getattr(args, _dest(f.flag)) for f in recipe.get_step(name).flags}
        step_args[name] = {f.key: given[f.key] if given[f.key] is not None else f.default for f in recipe.get_step(name).flags}
    if args.max_loss is not None and "train" in step_args and args.epochs is None:
        # the budget's dense model trains the 2 epochs the --max-loss figures were measured with: the search,
        # its refit and the dense model's own refit already cost up to 3x the fixed recipe's time (BENCHMARKS.md)
        step_args["train"]["epochs"] = BUDGET_TRAIN_EPOCHS
    if "auto" in step_args:
        step_args["auto"]["best_effort"] = args.best_effort
        if step_args["auto"]["objective"] == "latency" and "export" in step_args and args.recurrent is None:
            # a faster model wants the faster stateless form: the default loop pays a fixed cost per
            # time step that fewer units do not remove (BENCHMARKS.md, "Faster: whole units removed")
            step_args["export"]["recurrent"] = "unrolled"
    config = {
        "data": {
            "train": args.data,
            "dev": args.dev,
            "format": args.format,
            "text_column": _column(args.text_column),
            "label_column": _column(args.label_column),
            "labels": args.labels.split(",") if args.labels else None,
        },
        "text": {"max_len": args.max_len, "tokenizer": args.tokenizer, "padding": args.padding, "truncating": args.truncating},
        "model": {"load": args.model, "trust_code": args.trust_model_code} if args.model else {},
        "steps": [{s: dict(step_args[s])} for s in steps],
    }
    return config


def _cmd_compress(args, parser):
    from tfcompress import recipe

    if args.recipe:
        if args.data:
            parser.error("give either DATA or --recipe (the recipe names its data)")
        plan = recipe.Recipe.load(args.recipe)
    else:
        plan = recipe.Recipe.from_dict(_command_config(args, parser), source="command line", base_dir=".")
    log = (lambda *_: None) if args.quiet else print
    report = recipe.run(plan, args.out, restart=args.restart, log=log, verbose=0 if args.quiet else None, tensorboard=args.tensorboard)
    if report.meta.get("budget met") is False and not (args.best_effort or report.meta.get("best effort")):
        print(
            f"tfcompress compress: the accuracy budget was NOT met: {report.meta['budget']}. The files in {args.out} "
            "hold the candidate that lost least. Fix: a larger --max-loss or more --rounds; --best-effort accepts it.",
            file=sys.stderr,
        )
        return 3
    return 0


def _dest(flag):
    return flag.lstrip("-").replace("-", "_")


def _cmd_evaluate(args, parser):
    import json
    import os

    from tfcompress import export, load_model, text

    from tfcompress._io import recover_set

    folder = os.path.dirname(os.path.abspath(args.tflite))
    stem = os.path.splitext(os.path.basename(args.tflite))[0]
    meta_path = os.path.join(folder, stem + ".json")
    recover_set(folder, stem)  # finish a set a killed export was writing
    meta = {}
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    labels = meta.get("labels")
    # Files written without labels= carry the class ids as names ("0", "1", ...).
    ids_only = str(meta.get("labels_source", "")).startswith("class ids")
    given = args.labels.split(",") if args.labels else None
    if ids_only and given:
        if len(given) != len(labels):
            parser.error(f"--labels names {len(given)} classes but {args.tflite} has {len(labels)} outputs.")
        labels = None
    if labels and given and given != labels:
        parser.error(f"--labels {args.labels} differs from the class names stored in {meta_path}: {','.join(labels)}")
    labels = labels or given
    if not labels:
        parser.error(
            f"{meta_path if os.path.exists(meta_path) else args.tflite}: no class names are stored with this "
            "file, so the labels in DATA cannot be matched to the model's outputs (ids taken from DATA shift "
            "when a class is missing there). Fix: pass --labels NAME,NAME,... in the model's output order, or "
            "export with to_tflite(..., labels=[...]) (tfcompress compress stores them)."
        )
    encoder = _encoder_beside(args.tflite, folder, meta, parser)
    try:
        data = text.load_texts(
            args.data,
            format=args.format,
            text_column=_column(args.text_column),
            label_column=_column(args.label_column),
            label_names=labels,
        )
    except ValueError as err:
        if not ids_only:
            raise
        parser.error(
            f"{meta_path}: the file was exported without class names, so its labels are the class ids "
            f"{','.join(labels)}, and DATA's labels are not ({err}). Fix: pass --labels NAME,NAME,... in the "
            "model's output order, or export with to_tflite(..., labels=[...])."
        )
    reference = load_model(args.reference, safe_mode=not args.trust_model_code) if args.reference else None
    result = export.evaluate(args.tflite, (encoder(data.texts), data.labels), reference=reference, latency_runs=args.runs, verbose=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def _encoder_beside(tflite, folder, meta, parser):
    """The TextEncoder a .tflite file's NAME.json (`meta`) points to (files
    of older versions: preprocessing.json in the folder)."""
    import os

    from tfcompress import text
    from tfcompress._io import file_sha256

    pointer = meta.get("preprocessing")
    if pointer:
        for name, digest in (meta.get("sha256") or {}).items():
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                parser.error(f"{path} is missing: {meta['file']} needs it. Fix: copy the whole set of files, or export again.")
            if file_sha256(path) != digest:
                parser.error(
                    f"{path} is not the file {os.path.splitext(tflite)[0]}.json was written with (its SHA-256 "
                    "differs): the deployment files do not belong together. Fix: export the model again."
                )
        return text.TextEncoder.load(os.path.join(folder, pointer))
    if os.path.exists(os.path.join(folder, "preprocessing.json")):
        return text.TextEncoder.load(os.path.join(folder, "preprocessing.json"))
    parser.error(
        f"no preprocessing for {tflite}: its NAME.json names none and there is no preprocessing.json beside "
        "it. Fix: export with tfcompress.export.to_tflite(..., encoder=...) or tfcompress compress."
    )


def _cmd_report(args, parser):
    from tfcompress.report import Report

    report = Report.load(args.folder)
    written = report.save(args.folder)
    print(report.to_text())
    print("\nwritten: " + ", ".join(written))
    return 0


def _cmd_text_download(args, parser):
    from tfcompress.text import nltk_data

    resources = args.resources or list(nltk_data.RESOURCES)
    unknown = [r for r in resources if r not in nltk_data.RESOURCES]
    if unknown:
        parser.error(
            f"unknown resource(s) {', '.join(unknown)}; choose from {', '.join(nltk_data.RESOURCES)}"
        )
    results = nltk_data.download(resources, directory=args.dir, quiet=True)
    failed = [r for r, ok in results.items() if not ok]
    for resource, ok in results.items():
        print(f"{resource}: {'downloaded' if ok else 'FAILED'}")
    if failed:
        print(
            f"Could not download {', '.join(failed)}: this needs network access to NLTK's "
            "data server (raw.githubusercontent.com). Offline, copy an nltk_data folder "
            "holding them from another machine and set NLTK_DATA to it.",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    import logging

    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)  # keep the command's own progress readable
    from tfcompress import ConversionError, UnsafeModelError
    from tfcompress.export import ConversionCrashed, TFLiteConversionError
    from tfcompress.recipe import RecipeError
    from tfcompress.text import DataFormatError, MissingNLTKData, TokenizerError

    try:
        return args.func(args, parser)
    except (
        RecipeError,
        DataFormatError,
        MissingNLTKData,
        FileNotFoundError,
        UnsafeModelError,
        TokenizerError,
        ConversionError,
        TFLiteConversionError,
        ConversionCrashed,
    ) as err:
        print(f"tfcompress {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
