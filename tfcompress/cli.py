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


def build_parser():
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
        description="Show the whole suite on built-in data (no files, no network).",
    )
    demo.set_defaults(func=_cmd_demo)

    text = sub.add_parser("text", help="text utilities (NLTK data)")
    text_sub = text.add_subparsers(dest="text_command", metavar="TEXT_COMMAND", required=True)
    download = text_sub.add_parser(
        "download",
        help="download NLTK corpora (needs network)",
        description=(
            "Download the NLTK corpora tfcompress can use: punkt_tab (word_tokenize), "
            "stopwords, wordnet (lemmatisation). Needs network access; nothing else in "
            "tfcompress downloads. Offline, copy an nltk_data folder and set NLTK_DATA."
        ),
    )
    download.add_argument(
        "resources",
        nargs="*",
        metavar="RESOURCE",
        help="punkt_tab, stopwords, wordnet (default: all three)",
    )
    download.add_argument(
        "--dir",
        help="where to put them (default: the first folder in NLTK_DATA, else NLTK's default)",
    )
    download.set_defaults(func=_cmd_text_download)
    return parser


def _cmd_demo(args, parser):
    parser.print_help()
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
    return args.func(args, parser)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
