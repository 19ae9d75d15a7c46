"""Declarative compression recipes: train -> prune -> quantize -> distill -> export.

A recipe is a YAML or JSON file (or the equivalent dict / `Recipe` object)::

    name: sentiment
    seed: 0
    data:
      train: data/train.tsv          # TSV, CSV, JSONL or a folder per label
      dev: data/dev.tsv              # or dev_fraction: 0.1
      text_column: sentence
      label_column: label
    text:
      max_len: 64
      preprocessor: {tokenizer: regexp, digits: zero}
    model:
      build: {embedding_dim: 64, units: 64}     # or load: my_model.keras
    precision: float32               # mixed_float16 for the training steps on a GPU
    strategy: auto
    steps:
      - train: {epochs: 2}
      - prune: {target_sparsity: 0.8, epochs: 2}
      - quantize: {epochs: 1}
      - export: {modes: [dynamic, float32]}

Each step works on the model the previous step produced (`distill` trains a new
student from it). `data.task: language_model` with `data.corpus` (a text file,
or `builtin`, Python's own documentation) trains a character language model
instead; `tfcompress demo` is such a recipe.

Everything is checked before any training starts: unknown keys, wrong types and
impossible values are refused with the file, the key (and line), and the fix.

`run(recipe, out)` writes, into `out`, the `.tflite` file(s), their deployment
files and `report.json`/`.md`/`.png`. Each finished step is checkpointed under
`out/.run/`; a run that is killed and started again resumes after the last
finished step and produces the same outputs (seeds are fixed per step and op
determinism is on). Every file is written completely or not at all.
"""

import copy
import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import time

import numpy as np

__all__ = ["Recipe", "RecipeError", "run", "STEPS", "demo_recipe"]

