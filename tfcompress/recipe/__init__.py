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
    tensorboard: logs                # optional: every step's training curves, pruning sparsity
    steps:
      - train: {epochs: 2}
      - prune: {target_sparsity: 0.8, epochs: 2}
      - quantize: {epochs: 1}
      - export: {modes: [dynamic, float32]}

Any training step takes `epochs: auto` (command line: `--epochs auto`):
it trains until its loss on a selection split (`monitor: accuracy` for the
accuracy) has not improved for `patience` epochs (default 2), at most
`max_epochs` (default 20), and keeps the weights of the fewest epochs
whose loss is within one paired standard error of the best epoch's, each
epoch scored example by example on the split (`choose: one_se`, the
default; `choose: best` keeps the best epoch however small its lead)
(`tfcompress.training.BestEpoch`). The selection
split (`data.selection_fraction`, default 10%; 25% for a classifier with an
`auto` step) is carved from the training
data once for the whole run, the same on every resume, so that dev serves
only to report: the report row says how many epochs ran, which was kept and
why it stopped. A prune step ramps its sparsity up over its first 2 epochs
and chooses only among the epochs after them; `min_epochs` keeps any step
from choosing an earlier epoch. Then, for a classifier with `refit: true`
(the default), what was chosen trains again with the split back in
training:

- one `epochs: auto` step: it trains again from where it started (weights
  and optimizer state), for the chosen number of epochs, on train +
  selection (`RunContext.fit_auto`);
- several: a refit of one would put the split into the model a later step
  chooses on, so the steps up to the last of them run twice (`runner`):
  first each chooses its count, then all of them again from the start with
  those counts on train + selection; the report's rows are the second run,
  the first is in its section "Epochs chosen on the selection split";
- with a step that chooses otherwise (`auto`, `sensitivity`), a step before
  it keeps the best epoch's weights (no refit) and its row says why; so
  does a language model, whose selection split is the end of its corpus.

`auto: {max_loss: 0.5}` (after `train`) replaces prune/cluster/quantize by
the accuracy-budget search of `tfcompress.budget`: a sensitivity table,
per-layer plans, each fine-tuned and verified on the selection split,
smaller after a pass and backing off after a fail; the report says whether
the budget was met (`report.meta["budget met"]`). `sensitivity` writes the
table alone. Both choose on data, so the selection split is carved for them;
when most training texts lie inside others (SST-2's phrases of sentences) it
holds out whole sentences with their phrases (`text.containment_groups`).

Each step works on the model the previous step produced (`distill` trains a new
student from it). `data.task: language_model` with `data.corpus` (a text file,
or `builtin`, Python's own documentation) trains a character language model
instead; `tfcompress demo` is such a recipe. Its examples are windows of
`data.window` characters every `data.stride` characters, made as they are
read from the corpus ids (`text.CharWindows`): memory is about 4 bytes a
character however many windows there are, so a 100 MB corpus runs in under
2 GiB (BENCHMARKS.md, "Large data"). The dev set is the last 5% of the corpus,
at most 100,000 characters; `max_steps` bounds a step's training batches.

Each step is one registered unit (`Step`: its name, arguments, checks,
command-line flags and `run`); `tfcompress.recipe.steps` holds the built-in
ones, and `register_step` adds yours, usable in recipes and in
`tfcompress compress --steps`.

Everything is checked before any training starts: unknown keys, wrong types and
impossible values are refused with the file, the key (and line), and the fix.

`run(recipe, out)` writes, into `out`, the `.tflite` file(s), their deployment
files and `report.json`/`.md`/`.png`. Each finished step is checkpointed under
`out/.run/`; a run that is killed and started again resumes after the last
finished step and produces the same outputs (seeds are fixed per step and op
determinism is on). Every file is written completely or not at all.
"""

from tfcompress.recipe import schema
from tfcompress.recipe.config import DEMO_UPDATES, Recipe, demo_recipe
from tfcompress.recipe.context import RunContext
from tfcompress.recipe.runner import run
from tfcompress.recipe.schema import RecipeError
from tfcompress.recipe.step import Flag, Step, StepResult, get_step, register_step, registered_steps, unregister_step
from tfcompress.recipe import steps  # noqa: E402,F401  (registers the built-in steps)

__all__ = [
    "Recipe",
    "RecipeError",
    "run",
    "demo_recipe",
    "DEMO_UPDATES",
    "Step",
    "StepResult",
    "Flag",
    "RunContext",
    "register_step",
    "unregister_step",
    "get_step",
    "registered_steps",
    "step_names",
    "COMPRESS_STEPS",
    "BUDGET_STEPS",
    "schema",
]

COMPRESS_STEPS = ("train", "prune", "quantize", "export")
"""The steps `tfcompress compress` runs without --steps (without train when --model is given)."""
BUDGET_STEPS = ("train", "auto", "export")
"""The steps of `tfcompress compress --max-loss X` without --steps."""


def step_names():
    """The names of the registered steps, built-in ones first."""
    return [s.name for s in registered_steps()]
