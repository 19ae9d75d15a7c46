"""How much each layer can take: one layer compressed at a time, measured.

`analyze` prunes one layer's weights to each given sparsity (magnitude, per
weight tensor: what `pruning.prune` reaches at the end of its schedule),
rounds them to each given bit width (symmetric, per tensor, as 8-bit QAT
stores a Dense or LSTM kernel) and maps them to each given number of shared
values (k-means, as `clustering.cluster` starts), and evaluates the model
after each change, the other layers untouched. With `rows`, it also keeps
each given fraction of the embedding table's rows, the rarest ids sharing
one row (what `embeddings.prune_rows` makes of the model). Nothing is fine-tuned: each
figure is the loss right after the change, an upper bound on what training
afterwards leaves. The cost is one evaluation of the given data per row,
plus one for the baseline.

>>> table = sensitivity.analyze(model, x_sel, y_sel)   # doctest: +SKIP
>>> print(table.to_markdown())                            # doctest: +SKIP
>>> table.loss("lstm", "prune", 0.9)                      # doctest: +SKIP

A loss is in points of accuracy (percentage points) for a classifier and in
bits per character for a language model; positive means worse.
"""

import dataclasses
import json
import time

import numpy as np

__all__ = ["analyze", "SensitivityTable", "Row", "prune_array", "quantize_array", "cluster_array", "score", "per_example", "paired_standard_error", "loss_between", "format_loss"]

KINDS = ("prune", "quantize", "cluster", "rows")


@dataclasses.dataclass
class Row:
    """One measurement: `layer` changed by `kind` at `setting` (a sparsity,
    a bit width, or a number of clusters) gave `value` on the data, `loss`
    worse than the baseline."""

    layer: str
    params: int
    kind: str
    setting: float
    value: float
    loss: float


