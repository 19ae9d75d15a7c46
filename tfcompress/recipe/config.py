"""`Recipe`: a checked configuration, and the recipe `tfcompress demo` runs."""

import copy
import hashlib
import json
import os

from tfcompress.recipe import schema
from tfcompress.recipe.schema import RecipeError
from tfcompress.recipe.step import get_step, registered_steps

__all__ = ["Recipe", "demo_recipe", "DEMO_UPDATES"]


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
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise RecipeError(f"{path}: no such recipe file.") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise RecipeError(
                f"{path}, line {line}: not UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}). Fix: save "
                "the recipe as UTF-8 (YAML and JSON files are read as UTF-8)."
            ) from None
        try:
            data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        except json.JSONDecodeError as err:
            raise RecipeError(f"{path}, line {err.lineno}: invalid JSON ({err.msg}).") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark else ""
            raise RecipeError(f"{path}{where}: invalid YAML ({getattr(err, 'problem', err)}).") from None
        return cls.from_dict(data, source=path, base_dir=os.path.dirname(os.path.abspath(path)), lines=schema.lines_of(text))

    @classmethod
    def from_dict(cls, data, source="<dict>", base_dir=".", lines=None):
        """Validates a recipe given as a dict; fills in defaults."""
        fail = schema.fail_at(source, lines or {})
        if not isinstance(data, dict):
            fail([], f"a recipe is a mapping of sections, not {type(data).__name__}", "start from the example in tfcompress.recipe's documentation")
        config = schema.check_section({k: v for k, v in data.items() if k != "steps"}, schema.SCHEMA, [], fail)
        config["steps"] = _check_steps(data.get("steps"), config, fail)
        _check_sections(config, base_dir, fail)
        return cls(config, source, base_dir)

    @property
    def choosing_steps(self):
        """The 1-based indices of the steps that choose something on data
        (`epochs: auto`, or a step that measures for choices)."""
        from tfcompress.recipe.step import get_step

        return [
            i for i, (name, args) in enumerate(self.steps, start=1) if args.get("epochs") == "auto" or getattr(get_step(name), "chooses", False)
        ]

    @property
    def makes_choices(self):
        """The `choosing_steps` as `"step N name (why)"` labels; empty when
        none choose."""
        return [
            f"step {i} {self.steps[i - 1][0]}" + (" (epochs: auto)" if self.steps[i - 1][1].get("epochs") == "auto" else "")
            for i in self.choosing_steps
        ]

    def step_seed(self, index):
        """The random seed of step `index` (1-based): each step is reproducible alone."""
        return self.config["seed"] * 1000 + index

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


DEMO_UPDATES = {False: (2000, 400, 400, 1000), True: (600, 100, 100, 250)}
"""The demo's training updates (train, prune, quantize, distill) before
`tfcompress.demo.plan_demo` scales them to a time budget."""


def demo_recipe(quick=False, updates=None):
    """The recipe `tfcompress demo` runs: a character LSTM language model (the
    classic stacked-LSTM architecture, scaled to a 2-core CPU) on Python's
    bundled documentation, pruned, quantization-aware trained and exported,
    then distilled into a smaller student, exported too. Small batches;
    `updates` = training updates of (train, prune, quantize, distill), by
    default `DEMO_UPDATES[quick]` (`tfcompress demo` sizes them to its time
    budget on the machine it runs on)."""
    steps = tuple(updates or DEMO_UPDATES[quick])
    if quick:
        data = {"max_chars": 200_000, "window": 32, "stride": 2}
        model = {"embedding_dim": 24, "units": 64, "num_layers": 1, "dropout": 0.0, "learning_rate": 0.005}
        student = {"embedding_dim": 16, "units": 32, "num_layers": 1, "dropout": 0.0}
    else:
        data = {"max_chars": None, "window": 40, "stride": 3}
        model = {"embedding_dim": 24, "units": 96, "num_layers": 2, "dropout": 0.0, "learning_rate": 0.004}
        student = {"embedding_dim": 16, "units": 64, "num_layers": 1, "dropout": 0.0}
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


def _check_steps(steps, config, fail):
    """Each step's arguments against its schema, then against the steps before it."""
    names = ", ".join(s.name for s in registered_steps())
    if not isinstance(steps, list) or not steps:
        fail(["steps"], "a recipe needs a non-empty list of steps", "add e.g. 'steps: [{train: {epochs: 2}}, {export: {modes: [dynamic]}}]'")
    checked = []
    for i, item in enumerate(steps):
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            fail(["steps", i], f"each step is a one-key mapping like '- prune: {{...}}', got {item!r}", f"write one of {names} as the key")
        name, args = next(iter(item.items()))
        step = get_step(name)
        if step is None:
            fail(["steps", i, name], f"unknown step {name!r}", f"use one of: {names}")
        where = ["steps", i, name]
        args = schema.check_section(args or {}, step.schema, where, fail)
        if args.get("min_epochs", 1) > args.get("max_epochs", float("inf")):
            fail(
                where + ["min_epochs"],
                f"min_epochs {args['min_epochs']} is more than max_epochs {args['max_epochs']} (the most epochs the step trains)",
                "lower min_epochs or raise max_epochs",
            )
        earlier = [(n, a) for c in checked for n, a in c.items()]
        args = step.validate(args, earlier, config, lambda path, problem, fix: fail(where + list(path), problem, fix))
        checked.append({name: args})
    return checked


def _check_sections(config, base_dir, fail):
    """Checks between the top-level sections, and that named files exist."""
    data_cfg, model_cfg, text_cfg = config["data"], config["model"], config["text"]
    classification = data_cfg["task"] == "classification"
    if classification and not data_cfg["train"]:
        fail(["data", "train"], "a classification recipe needs training data", "set data.train to a TSV/CSV/JSONL file or a folder with one sub-folder per label")
    if not classification and not data_cfg["corpus"]:
        fail(["data", "corpus"], "a language-model recipe needs a corpus", "set data.corpus to a text file, or 'builtin' (Python's documentation)")
    if model_cfg["build"] is not None and model_cfg["load"] is not None:
        fail(["model"], "model.build and model.load conflict", "build a new model or load yours, not both")
    allowed = schema.CLASSIFIER_ARGS if classification else schema.LM_ARGS
    bad = sorted(set(model_cfg["build"] or {}) - allowed)
    if bad:
        fail(["model", "build", bad[0]], f"unknown model argument {bad[0]!r}", f"use {', '.join(sorted(allowed))}")
    if model_cfg["load"] is not None and not classification:
        fail(["model", "load"], "loading a model is supported for classification recipes", "use model.build for a language model")
    for key in ("padding", "truncating"):
        if text_cfg[key] is not None and text_cfg["tokenizer"] is None:
            fail(
                ["text", key],
                f"text.{key} says how a given tokenizer's ids were padded; without text.tokenizer, tfcompress "
                "fits its own vocabulary and pads at the front (what an LSTM without a mask learns from)",
                f"drop text.{key}, or give the tokenizer your model was trained with",
            )
    if text_cfg["tokenizer"] is not None and not classification:
        fail(["text", "tokenizer"], "a tokenizer applies to classification recipes", "drop text.tokenizer for a language model")
    if data_cfg["labels"] is not None and not classification:
        fail(["data", "labels"], "label names apply to classification recipes", "drop data.labels for a language model")
    if classification:
        try:
            from tfcompress.text import TextPreprocessor

            TextPreprocessor(**text_cfg["preprocessor"])
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
