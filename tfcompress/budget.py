"""The smallest model within an accuracy budget, found by trying.

A user says how much quality they will give up (`max_loss`: points of
accuracy, or bits per character for a language model) and `search` returns
the smallest compressed model it verified within that budget:

1. **Sensitivity** (`tfcompress.sensitivity.analyze`): the loss of pruning,
   rounding and clustering each layer alone, one shot, on a selection split.
2. **Plans**: for every layer a sparsity (0 or one the table measured), and
   one number of clusters (or none) for the model; with `rows`, also the
   fraction of the embedding table's rows kept (the rarest token ids share
   one row: `embeddings.prune_rows`; after shrinking, the table is nearly
   the whole file, and the rows of rare words cost as much as the rest);
   each plan's size is
   estimated (the gzip size of each weight pruned, clustered and rounded to
   int8, as the `.tflite` file stores it) and its loss predicted (the sum of
   the one-shot losses of its changes). Only plans that no other plan beats
   on both are kept (a Pareto front, traced by trading bytes for loss).
3. **Rounds**: a plan is fine-tuned (pruned to its per-layer targets while
   training, clustered, quantization-aware trained) and verified on the
   selection split. One-shot losses overstate what is left after
   fine-tuning, and by very different factors per layer (on SST-2, pruning
   the embedding 80% costs 7 points one shot and about nothing once
   fine-tuned), so the first round starts from what is known to recover:
   the front's plan as small as pruning every layer to `start_sparsity`
   (80%, what `compress` does without a budget) and clustering it to 8
   values (`start_clusters`), arranged by the table (`start="uniform"`:
   that plan itself, every layer alike). A
   plan within budget sends the next round to a smaller one on the front,
   halving the gap (in log scale of the predicted loss) each time; a plan
   over it backs off locally: the same plan with more of the embedding's
   rows if it removed some, else with its change of largest one-shot loss
   made milder (`relax`: that layer pruned one step less, or more
   clusters), the rest kept. At most `rounds` rounds.

A plan counts as within the budget when its verified loss plus `margin`
paired standard errors (1 by default) is at most `max_loss`. Without the
margin the check is optimistic: the search keeps the smallest plan that
passed on the same selection split it chose by, so the one kept tends to
be one that measured lucky (SST-2, 3 seeds, two budgets: checked on the
loss alone, two of the six verdicts disagreed with dev; with one standard
error, none did; BENCHMARKS.md).

The result is the smallest verified plan within budget. When no plan is,
`within_budget` is False and the model is the one that lost least: callers
must say so (the recipe step warns, `tfcompress compress --max-loss` exits
with an error unless `--best-effort`).

With `teacher_weight` (`compress`; the recipe's `auto` step; 0.5 for a
classifier unless given), every fine-tune trains towards a mix of the
labels and the uncompressed model's own outputs (`teacher_targets`:
self-distillation, the dense model as the teacher): the candidates then
stay closer to the model they are measured against, which lowers both
their loss and its paired standard error.

`refit_plan` replays the chosen plan with training that also sees the selection
split, once every choice is made: the split no longer costs the returned
model training data, but that model is not the one verified (the result
says so, and only data no choice used can measure it). `refit_verified`
instead trains the verified model itself further on that data: it keeps the
verified model's zeros, clusters and units, and starts from its weights, not
from a new random start.
"""

import dataclasses
import gzip
import math

import numpy as np

from tfcompress.sensitivity import format_loss, loss_between, paired_standard_error, per_example

__all__ = ["token_counts", "Plan", "Candidate", "SearchResult", "ShrinkProbe", "plan_front", "relax", "uniform_bytes", "search", "search_shrunk", "search_units", "fine_tuner", "teacher_targets", "target_loss", "TEACHER_WEIGHT", "default_teacher_weight", "selection_scorer", "refit_plan", "refit_verified", "compress"]


@dataclasses.dataclass
class Plan:
    """Per-layer sparsity (0: dense) and the model's clusters (None: none);
    with `units`, the fraction of units `pruning.shrink` keeps first."""

    sparsity: dict
    clusters: int = None
    predicted_loss: float = 0.0
    estimated_bytes: int = 0
    units: float = None
    multiply_adds: int = None
    shrunk: float = None  # the plan compresses a model already shrunk to this fraction of its units (`search_shrunk`)
    rows: float = None  # the fraction of `rows_layer`'s rows kept (`embeddings.prune_rows`; None: all)
    rows_layer: str = None

    def describe(self):
        kept = self.units or self.shrunk
        head = f"shrink to {kept:.0%} of the units; " if kept else ""
        head += f"{self.rows_layer} keeps {self.rows:.0%} of its rows; " if self.rows else ""
        tail = (f"; {self.clusters} clusters" if self.clusters else "") + "; int8"
        if (kept or self.rows) and not self.prunes:
            return head + tail.lstrip("; ")
        parts = ", ".join(f"{name} {s:.0%}" for name, s in self.sparsity.items())
        return f"{head}prune {parts}{tail}"

    @property
    def prunes(self):
        return {name: s for name, s in self.sparsity.items() if s > 0}


@dataclasses.dataclass
class Candidate:
    """A plan tried: its fine-tuned model's value on the selection split."""

    round: int
    plan: Plan
    value: float
    loss: float
    within_budget: bool
    model: object = dataclasses.field(default=None, repr=False)
    standard_error: float = None  # of `loss`, paired over the selection examples (None: not known)

    def loss_text(self, unit):
        text = format_loss(self.loss, unit)
        return text if self.standard_error is None else f"{text} ± {self.standard_error:.{2 if unit == 'points' else 4}f}"


