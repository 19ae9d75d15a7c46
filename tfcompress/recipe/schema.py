"""The recipe schema: value checks, the top-level sections, and validation
that names the file, the key (and its line) and the fix.

A check is a function `value -> bool` with an `expected` attribute that says,
in words, what a valid value is; a schema maps each key to `(check, default)`
or to a nested schema. Steps declare their own schema (`Step.schema`).
"""

import copy
import functools

__all__ = ["RecipeError", "check_section", "fail_at", "SCHEMA", "TRAINING"]


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the file, key and fix."""


def expects(text):
    """Gives a check its description: `@expects("an integer >= 1")`, or
    `expects("a mapping of ...")(mapping)` for one key. Returns a new check:
    the one given keeps its own description (it may serve other keys)."""

    def mark(check):
        @functools.wraps(check)
        def described(v):
            return check(v)

        described.expected = text
        return described

    return mark


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@expects("an integer >= 1")
def positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@expects("an integer >= 0")
def nonneg_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


@expects("an integer >= 1, or 'auto' (train until the selection metric stops improving)")
def epochs(v):
    return v == "auto" or positive_int(v)


def epochs_arg(text):
    """`--epochs` on the command line: an integer, or `auto`."""
    import argparse

    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'auto', got {text!r}")
    return value


def yes_no_arg(text):
    """A yes/no command-line value (`--refit no`) as a bool."""
    import argparse

    answers = {"yes": True, "true": True, "no": False, "false": False}
    if text.lower() not in answers:
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return answers[text.lower()]


EPOCH_CHOICES = ("one_se", "best")
"""How `epochs: auto` keeps an epoch (`choose`; `tfcompress.training.BestEpoch`), the default first."""


def choose_arg(text):
    """`--choose` on the command line: one of `EPOCH_CHOICES`."""
    import argparse

    if text not in EPOCH_CHOICES:
        raise argparse.ArgumentTypeError(f"expected {' or '.join(EPOCH_CHOICES)}, got {text!r}")
    return text


@expects("a number > 0")
def positive_number(v):
    return _number(v) and v > 0


@expects("a number >= 0")
def nonneg_number(v):
    return _number(v) and v >= 0


@expects("a number in [0, 1)")
def fraction(v):
    return _number(v) and 0 <= v < 1


@expects("a number in [0, 1]")
def unit(v):
    return _number(v) and 0 <= v <= 1


@expects("a number in (0, 1)")
def open_fraction(v):
    return _number(v) and 0 < v < 1


def choice(*options):
    """A check accepting exactly these values."""
    return expects("one of " + ", ".join(repr(o) for o in options))(lambda v: v in options)


@expects("a string or null")
def str_or_none(v):
    return v is None or isinstance(v, str)


@expects("a column name, a 0-based position, or null")
def column(v):
    return v is None or isinstance(v, str) or nonneg_int(v)


@expects("a list of strings")
def str_list(v):
    return isinstance(v, list) and all(isinstance(i, str) for i in v)


@expects("a list of two integers >= 1")
def pair(v):
    return isinstance(v, list) and len(v) == 2 and all(positive_int(i) for i in v)


@expects("'M:N' with M < N (e.g. '2:4'), or null")
def m_by_n(v):
    if v is None:
        return True
    if not isinstance(v, str) or v.count(":") != 1:
        return False
    m, n = v.split(":")
    return m.isdigit() and n.isdigit() and 0 < int(m) < int(n)


@expects("a mapping")
def mapping(v):
    return isinstance(v, dict)


def optional(check, expected):
    """`check`, or None."""
    return expects(expected)(lambda v: v is None or check(v))


TRAINING = {
    "epochs": (epochs, 1),
    "patience": (positive_int, 2),
    "max_epochs": (positive_int, 20),
    "min_epochs": (positive_int, 1),
    "monitor": (choice("loss", "accuracy"), "loss"),
    "choose": (choice(*EPOCH_CHOICES), EPOCH_CHOICES[0]),
    "refit": (choice(True, False), True),
    "batch_size": (positive_int, 128),
    "learning_rate": (optional(positive_number, "a number > 0, or null (the step's default)"), None),
    "max_steps": (optional(positive_int, "an integer >= 1, or null (the whole training set each epoch)"), None),
}
"""The arguments every training step takes."""

SCHEMA = {
    "name": (str_or_none, "compressed"),
    "seed": (nonneg_int, 0),
    "deterministic": (choice(True, False), True),
    "precision": (choice("float32", "mixed_float16", "mixed_bfloat16"), "float32"),
    "strategy": (choice("auto", "default", "one_device", "mirrored", "multi_worker"), "auto"),
    "tensorboard": (str_or_none, None),
    "data": {
        "task": (choice("classification", "language_model"), "classification"),
        "train": (str_or_none, None),
        "dev": (str_or_none, None),
        "dev_fraction": (open_fraction, 0.1),
        "selection_fraction": (optional(open_fraction, "a fraction in (0, 1), or null (0.25 for a classifier with an auto step, else 0.1)"), None),
        "format": (choice(None, "tsv", "csv", "jsonl", "folder"), None),
        "text_column": (column, None),
        "label_column": (column, None),
        "header": (choice("auto", True, False), "auto"),
        "encoding": (str_or_none, None),
        "corpus": (str_or_none, None),
        "max_chars": (optional(positive_int, "an integer >= 1, or null"), None),
        "window": (positive_int, 40),
        "stride": (positive_int, 3),
        "labels": (
            expects("a list of two or more distinct label names in the model's class order, or null")(
                lambda v: v is None or (str_list(v) and len(v) >= 2 and len(set(v)) == len(v))
            ),
            None,
        ),
    },
    "text": {
        "preprocessor": (expects("a mapping of TextPreprocessor arguments")(mapping), {}),
        "max_len": (optional(positive_int, "an integer >= 1, or null (99th percentile)"), None),
        "max_size": (expects("an integer >= 3, or null")(lambda v: v is None or (positive_int(v) and v >= 3)), 20000),
        "min_freq": (positive_int, 1),
        "tokenizer": (
            optional(
                lambda v: isinstance(v, str),
                "the path of a TextEncoder folder, a Keras Tokenizer JSON file or a vocabulary file, or null",
            ),
            None,
        ),
        "padding": (choice(None, "pre", "post"), None),
        "truncating": (choice(None, "pre", "post"), None),
    },
    "model": {
        "build": (optional(mapping, "a mapping of model builder arguments, or null"), None),
        "load": (str_or_none, None),
        "trust_code": (choice(True, False), False),
    },
    "steps": None,  # each step checks its own arguments (Step.schema)
}
"""The top-level sections of a recipe: key -> (check, default) or a nested section."""


CLASSIFIER_ARGS = {
    "embedding_dim",
    "units",
    "num_layers",
    "bidirectional",
    "dropout",
    "mask_zero",
    "embedding_vocab_size",
    "embedding_rank",
    "learning_rate",
}
LM_ARGS = {"embedding_dim", "units", "num_layers", "dropout", "learning_rate"}


def lines_of(text):
    """{key path: line} for a YAML/JSON document (for error messages)."""
    import yaml

    lines = {}

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (key.value,)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = path + (i,)
                lines[sub] = item.start_mark.line + 1
                walk(item, sub)

    try:
        walk(yaml.compose(text, Loader=yaml.SafeLoader), ())
    except yaml.YAMLError:
        pass
    return lines


def path_str(path):
    """`['steps', 0, 'train', 'epochs']` -> `steps[0].train.epochs`."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def fail_at(source, lines):
    """A `fail(path, problem, fix)` that raises a `RecipeError` naming the
    source, the line of `path` when known, and the key."""

    def fail(path, problem, fix):
        line = lines.get(tuple(path))
        where = f"{source}" + (f", line {line}" if line else "") + (f", key '{path_str(path)}'" if path else "")
        raise RecipeError(f"{where}: {problem}. Fix: {fix}")

    return fail


def check_section(values, schema, path, fail):
    """Checks `values` against `schema`; returns them with defaults filled in."""
    if not isinstance(values, dict):
        fail(path, f"expected a mapping, got {type(values).__name__}", f"write '{path_str(path)}:' followed by indented keys")
    unknown = sorted(set(values) - set(schema))
    if unknown:
        fail(path + [unknown[0]], f"unknown key {unknown[0]!r}", f"use one of: {', '.join(sorted(schema))}")
    out = {}
    for key, spec in schema.items():
        if spec is None:
            continue
        if isinstance(spec, dict):
            out[key] = check_section(values.get(key, {}) or {}, spec, path + [key], fail)
            continue
        check, default = spec
        value = values.get(key, copy.deepcopy(default))
        if not check(value):
            fail(path + [key], f"{value!r} is not valid here", f"give {getattr(check, 'expected', 'a valid value')}")
        out[key] = value
    return out