class SensitivityTable:
    """The result of `analyze`.

    Attributes:
        rows: the `Row`s, layer by layer.
        metric: "accuracy" or "bits/char".
        baseline: the metric of the unchanged model.
        examples: how many examples each evaluation read.
        evaluations: model evaluations made (rows + 1).
        seconds: the wall time of the analysis.
        fine_tune: what ran after each change ("none").
    """

    def __init__(self, rows, metric, baseline, examples, evaluations, seconds, fine_tune="none"):
        self.rows = list(rows)
        self.metric, self.baseline, self.examples = metric, baseline, examples
        self.evaluations, self.seconds, self.fine_tune = evaluations, seconds, fine_tune

    @property
    def unit(self):
        return "points" if self.metric == "accuracy" else "bits/char"

    @property
    def layers(self):
        """Layer names in model order, with their parameter counts."""
        seen = {}
        for r in self.rows:
            seen.setdefault(r.layer, r.params)
        return seen

    def loss(self, layer, kind, setting):
        """The measured loss of one change; KeyError names what was measured."""
        for r in self.rows:
            if r.layer == layer and r.kind == kind and np.isclose(r.setting, setting):
                return r.loss
        measured = sorted({(r.layer, r.kind, r.setting) for r in self.rows})
        raise KeyError(f"no row for layer {layer!r}, {kind} at {setting!r}; measured: {measured}")

    def settings(self, kind):
        """The measured settings of `kind`, mildest first."""
        return sorted({r.setting for r in self.rows if r.kind == kind}, reverse=kind != "prune")

    def most_sensitive(self):
        """The row with the largest loss (None without rows)."""
        return max(self.rows, key=lambda r: r.loss, default=None)

    # -------------------------------------------------------------- rendering

    def to_dict(self):
        return {
            "metric": self.metric, "baseline": self.baseline, "examples": self.examples,
            "evaluations": self.evaluations, "seconds": self.seconds, "fine_tune": self.fine_tune,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }

    @classmethod
    def from_dict(cls, data):
        rows = [Row(**r) for r in data["rows"]]
        return cls(rows, data["metric"], data["baseline"], data["examples"], data["evaluations"], data["seconds"], data["fine_tune"])

    def save(self, path):
        from tfcompress import _io

        _io.atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n", "sensitivity table")

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def summary(self):
        """One line: cost, and the most and least sensitive layer."""
        worst = self.most_sensitive()
        per_layer = {name: max(r.loss for r in self.rows if r.layer == name) for name in self.layers}
        calm = min(per_layer, key=per_layer.get) if per_layer else None
        text = (
            f"{self.evaluations} evaluations of {self.examples:,} examples in {self.seconds:.1f} s, "
            f"no fine-tuning (losses are upper bounds)"
        )
        if worst is not None and worst.loss <= 0:
            text += "; no single change made it worse on this data"
        elif worst is not None:
            text += (
                f"; most sensitive: {worst.layer} ({_setting(worst.kind, worst.setting)}: {format_loss(worst.loss, self.unit)}); "
                f"least: {calm} (at most {format_loss(per_layer[calm], self.unit)})"
            )
        return text

    def to_markdown(self):
        """A table: one line per layer, one column per change; cells are losses."""
        columns = [(k, s) for k in KINDS for s in self.settings(k)]
        lines = [
            f"Loss in {self.unit} against the unchanged model ({self.metric} {self.baseline:.4f}) when only that "
            f"layer is changed: {self.summary()}.",
            "",
            "| layer | params | " + " | ".join(_setting(k, s) for k, s in columns) + " |",
            "|---|---:|" + "---:|" * len(columns),
        ]
        for name, params in self.layers.items():
            cells = []
            for k, s in columns:
                try:
                    cells.append(f"{self.loss(name, k, s):+.2f}" if self.unit == "points" else f"{self.loss(name, k, s):+.4f}")
                except KeyError:
                    cells.append("—")
            lines.append(f"| {name} | {params:,} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def __str__(self):
        return self.to_markdown()

    def _repr_markdown_(self):
        return self.to_markdown()

    def figure(self):
        """Loss against sparsity, one line per layer, with the bit-width and
        cluster rows as marked points at the right (a matplotlib Figure)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 4.2), dpi=110)
        ax = fig.add_axes([0.1, 0.13, 0.62, 0.77])
        for name in self.layers:
            prune = sorted((r.setting, r.loss) for r in self.rows if r.layer == name and r.kind == "prune")
            line = ax.plot([0] + [p[0] for p in prune], [0] + [p[1] for p in prune], marker="o", label=name)[0]
            for r in self.rows:
                if r.layer == name and r.kind != "prune":
                    marker = {"quantize": "s", "cluster": "^", "rows": "v"}[r.kind]
                    offset = {"quantize": 0, "cluster": 3, "rows": 6}[r.kind]
                    ax.scatter([1.02 + 0.04 * (self.settings(r.kind).index(r.setting) + offset)], [r.loss], marker=marker, color=line.get_color())
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("sparsity of the one layer pruned (at the right: squares bit widths, triangles clusters, down triangles rows kept)")
        ax.set_ylabel(f"loss ({self.unit})")
        ax.set_title(f"sensitivity, one layer at a time ({self.metric} {self.baseline:.4f} unchanged)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
        return fig

    def plot(self, path):
        """Writes `figure()` as a PNG."""
        from tfcompress import _io

        _io.write_figure(self.figure(), path)


# ------------------------------------------------------------------ changes


def prune_array(w, sparsity):
    """`w` with its `round(sparsity * size)` smallest magnitudes set to zero."""
    w = np.asarray(w)
    k = int(round(sparsity * w.size))
    if k <= 0:
        return w.copy()
    flat = np.abs(w).reshape(-1)
    order = np.argpartition(flat, k - 1)[:k]
    out = w.copy().reshape(-1)
    out[order] = 0
    return out.reshape(w.shape)


def int_codes(w, bits):
    """`(codes, scale)`: `w` as integers in `[-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1]`
    (symmetric, per tensor, narrow range) and the step between them."""
    w = np.asarray(w)
    steps = 2 ** (bits - 1) - 1
    scale = float(np.abs(w).max()) / steps or 1.0
    return np.clip(np.round(w / scale), -steps, steps), scale


def quantize_array(w, bits):
    """`w` rounded to `2 ** (bits - 1) - 1` symmetric steps each side of 0
    (per tensor, narrow range: int8 keeps [-127, 127])."""
    w = np.asarray(w)
    codes, scale = int_codes(w, bits)
    return (codes * scale).astype(w.dtype)


def cluster_array(w, clusters, iterations=12):
    """`w` mapped to `clusters` shared values: k-means in one dimension from
    evenly spaced centroids (TFMOT's "linear" start)."""
    w = np.asarray(w)
    flat = w.reshape(-1).astype(np.float64)
    centroids = np.linspace(flat.min(), flat.max(), clusters)
    for _ in range(iterations):
        edges = (centroids[1:] + centroids[:-1]) / 2
        assign = np.searchsorted(edges, flat)
        sums = np.bincount(assign, flat, clusters)
        counts = np.bincount(assign, minlength=clusters)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(moved, centroids):
            break
        centroids = np.sort(moved)
    edges = (centroids[1:] + centroids[:-1]) / 2
    return centroids[np.searchsorted(edges, flat)].reshape(w.shape).astype(w.dtype)


_CHANGE = {"prune": prune_array, "quantize": quantize_array, "cluster": cluster_array}


# ------------------------------------------------------------------ analysis


def analyze(model, x, y, *, sparsities=(0.5, 0.8, 0.9, 0.95), bits=(8, 4), clusters=(16, 8), rows=(), counts=None, layers=None, metric="accuracy", batch_size=512):
    """Measures the loss of compressing each layer alone.

    Args:
        model: a tf_keras or Keras 3 model, not yet pruned, clustered or
            quantized (its weights are changed in place and put back before
            this returns, also on an error).
        x, y: the data to measure on: inputs and labels (class ids, or the
            next character's id for a language model). Use data no later
            choice is reported on: a split carved from training.
        sparsities, bits, clusters: the changes to measure per layer (any
            may be empty).
        rows: fractions in (0, 1) of the embedding table's rows to keep
            (default none): the rows of ids from `keep - 1` up are replaced
            by their mean, as `embeddings.prune_rows` makes them share one
            row. Measured on the largest Embedding only (among `layers`),
            whose ids must be ordered by frequency (as `tfcompress.text`
            vocabularies, Keras `Tokenizer` word indexes and
            `TextVectorization` vocabularies are).
        counts: token counts per id (one per row of that table, e.g.
            `np.bincount` of the training ids) to weight that mean; None:
            the plain mean.
        layers: layer names to measure; default every layer with weights
            `pruning.prune` takes (Embedding, Dense, Conv1D, recurrent
            layers, Bidirectional).
        metric: "accuracy" (loss in points) or "bits/char".

    Returns:
        `SensitivityTable`.

    Raises:
        ValueError: a wrapped model, an unknown layer or metric, a setting
            out of range.
    """
    from tfcompress._keras import ensure_tf_keras, predict
    from tfcompress.pruning.layers import PRUNABLE_TYPES, all_layers, is_pruned, prunable_weights

    if metric not in ("accuracy", "bits/char"):
        raise ValueError(f"metric must be 'accuracy' or 'bits/char'. Received: metric={metric!r}.")
    for name, values, ok, expected in (
        ("sparsities", sparsities, lambda v: 0 < v < 1, "fractions in (0, 1)"),
        ("bits", bits, lambda v: isinstance(v, int) and 2 <= v <= 16, "integers in [2, 16]"),
        ("clusters", clusters, lambda v: isinstance(v, int) and 2 <= v <= 256, "integers in [2, 256]"),
        ("rows", rows, lambda v: isinstance(v, float) and 0 < v < 1, "fractions in (0, 1)"),
    ):
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v)]
        if bad:
            raise ValueError(f"{name} must be {expected}. Received: {name}={list(values)!r} ({bad[0]!r} is not).")
    model = ensure_tf_keras(model, caller="sensitivity.analyze")
    wrapped = [layer.name for layer in all_layers(model) if type(layer).__name__ in ("PruneLowMagnitude", "QuantizeWrapper", "QuantizeWrapperV2", "ClusterWeights", "ClusterWeightsRNN")]
    if is_pruned(model) or wrapped:
        raise ValueError(
            f"model {model.name!r} has compression wrappers ({', '.join(wrapped[:3]) or 'pruning'}); analyze the "
            "model before pruning, clustering or quantization. Fix: pass the trained float model (or strip the "
            "wrappers first: pruning.strip, clustering.strip, quantization.strip)."
        )
    candidates = [layer for layer in all_layers(model) if isinstance(layer, PRUNABLE_TYPES) and prunable_weights(layer)]
    if layers is not None:
        names = {layer.name for layer in candidates}
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ValueError(f"layers={list(layers)!r}: no layer {unknown[0]!r} with weights to measure. Layers that have: {sorted(names)}.")
        candidates = [layer for layer in candidates if layer.name in layers]
    table_layer = _rows_layer(model, candidates, counts) if rows else None

    y = np.asarray(y)

    def evaluate():
        return score(predict(model, x, batch_size=batch_size), y, metric)

    started = time.perf_counter()
    baseline = evaluate()
    measured = []
    for layer in candidates:
        variables = prunable_weights(layer)
        originals = [v.numpy() for v in variables]
        params = int(sum(w.size for w in originals))
        try:
            change = {**_CHANGE, "rows": lambda w, keep: _share_rows(w, keep, counts, layer.name)}
            for kind, settings in (("prune", sparsities), ("quantize", bits), ("cluster", clusters), ("rows", rows if layer is table_layer else ())):
                for setting in settings:
                    for v, w in zip(variables, originals):
                        v.assign(change[kind](w, setting))
                    value = evaluate()
                    measured.append(Row(layer.name, params, kind, float(setting), value, loss_between(baseline, value, metric)))
        finally:
            for v, w in zip(variables, originals):
                v.assign(w)
    return SensitivityTable(measured, metric, baseline, len(y), len(measured) + 1, time.perf_counter() - started)