@dataclasses.dataclass
class SearchResult:
    """What `search` found.

    Attributes:
        model: the chosen (QAT) model.
        chosen: its `Candidate`.
        candidates: every `Candidate` tried, in order.
        within_budget: whether the chosen one kept the budget.
        baseline: the uncompressed model's value on the selection split.
        front: the `Plan`s the rounds chose from (smallest first).
        table: the `SensitivityTable` the plans came from.
        shrink: with `search_shrunk`, the `ShrinkProbe` of round 1 (else None).
    """

    model: object
    chosen: Candidate
    candidates: list
    within_budget: bool
    baseline: float
    front: list
    table: object
    max_loss: float
    unit: str
    examples: int = 0  # selection examples behind each loss (0: `evaluate` gave one number)
    objective: str = "size"  # "latency": `search_units`, the fewest multiply-adds within budget
    metric: str = None  # the selection metric, when there is no table
    shrink: "ShrinkProbe" = None  # `search_shrunk`: the model shrunk first, and whether the plans build on it
    examples_label: str = "selection examples"  # what `examples` counts
    margin: float = 0.0  # standard errors added to each loss before it is checked against the budget
    refit: str = None  # what the chosen plan was refit on (`refit_plan`, `refit_verified`), when `model` is not the verified one
    refit_epochs: int = 0  # `refit_verified`: the epochs the verified model trained further (0: the plan was replayed)

    def _metric(self):
        return self.table.metric if self.table is not None else self.metric

    def summary(self):
        c = self.chosen
        verdict = "within" if self.within_budget else "OVER"
        text = (
            f"{len(self.candidates)} candidates tried; chosen: {c.plan.describe()} (round {c.round}), "
            f"loss {c.loss_text(self.unit)} on the selection split, {verdict} the budget of {format_loss(self.max_loss, self.unit)}"
            + (f" (checked as loss + {self.margin:g} s.e.)" if self.margin and c.standard_error is not None else "")
        )
        text += f"; {self.refit_note()}" if self.refit else ""
        return text + (f"; {self.resolution_note()}" if self.unresolved() else "")

    def refit_note(self):
        what = (
            f"the verified model trained {self.refit_epochs} more epoch(s) on {self.refit}, which changes its weights (not its zeros, clusters or units)"
            if self.refit_epochs
            else f"that plan refit on {self.refit}, not the verified model"
        )
        return f"the model handed on is {what}: the selection split measures nothing of it, so judge it on data no choice used (dev)"

    def unresolved(self):
        """Whether the selection split is too small to tell the chosen
        model's loss from the budget: they are less than two standard
        errors apart."""
        se = self.chosen.standard_error
        return se is not None and se > 0 and abs(self.chosen.loss - self.max_loss) < 2 * se

    def resolution_note(self):
        se = self.chosen.standard_error
        return (
            f"the selection split measures this loss only to ±{format_loss(se, self.unit).lstrip('+')} (one paired standard error), "
            "so whether the budget holds beyond it is not settled: a larger selection split (data.selection_fraction in a recipe) checks finer"
        )

    def to_markdown(self):
        latency = self.objective == "latency"
        how = (
            "the fewest multiply-adds per example within it (whole units removed, `pruning.shrink`)"
            if latency
            else f"{len(self.front)} plans on the front; one-shot losses from {self.table.evaluations} evaluations"
        )
        lines = [
            f"Budget: lose at most {format_loss(self.max_loss, self.unit)} on the selection split "
            f"(unchanged model: {self._metric()} {self.baseline:.4f}). {how[0].upper() + how[1:]}.",
            "",
        ]
        if self.shrink is not None:
            lines += [self.shrink.describe(self.unit, self.max_loss), ""]
        lines += [
            "| round | plan | M multiply-adds | estimated gzip KiB | verified loss (± 1 s.e.) | budget |"
            if latency
            else "| round | plan | estimated gzip KiB | predicted (one shot) | verified loss (± 1 s.e.) | budget |",
            "|---:|---|---:|---:|---:|---|",
        ]
        for c in self.candidates:
            mark = "within" + (" (chosen)" if c is self.chosen else "") if c.within_budget else "over" + (" (chosen: least loss)" if c is self.chosen else "")
            middle = (
                f"{c.plan.multiply_adds / 1e6:,.3f} | {c.plan.estimated_bytes / 1024:,.1f}"
                if latency
                else f"{c.plan.estimated_bytes / 1024:,.1f} | {format_loss(c.plan.predicted_loss, self.unit)}"
            )
            lines.append(f"| {c.round} | {c.plan.describe()} | {middle} | {c.loss_text(self.unit)} | {mark} |")
        if self.examples:
            lines += ["", f"± is the paired standard error of each loss over the {self.examples:,} {self.examples_label}."]
            if self.margin:
                lines[-1] += (
                    f" A candidate is within the budget when its loss + {self.margin:g} × that error is at most "
                    f"{format_loss(self.max_loss, self.unit)}: the smallest one that passed is kept, so a plain loss ≤ budget would be optimistic."
                )
        if self.refit:
            lines += ["", f"**Refit:** {self.refit_note()}."]
        if self.unresolved():
            lines += ["", f"**Not settled:** {self.resolution_note()}."]
        return "\n".join(lines) + "\n"

    def figure(self):
        """Estimated size against verified loss for every candidate, with
        the budget line and the front's predictions (a matplotlib Figure)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.5, 4.2), dpi=110)
        ax = fig.add_axes([0.11, 0.13, 0.6, 0.77])
        latency = self.objective == "latency"

        def where(plan):
            return plan.multiply_adds / 1e6 if latency else plan.estimated_bytes / 1024

        if self.front:
            ax.plot([where(p) for p in self.front], [p.predicted_loss for p in self.front], color="lightgrey", marker=".", label="front (one-shot prediction)")
        for c in self.candidates:
            if c.standard_error:
                ax.errorbar([where(c.plan)], [c.loss], yerr=[c.standard_error], color="grey", lw=1, capsize=3, zorder=2)
            ax.scatter([where(c.plan)], [c.loss], color="tab:green" if c.within_budget else "tab:red", zorder=3, s=60 if c is self.chosen else 30, marker="*" if c is self.chosen else "o")
            ax.annotate(str(c.round), (where(c.plan), c.loss), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.axhline(self.max_loss, color="tab:red", ls="--", lw=1, label=f"budget {format_loss(self.max_loss, self.unit)}")
        ax.set_xscale("log")
        top = max([c.loss for c in self.candidates] + [self.max_loss]) * 1.5 + 0.1
        ax.set_ylim(min(0, *(c.loss for c in self.candidates)) - 0.1, top)
        ax.set_xlabel("million multiply-adds per example (log)" if latency else "estimated size of the compressed weights, gzip KiB (log)")
        ax.set_ylabel(f"loss ({self.unit}) on the selection split")
        ax.set_title("accuracy-budget search: candidates by round", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
        return fig

    def plot(self, path):
        """Writes `figure()` as a PNG."""
        from tfcompress import _io

        _io.write_figure(self.figure(), path)


@dataclasses.dataclass
class ShrinkProbe:
    """Round 1 of `search_shrunk`: the model with whole units removed and
    fine-tuned (float), measured against the budget."""

    units: float
    widths: dict  # layer -> (units before, after)
    loss: float
    standard_error: float
    share: float
    kept: bool

    def describe(self, unit, max_loss):
        widths = ", ".join(f"{n} {a}→{b}" for n, (a, b) in self.widths.items())
        se = "" if self.standard_error is None else f" ± {self.standard_error:.{2 if unit == 'points' else 4}f}"
        limit = format_loss(self.share * max_loss, unit)
        verdict = (
            f"within {limit} ({self.share:.0%} of the budget), so the plans below compress the shrunk model"
            if self.kept
            else f"over {limit} ({self.share:.0%} of the budget), so the plans below compress the model as it was"
        )
        return (
            f"Round 1 shrank first: {self.units:.0%} of the units kept ({widths}), fine-tuned, float: loss "
            f"{format_loss(self.loss, unit)}{se} on the selection split, {verdict}."
        )


# --------------------------------------------------------------- plans


def _weight_bytes(arrays, sparsity, clusters, rows=None):
    """gzip -6 size of `arrays` pruned, clustered (zeros kept) and rounded to
    int8; with `rows` (a fraction), of an embedding table (`arrays`' one
    array) cut to the rows `embeddings.prune_rows` keeps."""
    from tfcompress.embeddings import rows_kept
    from tfcompress.sensitivity import cluster_array, int_codes, prune_array

    total = 0
    for w in arrays:
        w = np.asarray(w)[: rows_kept(len(w), rows)] if rows else w
        w = prune_array(w, sparsity) if sparsity else np.asarray(w)
        if clusters:
            nonzero = w != 0
            if nonzero.any():
                w = w.copy()
                w[nonzero] = cluster_array(w[nonzero], clusters)
        total += len(gzip.compress(int_codes(w, 8)[0].astype(np.int8).tobytes(), 6))
    return total


def _layer_arrays(model, names, caller):
    """{layer name: its prunable weights as arrays} for the layers `names`."""
    from tfcompress._keras import ensure_tf_keras
    from tfcompress.pruning.layers import all_layers, prunable_weights

    by_name = {layer.name: layer for layer in all_layers(ensure_tf_keras(model, caller=caller))}
    return {n: [v.numpy() for v in prunable_weights(by_name[n])] for n in names}


def uniform_bytes(model, table, sparsity, clusters=None):
    """The estimated size (as `plan_front` estimates it) of pruning every
    layer of `table` to `sparsity`, clustering it to `clusters` (None: not)
    and rounding it to int8."""
    arrays = _layer_arrays(model, table.layers, "budget.uniform_bytes")
    return sum(_weight_bytes(a, sparsity, clusters) for a in arrays.values())


def _start_clusters(start_clusters, clusters):
    """`search`'s `start_clusters` resolved: "fewest" is the fewest in `clusters` (None when it has none)."""
    if start_clusters == "fewest":
        return min((c for c in clusters if c is not None), default=None)
    if start_clusters is not None and start_clusters not in clusters:
        raise ValueError(
            f"start_clusters must be one of clusters={list(clusters)!r}, None or 'fewest'. Received: start_clusters={start_clusters!r}. "
            "Fix: add it to clusters, or start without clusters (None)."
        )
    return start_clusters


