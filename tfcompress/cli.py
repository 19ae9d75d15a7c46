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
    return parser


def _cmd_demo(args, parser):
    parser.print_help()
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