STEPS = ("train", "prune", "quantize", "distill", "export")


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the file, key and fix."""


# --------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _nonneg_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _positive_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _fraction(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1


def _unit(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1


def _open_fraction(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1


def _choice(*options):
    def check(v):
        return v in options

    check.expected = "one of " + ", ".join(repr(o) for o in options)
    return check


def _str_or_none(v):
    return v is None or isinstance(v, str)


def _column(v):
    return v is None or isinstance(v, str) or _nonneg_int(v)


def _str_list(v):
    return isinstance(v, list) and all(isinstance(i, str) for i in v)


def _pair(v):
    return isinstance(v, list) and len(v) == 2 and all(_positive_int(i) for i in v)


def _m_by_n(v):
    if v is None:
        return True
    if not isinstance(v, str) or v.count(":") != 1:
        return False
    m, n = v.split(":")
    return m.isdigit() and n.isdigit() and 0 < int(m) < int(n)


_positive_int.expected = "an integer >= 1"
_nonneg_int.expected = "an integer >= 0"
_positive_number.expected = "a number > 0"
_fraction.expected = "a number in [0, 1)"
_unit.expected = "a number in [0, 1]"
_open_fraction.expected = "a number in (0, 1)"
_str_or_none.expected = "a string or null"
_column.expected = "a column name, a 0-based position, or null"
_str_list.expected = "a list of strings"
_pair.expected = "a list of two integers >= 1"
_m_by_n.expected = "'M:N' with M < N (e.g. '2:4'), or null"

def _learning_rate(v):
    return v is None or _positive_number(v)


_learning_rate.expected = "a number > 0, or null (the step's default)"

def _max_steps(v):
    return v is None or _positive_int(v)


_max_steps.expected = "an integer >= 1, or null (the whole training set each epoch)"

_TRAINING = {
    "epochs": (_positive_int, 1),
    "batch_size": (_positive_int, 128),
    "learning_rate": (_learning_rate, None),
    "max_steps": (_max_steps, None),
}

SCHEMA = {
    "name": (_str_or_none, "compressed"),
    "seed": (_nonneg_int, 0),
    "deterministic": (_choice(True, False), True),
    "precision": (_choice("float32", "mixed_float16", "mixed_bfloat16"), "float32"),
    "strategy": (_choice("auto", "default", "one_device", "mirrored", "multi_worker"), "auto"),
    "data": {
        "task": (_choice("classification", "language_model"), "classification"),
        "train": (_str_or_none, None),
        "dev": (_str_or_none, None),
        "dev_fraction": (_open_fraction, 0.1),
        "format": (_choice(None, "tsv", "csv", "jsonl", "folder"), None),
        "text_column": (_column, None),
        "label_column": (_column, None),
        "header": (_choice("auto", True, False), "auto"),
        "encoding": (_str_or_none, None),
        "corpus": (_str_or_none, None),
        "max_chars": (lambda v: v is None or _positive_int(v), None),
        "window": (_positive_int, 40),
        "stride": (_positive_int, 3),
        "labels": (lambda v: v is None or (_str_list(v) and len(v) >= 2 and len(set(v)) == len(v)), None),
    },
    "text": {
        "preprocessor": (lambda v: isinstance(v, dict), {}),
        "max_len": (lambda v: v is None or _positive_int(v), None),
        "max_size": (lambda v: v is None or _positive_int(v), 20000),
        "min_freq": (_positive_int, 1),
        "tokenizer": (_str_or_none, None),
        "padding": (_choice(None, "pre", "post"), None),
        "truncating": (_choice(None, "pre", "post"), None),
    },
    "model": {
        "build": (lambda v: v is None or isinstance(v, dict), None),
        "load": (_str_or_none, None),
        "trust_code": (_choice(True, False), False),
    },
    "steps": None,  # validated separately
}

STEP_SCHEMA = {
    "train": dict(_TRAINING),
    "prune": {
        **_TRAINING,
        "target_sparsity": (_fraction, 0.8),
        "schedule": (_choice("auto", "constant", "polynomial"), "auto"),
        "structure": (_m_by_n, None),
        "block_size": (_pair, [1, 1]),
        "layers": (lambda v: v is None or _str_list(v), None),
    },
    "quantize": {
        **_TRAINING,
        "skip": (_str_list, []),
        "preserve_sparsity": (_choice("auto", True, False), "auto"),
    },
    "distill": {
        **_TRAINING,
        "student": (lambda v: isinstance(v, dict), {}),
        "teacher": (_choice("current", "trained"), "current"),
        "alpha": (_unit, 0.1),
        "temperature": (_positive_number, 2.0),
        "distillation_loss": (_choice("kl", "mse"), "kl"),
    },
    "export": {
        "name": (lambda v: v is None or (isinstance(v, str) and v.replace("-", "").replace("_", "").isalnum()), None),
        "modes": (lambda v: isinstance(v, list) and v and all(m in ("float32", "float16", "dynamic", "int8") for m in v), ["dynamic"]),
        "representative_samples": (_positive_int, 300),
        "sparse": (_choice("auto", True, False), "auto"),
        "latency_runs": (_nonneg_int, 200),
    },
}
STEP_SCHEMA["prune"]["schedule"][0].expected = "one of 'auto', 'constant', 'polynomial'"
STEP_SCHEMA["export"]["name"][0].expected = "a file stem of letters, digits, '-' and '_', or null"
STEP_SCHEMA["export"]["modes"][0].expected = "a non-empty list of 'float32', 'float16', 'dynamic', 'int8'"
SCHEMA["text"]["preprocessor"][0].expected = "a mapping of TextPreprocessor arguments"
SCHEMA["text"]["max_len"][0].expected = "an integer >= 1, or null (99th percentile)"
SCHEMA["text"]["max_size"][0].expected = "an integer >= 3, or null"
SCHEMA["data"]["max_chars"][0].expected = "an integer >= 1, or null"
SCHEMA["data"]["labels"][0].expected = "a list of two or more distinct label names in the model's class order, or null"
SCHEMA["text"]["tokenizer"][0].expected = (
    "the path of a TextEncoder folder, a Keras Tokenizer JSON file or a vocabulary file, or null"
)
SCHEMA["model"]["build"][0].expected = "a mapping of model builder arguments, or null"
STEP_SCHEMA["distill"]["student"][0].expected = "a mapping of model builder arguments"
STEP_SCHEMA["prune"]["layers"][0].expected = "a list of layer names or class names, or null"

_CLASSIFIER_ARGS = {
    "embedding_dim",
    "units",
    "num_layers",
    "bidirectional",
    "dropout",
    "mask_zero",
    "embedding_vocab_size",
    "learning_rate",
}
_LM_ARGS = {"embedding_dim", "units", "num_layers", "dropout", "learning_rate"}


def _lines_of(text):
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


def _path_str(path):
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class Recipe:
    """A validated recipe. Build it with `Recipe.load(path)` or `Recipe.from_dict(d)`.

    `recipe.config` is the full configuration with every default filled in;
    `recipe.steps` is the list of `(step, arguments)` pairs.
    """

    def __init__(self, config, source="<recipe>", base_dir="."):
        self.config = config
        self.source = source
        self.base_dir = base_dir

    @property
    def steps(self):
        return [(next(iter(s)), s[next(iter(s))]) for s in self.config["steps"]]

    @classmethod
    def load(cls, path):
        """Reads and validates a YAML or JSON recipe file."""
        import yaml

        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise RecipeError(f"{path}: no such recipe file.") from None
        try:
            data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        except json.JSONDecodeError as err:
            raise RecipeError(f"{path}, line {err.lineno}: invalid JSON ({err.msg}).") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark else ""
            raise RecipeError(f"{path}{where}: invalid YAML ({getattr(err, 'problem', err)}).") from None
        return cls.from_dict(data, source=path, base_dir=os.path.dirname(os.path.abspath(path)), lines=_lines_of(text))

    @classmethod
    def from_dict(cls, data, source="<dict>", base_dir=".", lines=None):
        """Validates a recipe given as a dict; fills in defaults."""
        lines = lines or {}

        def fail(path, problem, fix):
            line = lines.get(tuple(path))
            where = f"{source}" + (f", line {line}" if line else "") + (f", key '{_path_str(path)}'" if path else "")
            raise RecipeError(f"{where}: {problem}. Fix: {fix}")

        if not isinstance(data, dict):
            fail([], f"a recipe is a mapping of sections, not {type(data).__name__}", "start from the example in tfcompress.recipe's documentation")

        def check_section(values, schema, path):
            if not isinstance(values, dict):
                fail(path, f"expected a mapping, got {type(values).__name__}", f"write '{_path_str(path)}:' followed by indented keys")
            unknown = sorted(set(values) - set(schema))
            if unknown:
                fail(path + [unknown[0]], f"unknown key {unknown[0]!r}", f"use one of: {', '.join(sorted(schema))}")
            out = {}
            for key, spec in schema.items():
                if spec is None:
                    continue
                if isinstance(spec, dict):
                    out[key] = check_section(values.get(key, {}) or {}, spec, path + [key])
                    continue
                check, default = spec
                value = values.get(key, copy.deepcopy(default))
                if not check(value):
                    fail(path + [key], f"{value!r} is not valid here", f"give {getattr(check, 'expected', 'a valid value')}")
                out[key] = value
            return out

        config = check_section({k: v for k, v in data.items() if k != "steps"}, SCHEMA, [])
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            fail(["steps"], "a recipe needs a non-empty list of steps", "add e.g. 'steps: [{train: {epochs: 2}}, {export: {modes: [dynamic]}}]'")
        checked = []
        seen_quantize = False
        for i, item in enumerate(steps):
            if isinstance(item, str):
                item = {item: {}}
            if not isinstance(item, dict) or len(item) != 1:
                fail(["steps", i], f"each step is a one-key mapping like '- prune: {{...}}', got {item!r}", f"write one of {', '.join(STEPS)} as the key")
            name, args = next(iter(item.items()))
            if name not in STEP_SCHEMA:
                fail(["steps", i, name], f"unknown step {name!r}", f"use one of: {', '.join(STEPS)}")
            args = check_section(args or {}, STEP_SCHEMA[name], ["steps", i, name])
            if name == "prune" and seen_quantize:
                fail(["steps", i, name], "pruning cannot follow quantize (a QAT model cannot be re-wrapped for pruning)", "prune first, then quantize: sparsity is kept through QAT")
            if name == "prune" and args["structure"] and args["block_size"] != [1, 1]:
                fail(["steps", i, name, "structure"], "structure and block_size conflict", "choose M:N structured sparsity or block sparsity, not both")
            if name == "prune" and args["structure"]:
                m, n = map(int, args["structure"].split(":"))
                if args["target_sparsity"] not in (0.8, m / n):
                    fail(["steps", i, name, "target_sparsity"], f"structure '{args['structure']}' fixes the sparsity at {m / n:g}", "drop target_sparsity")
            seen_quantize |= name == "quantize"
            if name == "export":
                stem = args["name"] or ("model" if not any("export" in c for c in checked) else f"model-{i + 1}")
                taken = [c["export"]["name"] for c in checked if "export" in c]
                if stem in taken:
                    fail(["steps", i, name, "name"], f"another export step already writes {stem!r}", "give each export step its own name")
                args["name"] = stem
            if name == "distill" and args["teacher"] == "trained" and not any("train" in c for c in checked):
                fail(["steps", i, name, "teacher"], "teacher 'trained' needs a train step before it", "add a train step, or use teacher: current")
            checked.append({name: args})
        config["steps"] = checked
        data_cfg, model_cfg = config["data"], config["model"]
        if data_cfg["task"] == "classification" and not data_cfg["train"]:
            fail(["data", "train"], "a classification recipe needs training data", "set data.train to a TSV/CSV/JSONL file or a folder with one sub-folder per label")
        if data_cfg["task"] == "language_model" and not data_cfg["corpus"]:
            fail(["data", "corpus"], "a language-model recipe needs a corpus", "set data.corpus to a text file, or 'builtin' (Python's documentation)")
        if model_cfg["build"] is not None and model_cfg["load"] is not None:
            fail(["model"], "model.build and model.load conflict", "build a new model or load yours, not both")
        allowed = _CLASSIFIER_ARGS if data_cfg["task"] == "classification" else _LM_ARGS
        for path, args in [(["model", "build"], model_cfg["build"] or {})] + [
            (["steps", i, "distill", "student"], s["distill"]["student"]) for i, s in enumerate(checked) if "distill" in s
        ]:
            bad = sorted(set(args) - allowed)
            if bad:
                fail(path + [bad[0]], f"unknown model argument {bad[0]!r}", f"use {', '.join(sorted(allowed))}")
        if model_cfg["load"] is not None and data_cfg["task"] != "classification":
            fail(["model", "load"], "loading a model is supported for classification recipes", "use model.build for a language model")
        for key in ("padding", "truncating"):
            if config["text"][key] is not None and config["text"]["tokenizer"] is None:
                fail(
                    ["text", key],
                    f"text.{key} says how a given tokenizer's ids were padded; without text.tokenizer, tfcompress "
                    "fits its own vocabulary and pads at the front (what an LSTM without a mask learns from)",
                    f"drop text.{key}, or give the tokenizer your model was trained with",
                )
        if config["text"]["tokenizer"] is not None and data_cfg["task"] != "classification":
            fail(["text", "tokenizer"], "a tokenizer applies to classification recipes", "drop text.tokenizer for a language model")
        if data_cfg["labels"] is not None and data_cfg["task"] != "classification":
            fail(["data", "labels"], "label names apply to classification recipes", "drop data.labels for a language model")
        if data_cfg["task"] == "classification":
            try:
                from tfcompress.text import TextPreprocessor

                TextPreprocessor(**config["text"]["preprocessor"])
            except (TypeError, ValueError, LookupError) as err:
                fail(["text", "preprocessor"], str(err).rstrip("."), "see tfcompress.text.TextPreprocessor's arguments")
        for path_key in ("train", "dev", "corpus"):
            value = data_cfg[path_key]
            if value and value != "builtin":
                full = value if os.path.isabs(value) else os.path.join(base_dir, value)
                if not os.path.exists(full):
                    fail(["data", path_key], f"{value!r} does not exist (looked at {full})", "give a path relative to the recipe file or an absolute path")
        for section, key, what in (("model", "load", "the saved model's path"), ("text", "tokenizer", "the tokenizer's path")):
            value = config[section][key]
            if value:
                full = value if os.path.isabs(value) else os.path.join(base_dir, value)
                if not os.path.exists(full):
                    fail([section, key], f"{value!r} does not exist (looked at {full})", f"give {what}, relative to the recipe file or absolute")
        return cls(config, source, base_dir)

    def resolve(self, path):
        if path is None or path == "builtin" or os.path.isabs(path):
            return path
        return os.path.join(self.base_dir, path)

    def to_dict(self):
        return copy.deepcopy(self.config)

    def fingerprint(self):
        """A hash of the configuration and the contents of its input files:
        a run resumes only if neither changed."""
        h = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
        paths = [self.resolve(self.config["data"][k]) for k in ("train", "dev", "corpus")]
        paths.append(self.resolve(self.config["model"]["load"]))
        paths.append(self.resolve(self.config["text"]["tokenizer"]))
        for path in paths:
            if not path or path == "builtin":
                continue
            files = [path] if os.path.isfile(path) else sorted(
                os.path.join(root, f) for root, _, names in os.walk(path) for f in names
            )
            for file in files:
                h.update(os.path.relpath(file, path).encode())
                with open(file, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
        return h.hexdigest()[:16]


def demo_recipe(quick=False):
    """The recipe `tfcompress demo` runs: a character LSTM language model (the
    classic stacked-LSTM architecture, scaled to a 2-core CPU) on Python's
    bundled documentation, pruned, quantization-aware trained and exported,
    then distilled into a smaller student, exported too. Small batches and a
    fixed number of updates per step fit it into about 4 minutes (quick: under 1)."""
    if quick:
        data = {"max_chars": 200_000, "window": 32, "stride": 2}
        model = {"embedding_dim": 24, "units": 64, "num_layers": 1, "dropout": 0.0, "learning_rate": 0.005}
        student, steps = {"embedding_dim": 16, "units": 32, "num_layers": 1, "dropout": 0.0}, (600, 100, 100, 250)
    else:
        data = {"max_chars": None, "window": 40, "stride": 3}
        model = {"embedding_dim": 24, "units": 96, "num_layers": 2, "dropout": 0.0, "learning_rate": 0.004}
        student, steps = {"embedding_dim": 16, "units": 64, "num_layers": 1, "dropout": 0.0}, (2000, 400, 400, 1000)
    batch = 64
    return Recipe.from_dict(
        {
            "name": "char-lstm-demo",
            "seed": 0,
            "data": {"task": "language_model", "corpus": "builtin", **data},
            "model": {"build": model},
            "steps": [
                {"train": {"epochs": 1, "batch_size": batch, "max_steps": steps[0]}},
                {"prune": {"target_sparsity": 0.5, "epochs": 1, "batch_size": batch, "max_steps": steps[1], "learning_rate": 0.002}},
                {"quantize": {"epochs": 1, "batch_size": batch, "max_steps": steps[2], "learning_rate": 0.001}},
                {"export": {"name": "compressed", "modes": ["dynamic"], "latency_runs": 50 if quick else 200, "sparse": "auto" if not quick else False}},
                {"distill": {"teacher": "trained", "student": student, "epochs": 1, "batch_size": batch, "max_steps": steps[3], "alpha": 0.2, "temperature": 2.0, "learning_rate": 0.005}},
                {"export": {"name": "student", "modes": ["dynamic"], "latency_runs": 50 if quick else 200}},
            ],
        },
        source="<demo>",
    )


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


class _Run:
    """State of one recipe run in an output folder."""

    def __init__(self, recipe, out, log, restart):
        self.recipe = recipe
        self.out = os.path.abspath(out)
        self.state = os.path.join(self.out, ".run")
        self.log = log
        os.makedirs(self.out, exist_ok=True)
        self._clean_partials()
        fingerprint = recipe.fingerprint()
        marker = os.path.join(self.state, "recipe.json")
        if os.path.exists(marker):
            previous = _read_json(marker)
            if previous.get("fingerprint") != fingerprint:
                if not restart:
                    raise RecipeError(
                        f"{self.out} holds a run of a different recipe or data "
                        f"({previous.get('source')}). Fix: choose another output folder, or "
                        "restart from scratch (restart=True, --restart)."
                    )
            if restart:
                shutil.rmtree(self.state)
        elif restart and os.path.isdir(self.state):
            shutil.rmtree(self.state)
        os.makedirs(self.state, exist_ok=True)
        from tfcompress import _io

        _io.atomic_write_text(
            marker, json.dumps({"fingerprint": fingerprint, "source": recipe.source, "config": recipe.config}, indent=2)
        )

    def _clean_partials(self):
        """Removes temporary files a killed run may have left (never outputs)."""
        for root, dirs, _ in os.walk(self.out):
            for d in list(dirs):
                if d.endswith(".partial") or ".old-" in d:
                    shutil.rmtree(os.path.join(root, d), ignore_errors=True)
                    dirs.remove(d)

    def step_dir(self, index, name):
        return os.path.join(self.state, f"{index:02d}-{name}")

    def done(self, index, name):
        return os.path.exists(os.path.join(self.step_dir(index, name), "done.json"))

    def finish(self, index, name, payload):
        from tfcompress import _io

        _io.atomic_write_text(os.path.join(self.step_dir(index, name), "done.json"), json.dumps(payload, indent=2))


def _seed(recipe, index):
    import tensorflow as tf

    from tfcompress import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(recipe.config["seed"] * 1000 + index)
    if recipe.config["deterministic"]:
        tf.config.experimental.enable_op_determinism()


def _prepare_data(recipe, run):
    """Loads and encodes the data once; saved under .run/00-data."""
    from tfcompress import _io, text

    folder = run.step_dir(0, "data")
    arrays = os.path.join(folder, "arrays.npz")
    if run.done(0, "data"):
        with np.load(arrays, allow_pickle=False) as d:
            data = {k: d[k] for k in d.files}
        meta = _read_json(os.path.join(folder, "done.json"))
        encoder = text.TextEncoder.load(folder) if meta["task"] == "classification" else None
        vocab = encoder.vocabulary if encoder is not None else text.Vocabulary.load(os.path.join(folder, "vocab.txt"))
        run.log(f"[data] resumed: {len(data['x_train']):,} training and {len(data['x_dev']):,} dev examples")
        return data, encoder, vocab, meta
    cfg = recipe.config["data"]
    os.makedirs(folder, exist_ok=True)
    if cfg["task"] == "classification":
        kwargs = {k: cfg[k] for k in ("format", "text_column", "label_column", "header", "encoding")}
        train = text.load_texts(recipe.resolve(cfg["train"]), label_names=cfg["labels"], **kwargs)
        if cfg["dev"]:
            dev = text.load_texts(recipe.resolve(cfg["dev"]), label_names=train.label_names, **kwargs)
        else:
            train, dev = train.split(cfg["dev_fraction"], seed=recipe.config["seed"])
        encoder, prepared = _encoder_and_model(recipe, train, folder)
        if encoder is None:
            tcfg = recipe.config["text"]
            encoder, x_train = text.TextEncoder.fit_transform(
                train.texts,
                text.TextPreprocessor(**tcfg["preprocessor"]),
                max_len=tcfg["max_len"],
                max_size=tcfg["max_size"],
                min_freq=tcfg["min_freq"],
            )
        else:
            x_train = encoder(train.texts)
        data = {"x_train": x_train, "y_train": train.labels, "x_dev": encoder(dev.texts), "y_dev": dev.labels}
        encoder.save(folder)  # vocab.txt and preprocessing.json
        vocab = encoder.vocabulary
        meta = {
            "task": "classification",
            "labels": train.label_names,
            "num_classes": train.num_classes,
            "max_len": encoder.max_len,
            "prepared_model": prepared,
        }
    else:
        corpus = text.builtin_corpus() if cfg["corpus"] == "builtin" else open(recipe.resolve(cfg["corpus"]), encoding="utf-8").read()
        if cfg["max_chars"]:
            corpus = corpus[: cfg["max_chars"]]
        vocab = text.Vocabulary.build([list(corpus)])
        ids = vocab.ids(list(corpus))
        cut = int(len(ids) * 0.95)
        x_train, y_train = text.char_windows(ids[:cut], cfg["window"], cfg["stride"])
        x_dev, y_dev = text.char_windows(ids[cut:], cfg["window"], 7)
        data = {"x_train": x_train, "y_train": y_train, "x_dev": x_dev, "y_dev": y_dev}
        vocab.save(os.path.join(folder, "vocab.txt"))
        encoder = None
        meta = {"task": "language_model", "labels": None, "num_classes": len(vocab), "max_len": cfg["window"], "corpus_chars": len(corpus)}
    import io

    buf = io.BytesIO()
    np.savez(buf, **data)
    _io.atomic_write_bytes(arrays, buf.getvalue(), "data")
    run.finish(0, "data", meta)
    run.log(f"[data] {len(data['x_train']):,} training and {len(data['x_dev']):,} dev examples, vocabulary {len(vocab):,}")
    return data, encoder, vocab, meta


def _encoder_and_model(recipe, train, folder):
    """The user's tokenizer and model, checked against each other.

    Returns `(encoder or None, prepared)`: None when a new vocabulary is to be
    fitted; `prepared` is True when the user's model was loaded, split from
    its TextVectorization layer if it has one, checked, and saved as
    `folder/model.keras` for the steps to start from.
    """
    from tfcompress import load_model, text

    tcfg, mcfg = recipe.config["text"], recipe.config["model"]
    options = {"max_len": tcfg["max_len"], "padding": tcfg["padding"], "truncating": tcfg["truncating"]}
    tokenizer = recipe.resolve(tcfg["tokenizer"])

    def fail(key, err, fix=""):
        raise RecipeError(f"{recipe.source}: {key}: {err}" + (f" Fix: {fix}" if fix else "")) from None

    def read_tokenizer(max_len):
        try:
            return text.load_tokenizer(tokenizer, **{**options, "max_len": max_len})
        except (text.TokenizerError, ValueError) as err:
            fix = "set text.max_len (command line: --max-len)" if "sequence length" in str(err) else ""
            fail("text.tokenizer", err, fix)

    if not mcfg["load"]:
        return (read_tokenizer(tcfg["max_len"]) if tokenizer else None), False
    path = recipe.resolve(mcfg["load"])
    model = load_model(path, safe_mode=not mcfg["trust_code"])
    vectorizer = text.find_vectorizer(model)
    if vectorizer is not None:
        if tokenizer:
            fail(
                "text.tokenizer",
                f"{mcfg['load']} has its own TextVectorization layer {vectorizer.name!r}, which is its tokenizer.",
                "drop text.tokenizer (--tokenizer); tfcompress takes the layer's vocabulary and rules.",
            )
        try:
            encoder, model = text.split_vectorizer(model, max_len=tcfg["max_len"])
        except text.TokenizerError as err:
            fail("model.load", err, "set text.max_len (command line: --max-len)" if "max_len" in str(err) else "")
    else:
        model = text.with_int_ids(model)
        _check_loaded(model, {"num_classes": train.num_classes}, recipe)
    if vectorizer is None and not tokenizer:
        fail(
            "model.load",
            f"{mcfg['load']} reads token ids, but no tokenizer was given. A new vocabulary would give "
            "the trained embedding other words under the same ids.",
            "give the tokenizer the model was trained with: text.tokenizer (command line: --tokenizer) "
            "set to a Keras Tokenizer JSON file (tokenizer.to_json()), a vocabulary file "
            "(TextVectorization order, one token per line) or a tfcompress TextEncoder folder.",
        )
    elif vectorizer is None:
        shape = tuple(model.inputs[0].shape)
        length = shape[1] if len(shape) == 2 else None
        encoder = read_tokenizer(tcfg["max_len"] or length)
        try:
            encoder = text.check_encoder(encoder, model, explicit_len=tcfg["max_len"] is not None)
        except text.TokenizerError as err:
            fail("text.tokenizer", err)
    if vectorizer is not None:
        _check_loaded(model, {"num_classes": train.num_classes}, recipe)
    model.save(os.path.join(folder, "model.keras"))
    return encoder, True


def _build_model(recipe, meta, vocab, args):
    from tfcompress import models

    args = dict(args or {})
    if meta["task"] == "classification":
        return models.lstm_classifier(len(vocab), num_classes=meta["num_classes"], max_len=meta["max_len"], **args)
    return models.char_lstm_lm(len(vocab), window=meta["max_len"], **args)


def _evaluate_keras(model, data, meta):
    """(accuracy, bits per char or None, params, nonzero, bytes, gzip bytes)."""
    from tfcompress import quantization

    plain = quantization.strip(model)
    probs = model.predict(data["x_dev"], batch_size=512, verbose=0)
    accuracy = float((_predicted(probs) == data["y_dev"]).mean())
    bits = None
    if meta["task"] == "language_model":
        p = np.clip(probs[np.arange(len(probs)), data["y_dev"]], 1e-12, 1)
        bits = float(-np.log2(p).mean())
    weights = plain.get_weights()
    params = int(sum(w.size for w in weights))
    nonzero = int(sum(np.count_nonzero(w) for w in weights))
    import warnings

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*HDF5 file via `model.save\(\)`.*")
        path = os.path.join(tmp, "model.h5")  # the size of the float model's weights
        plain.save(path, include_optimizer=False)
        with open(path, "rb") as f:
            raw = f.read()
    return accuracy, bits, params, nonzero, len(raw), len(gzip.compress(raw, 9))


def _predicted(probs):
    """Class ids from a softmax over classes, or from one sigmoid unit."""
    return (probs[:, 0] > 0.5).astype(int) if probs.shape[-1] == 1 else probs.argmax(-1)


def _loss_for(model):
    return "binary_crossentropy" if model.output_shape[-1] == 1 else "sparse_categorical_crossentropy"


def _metric(meta, accuracy, bits):
    if meta["task"] == "language_model":
        return "bits/char", bits, False
    return "accuracy", accuracy, True


def _subset(data, args, seed):
    """The training examples of one step: all, or `max_steps` batches of them."""
    x, y = data["x_train"], data["y_train"]
    limit = args.get("max_steps")
    if limit and limit * args["batch_size"] < len(x):
        idx = np.sort(np.random.default_rng(seed).choice(len(x), limit * args["batch_size"], replace=False))
        x, y = x[idx], y[idx]
    return x, y


def _fit(model, data, args, recipe, default_lr, seed=0):
    from tfcompress import keras

    lr = args.get("learning_rate") or default_lr
    if model.optimizer is None or args.get("learning_rate"):
        model.compile(keras.optimizers.Adam(lr), _loss_for(model), ["accuracy"])
    x, y = _subset(data, args, seed)
    model.fit(
        x,
        y,
        batch_size=args["batch_size"],
        epochs=args["epochs"],
        validation_data=(data["x_dev"], data["y_dev"]),
        verbose=0,
    )
    return model


def run(recipe, out, log=print, restart=False):
    """Runs a recipe, writing outputs and the report into `out`.

    Args:
        recipe: a `Recipe`, a dict, or the path of a YAML/JSON recipe.
        out: the output folder (created).
        log: a function receiving progress lines (default `print`).
        restart: discard a previous (possibly finished) run in `out`.

    Returns:
        The `tfcompress.report.Report`.
    """
    if not isinstance(recipe, Recipe):
        recipe = Recipe.load(recipe) if isinstance(recipe, (str, os.PathLike)) else Recipe.from_dict(recipe)
    from tfcompress import devices, distillation, export, keras, load_model, precision, pruning, quantization
    from tfcompress.report import Record, Report

    state = _Run(recipe, out, log, restart)
    started = time.perf_counter()
    data, encoder, vocab, meta = _prepare_data(recipe, state)
    report = Report(
        f"{recipe.config['name']}: {'text classifier' if meta['task'] == 'classification' else 'character language model'}",
        meta={"recipe": recipe.source, "train examples": len(data["x_train"]), "dev examples": len(data["x_dev"])},
    )
    strategy = devices.strategy(recipe.config["strategy"])
    policy = recipe.config["precision"]
    model = None
    steps = recipe.steps

    def record_keras(step, m, notes=""):
        acc, bits, params, nonzero, size, gz = _evaluate_keras(m, data, meta)
        name, value, higher = _metric(meta, acc, bits)
        extra = f"accuracy {acc:.4f}" if meta["task"] == "language_model" else ""
        return Record(step, "keras", params, size, gz, name, value, higher, None, nonzero if nonzero < params * 0.95 else None, "; ".join(x for x in (notes, extra) if x))

    if meta.get("prepared_model"):
        # The user's model as it came in: the baseline every later row is read against.
        report.add(record_keras("your model (as loaded)", _prepared_model(recipe, state)))
    for index, (name, args) in enumerate(steps, start=1):
        folder = state.step_dir(index, name)
        if state.done(index, name):
            payload = _read_json(os.path.join(folder, "done.json"))
            for r in payload["records"]:
                report.add(Record.from_dict(r))
            if os.path.exists(os.path.join(folder, "model.keras")):
                model = load_model(os.path.join(folder, "model.keras"), safe_mode=not recipe.config["model"]["trust_code"])
            log(f"[{index}/{len(steps)} {name}] resumed from its checkpoint")
            continue
        _seed(recipe, index)
        t0 = time.perf_counter()
        log(f"[{index}/{len(steps)} {name}] running ...")
        records = []
        if name == "train":
            with precision.policy_scope(policy), strategy.scope():
                if model is None:
                    if recipe.config["model"]["load"]:
                        model = _prepared_model(recipe, state)
                    else:
                        model = _build_model(recipe, meta, vocab, recipe.config["model"]["build"])
                model = _fit(model, data, args, recipe, 2e-3, seed=index)
            records.append(record_keras("train", model))
        elif name == "prune":
            model = _require(model, recipe, meta, vocab, name, state)
            steps_per_epoch = int(np.ceil(len(_subset(data, args, index)[0]) / args["batch_size"]))
            with precision.policy_scope("float32"), strategy.scope():
                pruned = pruning.prune(
                    model,
                    target_sparsity=args["target_sparsity"] if not args["structure"] else 0.5,
                    schedule=args["schedule"],
                    epochs=args["epochs"],
                    steps_per_epoch=steps_per_epoch,
                    structure=args["structure"],
                    block_size=tuple(args["block_size"]),
                    layers=_layer_selection(args["layers"]),
                )
                pruned = _fit(pruned, data, {**args, "learning_rate": args["learning_rate"] or 1e-3}, recipe, 1e-3, seed=index)
            model = pruning.strip(pruned)
            sparsity = pruning.sparsity_report(model).overall()
            records.append(record_keras(f"prune {args['structure'] or format(args['target_sparsity'], '.0%')}", model, f"sparsity {sparsity:.1%}"))
        elif name == "quantize":
            model = _require(model, recipe, meta, vocab, name, state)
            with precision.policy_scope("float32"), strategy.scope():
                model = quantization.quantize(model, skip=args["skip"] or None, preserve_sparsity=args["preserve_sparsity"])
                model = _fit(model, data, {**args, "learning_rate": args["learning_rate"] or 5e-4}, recipe, 5e-4, seed=index)
            kept = model.tfcompress_quantization_report["preserve_sparsity"]
            records.append(record_keras("quantize (8-bit QAT)", model, "sparsity kept" if kept else ""))
        elif name == "distill":
            if args["teacher"] == "trained":
                first = next(i for i, (n, _) in enumerate(steps, start=1) if n == "train")
                teacher = load_model(
                    os.path.join(state.step_dir(first, "train"), "model.keras"), safe_mode=not recipe.config["model"]["trust_code"]
                )
            else:
                teacher = _require(model, recipe, meta, vocab, name, state)
            if teacher.output_shape[-1] == 1:
                raise RecipeError(
                    f"{recipe.source}: step 'distill': the teacher has one sigmoid output; the Distiller "
                    "matches softmax distributions over the classes. Fix: drop the distill step, or give a "
                    "teacher with one softmax output per class."
                )
            with precision.policy_scope(policy), strategy.scope():
                student = _build_model(recipe, meta, vocab, {**args["student"], "learning_rate": 2e-3})
                distiller = distillation.Distiller(teacher, student, alpha=args["alpha"], temperature=args["temperature"], distillation_loss=args["distillation_loss"])
                distiller.compile(keras.optimizers.Adam(args["learning_rate"] or 2e-3), "sparse_categorical_crossentropy", ["accuracy"])
                x_fit, y_fit = _subset(data, args, index)
                distiller.fit(x_fit, y_fit, batch_size=args["batch_size"], epochs=args["epochs"], verbose=0)
            model = student
            model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"])
            records.append(record_keras("distill -> student", model))
        elif name == "export":
            model = _require(model, recipe, meta, vocab, name, state)
            for i, mode in enumerate(args["modes"]):
                filename = f"{args['name']}.tflite" if i == 0 else f"{args['name']}-{mode}.tflite"
                path = os.path.join(state.out, filename)
                result = export.to_tflite(
                    model,
                    path,
                    mode=mode,
                    representative_data=data["x_train"],
                    calibration_samples=args["representative_samples"],
                    sparse=args["sparse"],
                    seq_len=meta["max_len"],
                    encoder=encoder if i == 0 else None,
                    labels=meta["labels"],
                )
                if meta["task"] == "language_model" and i == 0:
                    vocab.save(os.path.join(state.out, "vocab.txt"))  # the characters, one per line
                # Agreement with the Keras model the file computes: the QAT model simulates int8
                # activations, which only an int8 file has; float32/float16/dynamic files compute
                # the stripped model (QAT weights baked, float activations).
                reference = model if mode == "int8" else quantization.strip(model)
                r = export.evaluate(path, (data["x_dev"], data["y_dev"]), reference=reference, latency_runs=args["latency_runs"], verbose=False)
                bits = None
                if meta["task"] == "language_model":
                    probs = export.TFLiteModel(path).predict(data["x_dev"])
                    bits = float(-np.log2(np.clip(probs[np.arange(len(probs)), data["y_dev"]], 1e-12, 1)).mean())
                mname, value, higher = _metric(meta, r["accuracy"], bits)
                notes = f"agreement {r['agreement']:.1%}" + ("; sparse encoding" if result.sparse_encoding else "")
                if meta["task"] == "language_model":
                    notes += f"; accuracy {r['accuracy']:.4f}"
                records.append(
                    Record(f"export {args['name']} {mode}", "tflite", None, r["bytes"], r["gzip_bytes"], mname, value, higher, r.get("latency_ms_median"), None, f"{filename}; {notes}")
                )
        else:  # pragma: no cover - validated earlier
            raise RecipeError(f"unknown step {name}")
        os.makedirs(folder, exist_ok=True)
        if name != "export":
            model.save(os.path.join(folder, "model.keras"))
        for r in records:
            report.add(r)
            log(f"    {r.step}: {r.metric} {r.value:.4f}" + (f", {r.gzip_bytes / 1024:,.1f} KiB gzipped" if r.gzip_bytes else ""))
        state.finish(index, name, {"records": [dataclasses.asdict(r) for r in records], "seconds": time.perf_counter() - t0})
        log(f"[{index}/{len(steps)} {name}] done in {time.perf_counter() - t0:.0f} s")
    report.meta["seconds"] = round(time.perf_counter() - started, 1)
    report.save(state.out)
    log(f"report: {os.path.join(state.out, 'report.md')}")
    return report


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _layer_selection(names):
    if not names:
        return None
    from tfcompress import keras

    out = []
    for n in names:
        cls = getattr(keras.layers, n, None)
        out.append(cls if isinstance(cls, type) else n)
    return out


def _prepared_model(recipe, state):
    """The user's model as data preparation checked and saved it."""
    from tfcompress import load_model

    return load_model(os.path.join(state.step_dir(0, "data"), "model.keras"), safe_mode=not recipe.config["model"]["trust_code"])


def _require(model, recipe, meta, vocab, name, state):
    if model is not None:
        return model
    if recipe.config["model"]["load"]:
        return _prepared_model(recipe, state)
    raise RecipeError(
        f"{recipe.source}: step '{name}' needs a trained model, but no 'train' step came before it "
        "and model.load is not set. Fix: start the steps with '- train: {...}', or load your model."
    )


def _check_loaded(model, meta, recipe):
    shape = tuple(model.input_shape)
    if len(shape) != 2 or model.inputs[0].dtype.is_floating:
        raise RecipeError(
            f"{recipe.source}: model.load: the model takes input {shape} "
            f"({model.inputs[0].dtype.name}); a text classifier here takes int32 token ids of shape "
            f"(batch, length). Fix: load a model whose first layer is an Embedding."
        )
    width = model.output_shape[-1]
    if width != meta["num_classes"] and not (width == 1 and meta["num_classes"] == 2):
        raise RecipeError(
            f"{recipe.source}: model.load: the model has {width} outputs but the data "
            f"has {meta['num_classes']} classes. Fix: load a model trained for these labels."
        )