def plan_front(model, table, clusters=(None, 16, 8)):
    """The plans no other plan beats on both estimated size and predicted
    loss, smallest first.

    Args:
        model: the uncompressed model `table` measured.
        table: a `SensitivityTable` of it; its prune rows give the sparsity
            choices (plus 0), its cluster rows the loss of `clusters`.
        clusters: the numbers of clusters to plan with (None: no clustering);
            each must have been measured.
    """
    names = list(table.layers)
    sparsities = [0.0] + table.settings("prune")
    measured = table.settings("cluster")
    for c in clusters:
        if c is not None and float(c) not in measured:
            raise ValueError(f"clusters={c} was not measured by the sensitivity table (it has {measured}). Fix: analyze with clusters including {c}.")
    weights = _layer_arrays(model, names, "budget.plan_front")
    rows_layer = _rows_layer(table)
    front = []
    for c in clusters:
        # per layer and sparsity: (KiB, predicted loss)
        common = {n: [_layer_cost(weights[n], table, n, s, c) for s in sparsities] for n in names}
        for r in [None, *table.settings("rows")]:
            cost = dict(common, **({rows_layer: [_layer_cost(weights[rows_layer], table, rows_layer, s, c, r) for s in sparsities]} if r else {}))
            seen = set()
            for lam in np.logspace(-4, 5, 160):  # bytes traded for loss at rate lam: the lower convex hull
                pick = {n: min(range(len(sparsities)), key=lambda i: cost[n][i][0] + lam * cost[n][i][1]) for n in names}
                key = tuple(pick[n] for n in names)
                if key in seen:
                    continue
                seen.add(key)
                front.append(
                    Plan(
                        {n: sparsities[pick[n]] for n in names},
                        c,
                        float(sum(cost[n][pick[n]][1] for n in names)),
                        int(sum(cost[n][pick[n]][0] for n in names) * 1024),
                        rows=r,
                        rows_layer=rows_layer if r else None,
                    )
                )
    front.sort(key=lambda p: (p.estimated_bytes, p.predicted_loss))
    pareto, best = [], math.inf
    for p in front:
        if p.predicted_loss < best - 1e-9:
            pareto.append(p)
            best = p.predicted_loss
    return pareto


def _layer_cost(arrays, table, layer, sparsity, clusters, rows=None):
    """(estimated KiB, predicted one-shot loss) of one layer pruned to
    `sparsity`, clustered to `clusters` (None: not) and rounded to int8;
    with `rows`, an embedding cut to that fraction of its rows first."""
    loss = _pos(table, layer, "quantize", 8) + (_pos(table, layer, "cluster", clusters) if clusters else 0.0)
    loss += _pos(table, layer, "prune", sparsity) if sparsity else 0.0
    loss += _pos(table, layer, "rows", rows) if rows else 0.0
    return _weight_bytes(arrays, sparsity, clusters, rows) / 1024, loss


def _rows_layer(table):
    """The layer whose rows `table` measured (None: no rows were)."""
    return next((r.layer for r in table.rows if r.kind == "rows"), None)


def _plan(weights, table, sparsity, clusters, rows=None):
    """The `Plan` of per-layer `sparsity`, `clusters` and `rows`, sized and predicted as `plan_front` does."""
    layer = _rows_layer(table) if rows else None
    cost = [_layer_cost(weights[n], table, n, sparsity[n], clusters, rows if n == layer else None) for n in sparsity]
    return Plan(dict(sparsity), clusters, float(sum(c[1] for c in cost)), int(sum(c[0] for c in cost) * 1024), rows=rows, rows_layer=layer)


def _uniform_plan(model, table, sparsity, clusters, size=None):
    """Every layer of `table` pruned to `sparsity` and clustered to
    `clusters`, sized and predicted as `plan_front` does; with `size` (bytes),
    pruned instead to the highest of 0, `sparsity` and the table's
    sparsities whose plan is at least that large (estimated), or 0 when none
    is."""
    weights = _layer_arrays(model, table.layers, "budget.search")
    names = list(table.layers)
    choices = [float(sparsity)] if size is None else sorted({0.0, float(sparsity), *table.settings("prune")})
    plans = [_plan(weights, table, {n: s for n in names}, clusters) for s in choices]
    return max((p for p in plans if size is None or p.estimated_bytes >= size), key=lambda p: max(p.sparsity.values(), default=0.0), default=plans[0])