def _rows_layer(model, candidates, counts):
    """The Embedding whose rows `analyze(rows=...)` measures: the one
    `embeddings.prune_rows` cuts, which must be among `candidates`; a
    ValueError says why there is none."""
    from tfcompress import embeddings

    table, why = embeddings.row_table(model)
    if table is None:
        raise ValueError(f"rows: model {model.name!r} has no rows to keep fewer of: {why}. Fix: leave rows out (rows=()).")
    if table not in candidates:
        raise ValueError(
            f"rows: layer {table.name!r}, the model's embedding table, is not among the layers measured. "
            "Fix: include it in layers, or leave rows out (rows=())."
        )
    if counts is not None and len(counts) != table.embeddings.shape[0]:
        raise ValueError(
            f"counts has {len(counts)} entries; layer {table.name!r} has {table.embeddings.shape[0]} rows. "
            "Fix: one count per id (np.bincount(ids.ravel(), minlength=rows))."
        )
    return table


def _share_rows(w, keep, counts, layer):
    """`w` (an embedding table) with the rows from `keep - 1` up (`keep` a
    fraction of its rows, as `embeddings.prune_rows` counts it) set to their
    (count-weighted) mean."""
    from tfcompress import embeddings

    k = embeddings.rows_kept(w.shape[0], float(keep), layer)
    out = np.array(w, copy=True)
    out[k - 1 :] = embeddings.shared_row(w, k, counts, layer)
    return out


