"""A recipe step is one unit: its name, its arguments and their checks, how it
is checked against the steps before it, its command-line flags, and `run`.

    from tfcompress.recipe import Step, StepResult, register_step, schema

    @register_step
    class Report(Step):
        name = "size"
        summary = "record the model's size without changing it"
        schema = {"note": (schema.str_or_none, None)}
        saves_model = False

        def run(self, ctx, args):
            return StepResult(ctx.require_model(), [ctx.keras_record("size", ctx.require_model(), args["note"] or "")])

Registered steps can be used in recipes (`- size: {note: before}`) and in
`tfcompress compress --steps`, and are listed by `tfcompress compress --help`.
"""

import dataclasses

__all__ = ["training_flags", "Flag", "Step", "StepResult", "register_step", "unregister_step", "get_step", "registered_steps"]


@dataclasses.dataclass(frozen=True)
class Flag:
    """A command-line flag of `tfcompress compress` that sets a step argument.

    Steps may share a flag (`--epochs`); each step keeps its own default
    (`default`, used when the flag is not given on the command line).
    """

    flag: str
    key: str
    type: type
    default: object
    help: str


EPOCHS_HELP = (
    "epochs of each training step, or 'auto': until the loss on a selection split carved from the "
    "training data stops improving, the fewest epochs within one standard error of the best kept (--choose) "
    "(default: train auto, 2 with --max-loss; prune, shrink, distill 2; quantize, cluster, factorize 1)"
)


MIN_EPOCHS_HELP = (
    "with --epochs auto: the fewest epochs a step trains and may keep; an earlier epoch is never chosen, and "
    "patience counts from this one (default: train 2, the others 1; a pruning step's ramp of 2 epochs is its own floor)"
)


REFIT_HELP = (
    "yes (the default) or no: whether what was chosen on the selection split (the epoch count of --epochs auto, the plan of "
    "--max-loss) is trained once more with the selection split back in training before it is handed on (yes: the model "
    "handed on is not the one the choice measured; no: it is, trained on less data); with --epochs auto in several steps, "
    "the steps run again from the start with the counts chosen"
)


CHOOSE_HELP = (
    "with --epochs auto: one_se (the default) keeps the fewest epochs whose selection loss is within one paired standard "
    "error of the best epoch's (a lead the split cannot measure buys no extra epochs); best keeps the best epoch"
)


def training_flags(epochs, min_epochs=None):
    """The command-line flags every training step shares: `--epochs` (this
    step's default `epochs`), `--patience`, `--min-epochs` (this step's
    default, else the recipe's), `--max-epochs`, `--refit` and `--choose`
    (for auto)."""
    from tfcompress.recipe.schema import TRAINING, choose_arg, epochs_arg, yes_no_arg

    patience, most = TRAINING["patience"][1], TRAINING["max_epochs"][1]
    return (
        Flag("--epochs", "epochs", epochs_arg, epochs, EPOCHS_HELP),
        Flag("--patience", "patience", int, patience, f"with --epochs auto: epochs without improvement before a step stops (default: {patience})"),
        Flag("--min-epochs", "min_epochs", int, TRAINING["min_epochs"][1] if min_epochs is None else min_epochs, MIN_EPOCHS_HELP),
        Flag("--max-epochs", "max_epochs", int, most, f"with --epochs auto: the most epochs a step trains (default: {most})"),
        Flag("--refit", "refit", yes_no_arg, TRAINING["refit"][1], REFIT_HELP),
        Flag("--choose", "choose", choose_arg, TRAINING["choose"][1], CHOOSE_HELP),
    )


@dataclasses.dataclass
class StepResult:
    """What a step hands on: the model for the next step (None: unchanged)
    and the report records it measured."""

    model: object = None
    records: list = dataclasses.field(default_factory=list)
    sections: dict = dataclasses.field(default_factory=dict)
    """Title -> Markdown for the report, after its table (kept on resume)."""
    meta: dict = dataclasses.field(default_factory=dict)
    """Facts for the report's meta (kept on resume)."""


class Step:
    """Base class of recipe steps. Subclass it, set the class attributes, and
    implement `run`; decorate with `register_step`."""

    name = None
    """The key that names the step in a recipe."""
    summary = ""
    """One line for `tfcompress compress --help`."""
    schema = {}
    """Arguments: key -> (check, default); see `tfcompress.recipe.schema`."""
    flags = ()
    """`Flag`s of `tfcompress compress` that set this step's arguments."""
    saves_model = True
    """Whether the model the step returns is checkpointed for resuming."""
    chooses = False
    """Whether the step always measures for choices (on the selection split
    carved from training; `epochs: auto` makes any training step choose)."""

    def validate(self, args, earlier, config, fail):
        """Checks that need the rest of the recipe (called once, before any
        step runs). `args` are this step's checked arguments (with defaults);
        `earlier` the `(name, args)` of the steps before it; `config` the
        checked top-level sections; `fail(key, problem, fix)` raises a
        `RecipeError` naming this step's key. May return updated args."""
        return args

    def run(self, ctx, args):
        """Runs the step on `ctx.model` (see `RunContext`); returns a
        `StepResult`."""
        raise NotImplementedError

    def __repr__(self):
        return f"<recipe step {self.name!r}>"


_REGISTRY = {}


def register_step(cls=None, *, replace=False):
    """Registers a `Step` subclass under its `name` (usable as a decorator)."""

    def add(cls):
        if not (isinstance(cls, type) and issubclass(cls, Step)):
            raise TypeError(f"register_step takes a Step subclass. Received: {cls!r}.")
        name = cls.name
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{cls.__name__}.name must be an identifier (the key in a recipe). Received: {name!r}.")
        if name in _REGISTRY and not replace:
            raise ValueError(
                f"a recipe step named {name!r} is already registered ({type(_REGISTRY[name]).__name__}). "
                "Fix: choose another name, or pass replace=True."
            )
        for key in cls.schema:
            if not isinstance(cls.schema[key], tuple) or len(cls.schema[key]) != 2 or not callable(cls.schema[key][0]):
                raise ValueError(f"{cls.__name__}.schema[{key!r}] must be (check, default). Received: {cls.schema[key]!r}.")
        for flag in cls.flags:
            if flag.key not in cls.schema:
                raise ValueError(f"{cls.__name__} flag {flag.flag} sets {flag.key!r}, which is not in its schema.")
        _REGISTRY[name] = cls()
        return cls

    return add if cls is None else add(cls)


def unregister_step(name):
    """Removes a registered step (for tests and plugins that replace one)."""
    _REGISTRY.pop(name, None)


def get_step(name):
    """The registered step called `name`, or None."""
    return _REGISTRY.get(name)


def registered_steps():
    """Every registered step, in registration order (the built-in steps first)."""
    return list(_REGISTRY.values())