def relax(plan, model, table, clusters=(None, 16, 8)):
    """A local back-off from `plan`, which lost too much: one change in it
    is made milder and the rest is kept. A plan that keeps fewer embedding
    rows gets the next larger fraction measured (or all of them) first:
    fine-tuning wins back the one-shot loss of pruning and clusters (the
    verified losses are mostly far below the predicted ones) but not that
    of removed rows (SST-2, 25% of the rows: +0.9 point at once, 1.2 and
    1.6 points more than the whole table after an epoch; BENCHMARKS.md,
    "Probe: embedding rows kept"), so the one-shot losses would rank the
    rows last. Otherwise the change with the largest one-shot loss is made
    milder: that layer's sparsity to the next lower one the table measured,
    or 0; or the clusters to the next larger number in `clusters`, or none.

    Args:
        plan: a `Plan` of `model` (from `plan_front`, or one `relax` made).
        model: the uncompressed model the plan compresses.
        table: the `SensitivityTable` behind the plan.
        clusters: the numbers of clusters the search may use.

    Returns:
        The milder `Plan`, sized and predicted like the front's; None when
        `plan` changes nothing but the int8 rounding.
    """
    if plan.rows:
        more = [r for r in table.settings("rows") if r > plan.rows + 1e-9]
        return _plan(_layer_arrays(model, list(plan.sparsity), "budget.relax"), table, plan.sparsity, plan.clusters, min(more) if more else None)
    steps = {}  # change -> (its one-shot loss, the plan with it made milder)
    sparsities = [0.0] + table.settings("prune")
    for n, s in plan.prunes.items():
        lower = max((t for t in sparsities if t < s - 1e-9), default=0.0)
        steps[n] = (_pos(table, n, "prune", s), {**plan.sparsity, n: lower}, plan.clusters)
    if plan.clusters:
        larger = [c for c in clusters if c is not None and c > plan.clusters]
        milder = min(larger) if larger else None
        steps["clusters"] = (sum(_pos(table, n, "cluster", plan.clusters) for n in plan.sparsity), plan.sparsity, milder)
    if not steps:
        return None
    _, sparsity, c = max(steps.values(), key=lambda v: v[0])
    return _plan(_layer_arrays(model, list(sparsity), "budget.relax"), table, sparsity, c)


def _pos(table, layer, kind, setting):
    """A one-shot loss, with the measurement noise below zero read as no loss."""
    try:
        return max(0.0, table.loss(layer, kind, setting))
    except KeyError:
        return 0.0


# --------------------------------------------------------------- search


class _Rounds:
    """What `search` and `search_units` share: the budget's checks, the
    unchanged model's value, each round's verification, and the choice."""

    def __init__(self, evaluate, max_loss, rounds, metric, unit, log, margin=1.0):
        if not (_is_number(max_loss) and max_loss >= 0):
            raise ValueError(f"max_loss must be a number >= 0 (points of accuracy, or bits/char). Received: max_loss={max_loss!r}.")
        if not (_is_number(margin) and margin >= 0):
            raise ValueError(
                f"margin must be a number >= 0 of standard errors added to each verified loss (0: the plain loss). Received: margin={margin!r}."
            )
        if not _is_count(rounds):
            raise ValueError(f"rounds must be an integer >= 1. Received: rounds={rounds!r}.")
        self.evaluate, self.max_loss, self.metric, self.unit, self.log, self.margin = evaluate, max_loss, metric, unit, log, margin
        self.candidates = []
        self.first_round = 1  # `search_shrunk` spends round 1 on shrinking
        self.shrunk = None  # the fraction of units the plans' model kept (display only)

    def start(self, model):
        """Measures the unchanged model (after the caller's own checks)."""
        self.baseline, self.baseline_scores = self._measure(model)

    def _measure(self, m):
        scores = np.asarray(self.evaluate(m), np.float64)
        return (float(scores), None) if scores.ndim == 0 else (float(scores.mean()), scores)

    def loss_of(self, model):
        """`(value, loss, standard error)` of `model` against the unchanged
        model on the selection split (the error None when `evaluate` gives
        one number)."""
        value, scores = self._measure(model)
        loss = loss_between(self.baseline, value, self.metric)
        return value, loss, None if scores is None else paired_standard_error(self.baseline_scores, scores, self.metric)

    def verify(self, r, plan, compressed):
        """Round `r`'s fine-tuned model measured against the budget: a `Candidate`."""
        value, loss, se = self.loss_of(compressed)
        c = Candidate(r, plan, value, loss, self.within(loss, se), compressed, se)
        self.candidates.append(c)
        checked = f" (loss + {self.margin:g} s.e.)" if self.margin and se is not None else ""
        self.log(f"[auto] round {r}: loss {c.loss_text(self.unit)} on the selection split: {'within' if c.within_budget else 'over'} the budget{checked}")
        return c

    def within(self, loss, se):
        """Whether `loss` keeps the budget with `margin` standard errors
        added (none when the error is not known)."""
        return loss + self.margin * (se or 0.0) <= self.max_loss + 1e-9

    def result(self, cost, front, table, objective="size"):
        """The candidate within budget with the least `cost(plan)` (ties: less
        loss), else the one that lost least; only its model is kept."""
        passing = [c for c in self.candidates if c.within_budget]
        if passing:
            chosen = min(passing, key=lambda c: (cost(c.plan), c.loss))
        else:
            chosen = min(self.candidates, key=lambda c: c.loss)
        for c in self.candidates:
            if c is not chosen:
                c.model = None  # keep only the chosen model in memory
        examples = 0 if self.baseline_scores is None else len(self.baseline_scores)
        return SearchResult(
            chosen.model, chosen, self.candidates, chosen.within_budget, self.baseline, front, table, self.max_loss, self.unit, examples,
            objective, self.metric, margin=self.margin,
        )