def _setting(kind, setting):
    if kind == "prune":
        return f"prune {setting:.0%}"
    if kind == "rows":
        return f"{setting:.0%} of rows"
    return f"{int(setting)} bits" if kind == "quantize" else f"{int(setting)} clusters"


def score(probs, y, metric):
    """The metric of predicted probabilities: "accuracy" or "bits/char"."""
    from tfcompress import metrics

    return metrics.accuracy(probs, y) if metric == "accuracy" else metrics.bits_per_char(probs, y)


def per_example(probs, y, metric):
    """The metric example by example (its mean is `score`): 1.0 or 0.0 for a
    right or wrong class, or each character's bits."""
    from tfcompress import metrics

    values = metrics.correct(probs, y) if metric == "accuracy" else metrics.char_bits(probs, y)
    return values.astype(np.float64)


def group_means(values, group):
    """The mean of `values` within each group (`group`: one id per value),
    in the order of the sorted ids: a sentence scored as the mean over
    itself and its phrases. Their mean weighs every group alike, and
    `paired_standard_error` over them is the error clustered by group."""
    ids, index = np.unique(np.asarray(group), return_inverse=True)
    return np.bincount(index, weights=np.asarray(values, np.float64), minlength=len(ids)) / np.bincount(index, minlength=len(ids))


def paired_standard_error(baseline, values, metric):
    """The standard error of `loss_between` two models scored example by
    example on the same data (`per_example`): how far the measured loss may
    be from the loss on the data's whole population, one standard error."""
    diff = np.asarray(values, np.float64) - np.asarray(baseline, np.float64)
    if diff.size < 2:
        return float("nan")
    return float(diff.std(ddof=1) / np.sqrt(diff.size)) * (100 if metric == "accuracy" else 1)


def loss_between(baseline, value, metric):
    """How much worse `value` is than `baseline`: points of accuracy, or bits/char."""
    return (baseline - value) * 100 if metric == "accuracy" else value - baseline


def format_loss(value, unit):
    """A loss with its sign and unit ("points" or "bits/char")."""
    return f"{value:+.2f} points" if unit == "points" else f"{value:+.4f} bits/char"