def search(model, table, fine_tune, evaluate, max_loss, *, rounds=4, margin=1.0, start="front", start_sparsity=0.8, start_clusters="fewest", recovery=None, clusters=(None, 16, 8), backoff="local", log=None, _state=None, _start_model=None):
    """Finds the smallest plan whose fine-tuned model keeps `max_loss`.

    Args:
        model: the trained, uncompressed model.
        table: its `SensitivityTable` (`sensitivity.analyze`, on the
            selection data).
        fine_tune: `plan -> model`: compresses a copy of `model` as the plan
            says and fine-tunes it (the recipe step prunes, clusters and
            quantization-aware trains with the run's data).
        evaluate: `model -> value` on the selection split (the same data
            as `table`): one number, or the metric per example
            (`sensitivity.per_example`), whose mean is the value and which
            gives each loss its paired standard error.
        max_loss: the budget, in the table's unit (points of accuracy, or
            bits per character).
        rounds: plans fine-tuned at most.
        margin: a plan keeps the budget when its verified loss plus this
            many paired standard errors is at most `max_loss` (0: the loss
            alone; with one number from `evaluate` there is no error and
            the loss alone is checked).
        start: what round 1 tries. `"front"` (the default): the smallest
            plan on the front at least as large (estimated) as every layer
            of the table pruned to `start_sparsity` and clustered to
            `start_clusters` (the fixed recipe with clustering, which
            fine-tuning is known to recover: SST-2, 3 seeds, 80% pruned and
            8 clusters, +0.27 points on dev, 20x smaller; BENCHMARKS.md,
            "Smaller"), its sparsity arranged by the one-shot losses.
            `"uniform"`: that plan itself, every layer alike. On SST-2 (3
            seeds, nothing shrunk first, 3 rounds) its selection losses
            (+0.22 to +0.55 points, about ±0.5) did not keep a 0.5-point
            budget with the margin on any seed, and the search ended 14.0x
            smaller at -0.61 points on dev in 4.6x the fixed recipe's time
            (BENCHMARKS.md).
        start_sparsity: the sparsity of that first plan. A model shrunk
            first (`search_shrunk`) aims at the size of the model before
            shrinking: with `"uniform"`, at the highest sparsity (of 0,
            `start_sparsity` and the table's) whose plan is at least as
            large.
        start_clusters: the clusters of that first size: `"fewest"` (the
            default) is the fewest in `clusters`, None not clustered.
        recovery: instead of `start_sparsity`, the first round tries the
            smallest plan predicted (one shot) to lose at most
            `recovery * max_loss`.
        clusters: see `plan_front`.
        backoff: after a plan over budget, `"local"` tries that plan with
            one change made milder (`relax`: more of the embedding's rows
            if it removed some, else one layer's sparsity one step down or
            more clusters, whichever had the largest one-shot loss), the
            rest kept; `"front"` moves along the front to a plan predicted
            to lose less (which may change every layer). Either way the next
            plan within budget sends the search along the front to smaller
            plans.
        log: a function taking progress lines.

    Returns:
        `SearchResult`.
    """
    log = log or (lambda line: None)
    rounds_ = _state or _Rounds(evaluate, max_loss, rounds, table.metric, table.unit, log, margin)
    if recovery is not None and not (_is_number(recovery) and recovery > 0):
        raise ValueError(f"recovery must be a number > 0 (or None, to start from start_sparsity). Received: recovery={recovery!r}.")
    if recovery is None and not (_is_number(start_sparsity) and 0 <= start_sparsity < 1):
        raise ValueError(f"start_sparsity must be a number in [0, 1). Received: start_sparsity={start_sparsity!r}.")
    if start not in ("uniform", "front"):
        raise ValueError(f'start must be "uniform" (every layer pruned to start_sparsity) or "front" (the front\'s plan of that size). Received: start={start!r}.')
    if backoff not in ("local", "front"):
        raise ValueError(f'backoff must be "local" or "front". Received: backoff={backoff!r}.')
    start_c = _start_clusters(start_clusters, clusters)
    higher = table.metric == "accuracy"
    if _state is None:
        rounds_.start(model)
    front = plan_front(model, table, clusters)
    for p in front:
        p.shrunk = rounds_.shrunk
    budget_scale = max(max_loss, 0.05 if higher else 0.005)  # a zero budget still ranks the plans

    above = below = None  # bytes of the largest plan over budget and of the smallest within it

    def plan_for(limit):
        """The smallest plan predicted within `limit`, strictly between the plans
        already decided (else the least lossy there); None when none is left."""
        allowed = [p for p in front if (above is None or p.estimated_bytes > above) and (below is None or p.estimated_bytes < below)]
        within = [p for p in allowed if p.predicted_loss <= limit]
        return within[0] if within else (allowed[-1] if allowed else None)

    low, high = 0.0, None  # multiples of the budget: `low` kept the budget, `high` did not
    first = None  # round 1's plan, when it is not the front's pick
    if recovery is not None:
        factor = recovery
    else:
        # `search_shrunk` aims at the size of the model as given: the shrunk one reaches it compressed less
        size = uniform_bytes(model if _start_model is None else _start_model, table, start_sparsity, start_c)
        what = f"every layer pruned {start_sparsity:.0%}" + (f" and clustered to {start_c}" if start_c else "") + (" (the model before shrinking)" if _start_model is not None else "")
        if start == "uniform":
            first = _uniform_plan(model, table, start_sparsity, start_c, None if _start_model is None else size)
            first.shrunk = rounds_.shrunk
            at = "" if _start_model is None else f"; the shrunk model, every layer pruned {max(first.sparsity.values()):.0%}, is about {first.estimated_bytes / 1024:,.1f} KiB"
            log(f"[auto] start: {what} is about {size / 1024:,.1f} KiB{at}, predicted to lose {format_loss(first.predicted_loss, table.unit)} one shot")
        else:
            first = next((p for p in front if p.estimated_bytes >= size), front[-1])
            log(f"[auto] start: {what} is about {size / 1024:,.1f} KiB; the front's plan of that size is predicted to lose {format_loss(first.predicted_loss, table.unit)} one shot")
        factor = max(first.predicted_loss, budget_scale) / budget_scale  # "front": round 1 then picks `first` (or one as small, predicted no worse)
        if start == "front":
            first = None
    milder = None
    for r in range(rounds_.first_round, rounds_.first_round + rounds):
        if first is not None:
            plan, how, first = first, "", None
        else:
            plan, how = (milder, "local back-off: ") if milder is not None else (plan_for(factor * budget_scale), "")
        if plan is None:
            break  # no plan left between one within budget and a larger one over it
        log(f"[auto] round {r}: {how}{plan.describe()} (predicted one-shot loss {format_loss(plan.predicted_loss, table.unit)}, about {plan.estimated_bytes / 1024:,.1f} KiB)")
        c = rounds_.verify(r, plan, fine_tune(plan))
        milder = None
        if c.within_budget:
            below = plan.estimated_bytes if below is None else min(below, plan.estimated_bytes)
            low = factor
            factor = factor * 4 if high is None else math.sqrt(low * high)
        else:
            above = plan.estimated_bytes if above is None else max(above, plan.estimated_bytes)
            high = factor
            factor = factor / 4 if low == 0 else math.sqrt(low * high)
            if backoff == "local":
                milder = relax(plan, model, table, clusters)
                if milder is not None:
                    milder.shrunk = rounds_.shrunk
                tried = [(t.plan.sparsity, t.plan.clusters, t.plan.rows) for t in rounds_.candidates]
                if milder is not None and ((milder.sparsity, milder.clusters, milder.rows) in tried or (below is not None and milder.estimated_bytes >= below)):
                    milder = None  # tried already, or no smaller than a plan known to keep the budget: along the front instead
    return rounds_.result(lambda plan: plan.estimated_bytes, front, table)


def search_shrunk(model, tune_shrunk, analyze, tuner_for, evaluate, max_loss, *, units=0.5, share=0.5, metric="accuracy", rounds=4, margin=1.0, log=None, **search_args):
    """`search`, with whole units removed first when that is cheap enough.

    Round 1 keeps `units` of the units of every layer that can lose them
    (`pruning.shrink`) and fine-tunes the result (`tune_shrunk`, float). When its loss on the selection split is at most `share` of the
    budget, the other rounds search the plans (pruning, clusters, int8) of
    that shrunk model, with its own sensitivity table, starting at the size
    `search` would start `model` at (so the shrunk model gets there
    compressed less); otherwise of `model` as it was. Every loss is against `model`'s value, so the budget is the
    whole path's. On an embedding-heavy text model, fewer units is the
    larger lever: the embedding table loses columns, which pruning only
    zeroes (BENCHMARKS.md, "Smaller").

    Args:
        model: the trained, uncompressed model.
        tune_shrunk: `small -> model`: fine-tunes `small`, `model` shrunk.
        analyze: `model -> SensitivityTable` on the selection split.
        tuner_for: `model -> fine_tune`, as `search` takes (`fine_tuner`).
        evaluate, max_loss, rounds, margin, log, search_args: see `search`;
            `rounds` counts round 1. With `rounds=1` nothing is shrunk.
            Round 1's own check has no margin: it only decides which model
            the plans compress, and every plan is checked with it.
        units: the fraction of units round 1 keeps.
        share: the part of the budget the shrinking may use.
        metric: the selection metric ("accuracy" or "bits/char").

    Returns:
        `SearchResult`, with `shrink` saying what round 1 measured.
    """
    from tfcompress import pruning

    log = log or (lambda line: None)
    if not (isinstance(units, float) and 0 < units < 1):
        raise ValueError(f"units must be a fraction in (0, 1) of the units to keep. Received: units={units!r}.")
    if not (_is_number(share) and 0 < share <= 1):
        raise ValueError(f"share must be a fraction in (0, 1] of the budget. Received: share={share!r}.")
    rounds_ = _Rounds(evaluate, max_loss, rounds, metric, "points" if metric == "accuracy" else "bits/char", log, margin)
    if rounds == 1:
        log("[auto] one round: nothing is shrunk first")
        return search(model, analyze(model), tuner_for(model), evaluate, max_loss, rounds=1, margin=margin, log=log, **search_args)
    small = pruning.shrink(model, units=units)
    widths = {n: (v["before"], v["after"]) for n, v in small.tfcompress_shrink_report["layers"].items() if v["after"] < v["before"]}
    if not widths:
        log(f"[auto] no layer loses units at {units:.0%}: nothing is shrunk first")
        return search(model, analyze(model), tuner_for(model), evaluate, max_loss, rounds=rounds, margin=margin, log=log, **search_args)
    rounds_.start(model)
    log(f"[auto] round 1: shrink to {units:.0%} of the units ({', '.join(f'{n} {a}→{b}' for n, (a, b) in widths.items())}), fine-tuned")
    small = tune_shrunk(small)
    _, loss, se = rounds_.loss_of(small)
    probe = ShrinkProbe(units, widths, loss, se, share, loss <= share * max_loss + 1e-9)
    log(f"[auto] round 1: loss {format_loss(loss, rounds_.unit)} on the selection split: {'kept' if probe.kept else 'not kept'} (at most {format_loss(share * max_loss, rounds_.unit)} may go to shrinking)")
    base = small if probe.kept else model
    rounds_.first_round, rounds_.shrunk = 2, units if probe.kept else None
    result = search(base, analyze(base), tuner_for(base), evaluate, max_loss, rounds=rounds - 1, log=log, _state=rounds_, _start_model=model if probe.kept else None, **search_args)
    result.shrink = probe
    return result


def _model_bytes(model):
    """gzip size of `model`'s prunable weights rounded to int8 (as `plan_front` estimates)."""
    from tfcompress.pruning.layers import all_layers, prunable_weights

    return sum(_weight_bytes([v.numpy() for v in prunable_weights(layer)], 0, None) for layer in all_layers(model))


def search_units(model, fine_tune, evaluate, max_loss, *, metric="accuracy", rounds=4, margin=1.0, start_units=0.5, log=None):
    """Finds the model with the fewest multiply-adds whose fine-tuned copy
    keeps `max_loss`: whole units removed (`pruning.shrink`, every layer that
    can lose units keeping the same fraction), which makes it faster, not
    only smaller (see `pruning.shrink`).

    Round 1 keeps `start_units` of the units. Within budget, the next round
    keeps halfway between it and the largest fraction found over budget
    (none yet: 0); over budget, halfway back towards the smallest fraction
    found within (none yet: all units). At most `rounds` rounds, each
    fine-tuned (`fine_tune(plan)`, `plan.units` the fraction kept) and
    verified (`evaluate` and `margin`, as in `search`).

    Returns:
        `SearchResult` with `objective="latency"` (no table, no front).
    """
    from tfcompress import pruning

    log = log or (lambda line: None)
    rounds_ = _Rounds(evaluate, max_loss, rounds, metric, "points" if metric == "accuracy" else "bits/char", log, margin)
    if not (isinstance(start_units, float) and 0 < start_units < 1):
        raise ValueError(f"start_units must be a fraction in (0, 1) of the units to keep. Received: start_units={start_units!r}.")
    rounds_.start(model)
    log(f"[auto] fewest multiply-adds within the budget: the model computes {pruning.multiply_adds(model) / 1e6:,.3f} M per example")
    within_at, over_at, keep, tried = 1.0, 0.0, start_units, set()
    for r in range(1, rounds + 1):
        small = pruning.shrink(model, units=keep)
        widths = tuple(v["after"] for v in small.tfcompress_shrink_report["layers"].values())
        if widths in tried:
            break  # the fractions left round to widths already tried
        tried.add(widths)
        plan = Plan({}, None, 0.0, _model_bytes(small), units=keep, multiply_adds=pruning.multiply_adds(small))
        log(f"[auto] round {r}: {plan.describe()} ({plan.multiply_adds / 1e6:,.3f} M multiply-adds)")
        c = rounds_.verify(r, plan, fine_tune(plan))
        if c.within_budget:
            within_at = keep
        else:
            over_at = keep
        keep = (within_at + over_at) / 2
    return rounds_.result(lambda plan: plan.multiply_adds, [], None, "latency")


# --------------------------------------------------------------- the whole path


QAT_RATE = 5e-4  # the learning rate of a plan's quantization-aware epochs, and of `refit_verified`


def fine_tuner(model, fit, *, prune_epochs=2, cluster_epochs=1, quantize_epochs=1, steps_per_epoch=None, shrink_epochs=2, counts=None):
    """`plan -> QAT model`: with `plan.units`, removes whole units first
    (`pruning.shrink`) and fine-tunes for `shrink_epochs`; with `plan.rows`,
    keeps that fraction of the embedding's rows (`embeddings.prune_rows`,
    the shared row weighted by `counts`, token counts per id); prunes a copy of
    `model` to the plan's per-layer targets while training (the sparsity
    ramps up over `prune_epochs` when `steps_per_epoch` is known), clusters
    it (zeros kept) and trains it quantization-aware.
    `fit(model, epochs, learning_rate)` compiles and trains a model and
    returns it."""
    from tfcompress import clustering, embeddings, pruning, quantization

    def fine_tune(plan):
        current = model
        if plan.units:
            current = fit(pruning.shrink(current, units=plan.units), shrink_epochs, 1e-3)
        if plan.rows:
            current = embeddings.prune_rows(current, keep=plan.rows, counts=counts, layer=plan.rows_layer)
        if plan.prunes:
            pruned = pruning.prune(current, target_sparsity=plan.prunes, epochs=prune_epochs, steps_per_epoch=steps_per_epoch)
            current = pruning.strip(fit(pruned, prune_epochs, 1e-3))
        if plan.clusters:
            clustered = clustering.cluster(current, clusters=plan.clusters, preserve_sparsity="auto")
            current = clustering.strip(fit(clustered, cluster_epochs, 1e-4))
        return fit(quantization.quantize(current), quantize_epochs, QAT_RATE)

    return fine_tune


# The teacher's share in each fine-tune's targets in `compress` and the `auto` step for a classifier
# (0: the labels alone). On SST-2, 0.5 made the file 1.11 +- 0.14 points more accurate than the
# labels alone on a fixed 20x plan and the --max-loss 0.5 row 1.23 points (3 of 3 seeds each,
# BENCHMARKS.md); a language model's fine-tunes train on the next characters alone.
TEACHER_WEIGHT = 0.5


def default_teacher_weight(metric):
    """`TEACHER_WEIGHT` for a classifier (`metric` "accuracy"), 0 for a
    language model ("bits/char"), whose windows have a label per step."""
    return TEACHER_WEIGHT if metric == "accuracy" else 0.0


def teacher_targets(teacher, x, y, weight):
    """The training targets of a fine-tune that learns from `teacher` too:
    `(1 - weight) * label + weight * teacher's output` per example, as
    probabilities (one column for one sigmoid unit, else one per class; train
    on them with `target_loss`). `weight` 0 gives `y` back unchanged.

    Self-distillation at temperature 1, with the targets computed once
    before training: the compressed model keeps the TFMOT wrappers and
    `model.fit` of a plain fine-tune (no second model runs while it trains).

    Args:
        teacher: the uncompressed classifier (outputs are probabilities).
        x, y: the training inputs and their class ids.
        weight: the teacher's share, in [0, 1].
    """
    from tfcompress._keras import predict

    if not _is_share(weight):
        raise ValueError(f"weight must be a number in [0, 1] (the teacher's share of each target; 0: the labels alone). Received: weight={weight!r}.")
    if not weight:
        return y
    classes = teacher.output_shape[-1]
    y = np.asarray(y)
    if (y.ndim > 1 and y.shape[-1] != 1) or len(teacher.output_shape) != 2:
        raise ValueError(
            f"teacher targets need a classifier with one label per example; received labels of shape {y.shape} for a model with outputs "
            f"{teacher.output_shape}. Fix: teacher_weight 0 (the labels alone) for a language model or a sequence of labels."
        )
    labels = y.reshape(-1).astype(np.float32)
    hard = labels.reshape(-1, 1) if classes == 1 else np.eye(classes, dtype=np.float32)[labels.astype(np.int64)]
    soft = np.asarray(predict(teacher, x, batch_size=512), np.float32).reshape(hard.shape)
    return (1 - weight) * hard + weight * soft


def target_loss(model, targets):
    """The loss to train `model` on `targets`: class ids or, from
    `teacher_targets`, probabilities per class."""
    if model.output_shape[-1] == 1:
        return "binary_crossentropy"
    return "categorical_crossentropy" if np.ndim(targets) == 2 and np.shape(targets)[-1] > 1 else "sparse_categorical_crossentropy"


def selection_scorer(x, y, metric, groups=None):
    """`model -> scores` on the selection split, the `evaluate` that `search`
    takes: the metric per example of `(x, y)`, or with `groups` (`(x, y,
    group)`: every held-out example with the id of its group, a sentence and
    the phrases cut from it) each group's mean, so that groups weigh alike
    and the paired standard error over them is clustered by group."""
    from tfcompress._keras import predict
    from tfcompress.sensitivity import group_means

    if groups is None:
        return lambda m: per_example(predict(m, x, batch_size=512), y, metric)
    xg, yg, group = (np.asarray(a) for a in groups)
    if not len(xg) == len(yg) == len(group):
        raise ValueError(f"groups must be (x, y, group) of one length. Received lengths {len(xg)}, {len(yg)} and {len(group)}.")
    return lambda m: group_means(per_example(predict(m, xg, batch_size=512), yg, metric), group)


def token_counts(model, x):
    """How often each id of `model`'s largest Embedding occurs in `x` (integer
    token ids): `np.bincount`, one count per row, for `embeddings.prune_rows`
    and `sensitivity.analyze(rows=...)`."""
    from tfcompress._keras import ensure_tf_keras
    from tfcompress.embeddings import row_table

    model = ensure_tf_keras(model, caller="budget.token_counts")
    table, why = row_table(model)
    if table is None:
        raise ValueError(f"rows: model {model.name!r} has no rows to keep fewer of: {why}. Fix: leave rows out.")
    ids = np.asarray(x)
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"rows: the training inputs are {ids.dtype} and the embedding's rows are kept by token frequency, which needs integer "
            f"token ids (layer {table.name!r} reads them). Fix: feed integer ids, or leave rows out."
        )
    rows = int(table.embeddings.shape[0])
    ids = ids.ravel()
    return np.bincount(ids[(ids >= 0) & (ids < rows)].astype(np.int64), minlength=rows)


def refit_plan(model, result, tuner_for, tune_shrunk, data):
    """`result`'s chosen plan replayed from `model` with training that sees
    more data (`data` names it): the tuners train on train + selection once
    the search has made every choice. With a plan built on a shrunk model
    (`search_shrunk`), `model` is shrunk the same way and fine-tuned first
    (`tune_shrunk`), then the plan is compressed from that (`tuner_for`).
    Sets `result.model` (and the chosen candidate's) to the refit model and
    `result.refit` to `data`; the verified model is let go.

    The selection split can no longer measure the refit model (it trained on
    it): the losses in `result` are the verified model's, as `summary` and
    `to_markdown` then say."""
    from tfcompress import pruning

    plan = result.chosen.plan
    base = model
    if plan.shrunk:
        base = tune_shrunk(pruning.shrink(model, units=plan.shrunk))
    result.chosen.model = result.model = None  # the verified model goes before the refit one is built
    result.model = result.chosen.model = tuner_for(base)(plan)
    result.refit = data
    return result


def _is_count(value):
    """Whether `value` is a count (of epochs, of rounds): an integer >= 1 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value):
    """Whether `value` is a real number: an int or a float, not a bool (a bool is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_share(value):
    """Whether `value` is a share: a real number in [0, 1] (not a bool)."""
    return _is_number(value) and 0 <= value <= 1


def refit_verified(result, fit, data, epochs=1, learning_rate=QAT_RATE):
    """`result`'s verified model trained `epochs` more at `learning_rate`
    (the fine-tune's QAT rate) with training that sees more data (`data`
    names it; `fit(model, epochs, learning_rate)` trains on it), once the
    search has made every choice. Unlike `refit_plan` it starts from the
    verified weights, not from a new random start, and keeps what the plan
    made of the model: the QAT wrappers hold its zeros and clusters
    (`quantization.quantize`'s preserve_sparsity and preserve_clusters), and
    shrunk layers stay shrunk. Sets `result.model` (and the chosen
    candidate's), `result.refit` and `result.refit_epochs`.

    The selection split can no longer measure the model (it trained on it):
    the losses in `result` are the verified weights', as `summary` and
    `to_markdown` then say."""
    if not _is_count(epochs):
        raise ValueError(f"epochs must be an integer >= 1 (the epochs the verified model trains further). Received: epochs={epochs!r}.")
    result.model = result.chosen.model = fit(result.chosen.model, epochs, learning_rate)
    result.refit, result.refit_epochs = data, epochs
    return result


def compress(model, train, selection, max_loss, *, metric="accuracy", batch_size=128, sparsities=(0.5, 0.8, 0.9, 0.95), clusters=(None, 16, 8), rows=(), prune_epochs=2, cluster_epochs=1, quantize_epochs=1, rounds=4, margin=1.0, start="front", start_sparsity=0.8, start_clusters="fewest", recovery=None, objective="size", shrink_epochs=2, start_units=0.5, backoff="local", shrink_first=0.5, shrink_share=0.5, refit=True, refit_from="plan", refit_epochs=1, groups=None, teacher_weight=None, log=None):
    """The smallest model within `max_loss`, from arrays: `sensitivity.analyze`
    on `selection`, then `search` with `fine_tuner` training on `train`.
    With `shrink_first` (a fraction of units; None: not), round 1 removes
    whole units first (`search_shrunk`). With `objective="latency"`, the one
    with the fewest multiply-adds (`search_units`: whole units removed, then
    QAT), without a table.

    Args:
        model: a trained float classifier (or character model), tf_keras or
            Keras 3.
        train: `(x, y)` to fine-tune on.
        selection: `(x, y)` to measure and verify on: data carved from the
            training data, not the dev set you report on.
        max_loss: points of accuracy (or bits/char with `metric="bits/char"`).
        refit: once the plan is chosen, replay it training on `train` and
            `selection` together (`refit_plan`; the default, as in the
            recipe step): the model returned is then not the verified one,
            so measure it on data no choice used. It costs one more
            fine-tune; False returns the verified model. The plan starts
            from `model` as given, which never saw `selection` (the recipe's
            `auto` step trains its dense model again first: `refit_dense`).
        refit_from: `"plan"` (the default): the refit replays the plan from
            `model` as above; `"verified"`: the verified model trains
            `refit_epochs` (an integer >= 1) more on `train` and `selection`
            (`refit_verified`), so it keeps the verified weights as its
            start. On SST-2 it was no more accurate than `refit=False` and
            below `"plan"` (BENCHMARKS.md).
        groups: `(x, y, group)`, to verify each candidate on group means
            instead of `selection` example by example: every held-out
            example with the id of its group (a sentence and the phrases
            cut from it, as `text.containment_groups` finds them; the
            recipe's `phrases: true`). Each group's mean counts once, and
            each loss's standard error is clustered by group. `selection`
            still makes the sensitivity table; a refit adds these examples
            to training instead of `selection`'s.
        rows: fractions in (0, 1) of the embedding table's rows the plans may
            keep, the rarest ids sharing one row (`embeddings.prune_rows`;
            default none: every row kept; the recipe's `rows: auto` tries
            [0.75, 0.5] for a classifier). The token ids must be ordered by
            frequency, as `tfcompress.text` vocabularies are; the shared row
            is the mean of the rows it replaces, weighted by how often each
            id occurs in `train`.
        teacher_weight: the share of `model`'s own outputs in the targets of
            every fine-tune and refit (`teacher_targets`; 0: the labels
            alone). A classifier only. None (the default):
            `default_teacher_weight(metric)`, 0.5 for a classifier and 0 for
            a language model.
        the rest: see `search`, `fine_tuner` and `sensitivity.analyze`.

    Returns:
        `SearchResult`; `result.model` is the QAT model to export
        (`export.to_tflite`), `result.within_budget` says whether it kept
        the budget.
    """
    from tfcompress import keras, sensitivity
    from tfcompress._keras import ensure_tf_keras

    if objective not in ("size", "latency"):
        raise ValueError(f"objective must be 'size' (the smallest file) or 'latency' (the fewest multiply-adds). Received: objective={objective!r}.")
    if refit_from not in ("plan", "verified"):
        raise ValueError(f"refit_from must be 'plan' (replay the chosen plan) or 'verified' (train the verified model further). Received: refit_from={refit_from!r}.")
    if not _is_count(refit_epochs):
        raise ValueError(f"refit_epochs must be an integer >= 1 (the epochs of a refit from the verified model). Received: refit_epochs={refit_epochs!r}.")
    if teacher_weight is None:
        teacher_weight = default_teacher_weight(metric)
    if not _is_share(teacher_weight):
        raise ValueError(f"teacher_weight must be a number in [0, 1] (the share of the model's own outputs in the fine-tunes' targets; 0: the labels alone), or None for the default. Received: teacher_weight={teacher_weight!r}.")
    model = ensure_tf_keras(model, caller="budget.compress")
    (x, y), (xs, ys) = train, selection
    counts = token_counts(model, x) if rows else None

    def fitter(x, y):
        y = teacher_targets(model, x, y, teacher_weight)
        loss = target_loss(model, y)

        def fit(m, epochs, learning_rate):
            m.compile(keras.optimizers.Adam(learning_rate), loss, ["accuracy"])
            m.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
            return m

        def tuner_for(base):
            return fine_tuner(
                base, fit, prune_epochs=prune_epochs, cluster_epochs=cluster_epochs, quantize_epochs=quantize_epochs,
                steps_per_epoch=int(np.ceil(len(x) / batch_size)), shrink_epochs=shrink_epochs, counts=counts,
            )

        return (lambda small: fit(small, shrink_epochs, 1e-3)), tuner_for, fit

    evaluate = selection_scorer(xs, ys, metric, groups)
    tune_shrunk, tuner_for, _ = fitter(x, y)
    args = {"margin": margin, "start": start, "start_sparsity": start_sparsity, "start_clusters": start_clusters, "recovery": recovery, "clusters": clusters, "backoff": backoff}

    def analyze(m):
        return sensitivity.analyze(m, xs, ys, sparsities=sparsities, bits=[8], clusters=[c for c in clusters if c], rows=rows, counts=counts, metric=metric)

    if objective == "latency":
        result = search_units(model, tuner_for(model), evaluate, max_loss, metric=metric, rounds=rounds, margin=margin, start_units=start_units, log=log)
    elif shrink_first is None:
        result = search(model, analyze(model), tuner_for(model), evaluate, max_loss, rounds=rounds, log=log, **args)
    else:
        result = search_shrunk(
            model, tune_shrunk, analyze, tuner_for, evaluate, max_loss, units=shrink_first, share=shrink_share, metric=metric, rounds=rounds, log=log, **args,
        )
    held_x, held_y = (xs, ys) if groups is None else groups[:2]
    if groups is not None:
        result.examples_label = f"selection groups, each the mean over its examples ({len(held_x):,} examples)"
    if refit:
        refit_shrunk, refit_tuner, refit_fit = fitter(np.concatenate([x, held_x]), np.concatenate([y, held_y]))
        data = f"train + selection ({len(x) + len(held_x):,} examples)"
        if refit_from == "verified":
            result = refit_verified(result, refit_fit, data, refit_epochs)
        else:
            result = refit_plan(model, result, refit_tuner, refit_shrunk, data)
    return result
