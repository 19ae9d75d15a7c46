"""One record per compression step, as JSON, Markdown, a plot, or in a notebook.

A `Report` collects `Record`s (step name, parameters, sizes, metric, latency)
and writes `report.json` (the source of truth), `report.md` and `report.png`
(size versus metric for every step and export mode) into a folder. A report
folder can be re-rendered from its JSON (`Report.load(folder).save(folder)`,
or `tfcompress report FOLDER`). In a notebook a `Report` displays as a table.
"""

import dataclasses
import json
import math
import os

import numpy as np

from tfcompress import _io

__all__ = ["Record", "Report"]


@dataclasses.dataclass
class Record:
    """What one step produced.

    Attributes:
        step: a short name ("train", "prune 80%", "export dynamic", ...).
        kind: "keras" (a model in memory) or "tflite" (a file).
        params: number of parameters (nonzero ones for sparse models in `nonzero`).
        bytes: size of the saved model or file.
        gzip_bytes: its gzip -9 size.
        metric: the name of the quality measure ("accuracy", "bits/char").
        value: its value.
        higher_is_better: the metric's direction.
        latency_ms: single-example latency, if measured.
        nonzero: nonzero parameters, if the model is sparse.
        notes: anything worth knowing.
    """

    step: str
    kind: str = "keras"
    params: int = None
    bytes: int = None
    gzip_bytes: int = None
    metric: str = None
    value: float = None
    higher_is_better: bool = True
    latency_ms: float = None
    nonzero: int = None
    notes: str = ""

    @classmethod
    def from_dict(cls, data):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"Record: unknown fields {sorted(unknown)}; expected {sorted(fields)}.")
        return cls(**data)


def _size_ticks(lo, hi):
    """Round sizes spanning [lo, hi] for a log axis: the finest of
    (1, 1.2, ... 9), (1, 1.5, 2, 3, 5, 7), (1, 2, 5), (1) x 10^k that gives
    2 to 7 ticks."""
    lo, hi = max(min(lo, hi), 1e-3), max(lo, hi, 1e-3)
    if hi / lo < 1.3:
        lo, hi = lo / 1.3, hi * 1.3
    chosen = []
    for steps in ((1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9), (1, 1.5, 2, 3, 5, 7), (1, 2, 5), (1,)):
        ticks = [m * 10.0**k for k in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1) for m in steps]
        below = [t for t in ticks if t <= lo * 1.0001]
        above = [t for t in ticks if t >= hi / 1.0001]
        chosen = sorted({below[-1], *[t for t in ticks if lo < t < hi], above[0]})
        if len(chosen) <= 7:
            break
    return chosen


def _number_points(fig, ax, points, sizes):
    """Writes 1, 2, ... beside the points, each where it overlaps no earlier
    number (tried right-above, right-below, left-above, left-below, further out)."""
    to_pixels = ax.transData.transform
    placed = []
    scale = fig.dpi / 72  # points to pixels
    for n, (r, size) in enumerate(zip(points, sizes), start=1):
        x, y = to_pixels((size, r.value))
        options = [(6, 4), (6, -11), (-13, 4), (-13, -11), (14, 4), (14, -11), (-21, 4), (-21, -11)]
        best = options[0]
        for dx, dy in options:
            px, py = x + dx * scale, y + dy * scale
            if all(abs(px - qx) > 11 * scale or abs(py - qy) > 9 * scale for qx, qy in placed):
                best = (dx, dy)
                break
        placed.append((x + best[0] * scale, y + best[1] * scale))
        ax.annotate(str(n), (size, r.value), textcoords="offset points", xytext=best, fontsize=8, fontweight="bold")


def _plain_kib(value):
    """A tick label in plain digits: 0.5, 3, 30, 1,000."""
    if value >= 10:
        return f"{value:,.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _short(step, width=34):
    return step if len(step) <= width else step[: width - 1] + "…"


def _kib(n):
    return "—" if n is None else f"{n / 1024:,.1f}"


def _num(v, digits=4):
    if v is None:
        return "—"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}"


class Report:
    """A list of `Record`s with a title; saves as JSON, Markdown and PNG."""

    def __init__(self, title="tfcompress report", records=None, meta=None, sections=None):
        self.title = title
        self.records = list(records or [])
        self.meta = dict(meta or {})
        self.sections = dict(sections or {})
        """Title -> Markdown, shown after the table (a step's own findings)."""

    def add(self, record=None, **fields):
        """Adds a `Record` (or builds one from keyword arguments); returns it."""
        record = record or Record(**fields)
        self.records.append(record)
        return record

    def __len__(self):
        return len(self.records)

    # ------------------------------------------------------------ rendering

    def to_dict(self):
        data = {"title": self.title, "meta": self.meta, "records": [dataclasses.asdict(r) for r in self.records]}
        if self.sections:
            data["sections"] = self.sections
        return data

    def table_rows(self):
        headers = ["step", "kind", "params", "size KiB", "gzip KiB", "metric", "latency ms", "notes"]
        rows = []
        for r in self.records:
            metric = "—" if r.value is None else f"{r.metric} {_num(r.value)}"
            params = _num(r.params) if r.nonzero is None else f"{_num(r.params)} ({_num(r.nonzero)} nonzero)"
            rows.append([r.step, r.kind, params, _kib(r.bytes), _kib(r.gzip_bytes), metric, _num(r.latency_ms, 3), r.notes])
        return headers, rows

    def to_markdown(self):
        headers, rows = self.table_rows()
        lines = [f"# {self.title}", ""]
        for key, value in self.meta.items():
            lines.append(f"- **{key}**: {value}")
        if self.meta:
            lines.append("")
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "---|" * len(headers))
        for row in rows:
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
        if any(r.bytes and r.value is not None for r in self.records):
            lines += ["", "![size versus quality](report.png)"]
        for title, body in self.sections.items():
            lines += ["", f"## {title}", "", body.rstrip("\n")]
        return "\n".join(lines) + "\n"

    def to_text(self):
        headers, rows = self.table_rows()
        widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([fmt.format(*headers), fmt.format(*["-" * w for w in widths])] + [fmt.format(*map(str, r)) for r in rows])

    def _repr_markdown_(self):
        return self.to_markdown().replace("![size versus quality](report.png)", "")

    def figure(self):
        """A matplotlib figure of size (gzip KiB, log scale, plain KiB ticks)
        versus the metric: one numbered point per record, the numbers keyed
        to the step names beside the plot (so labels never collide)."""
        # A Figure of its own (no pyplot): drawing it never changes the caller's backend
        # or adds to pyplot's open figures; Jupyter still displays it.
        from matplotlib import ticker
        from matplotlib.figure import Figure

        points = [r for r in self.records if r.value is not None and (r.gzip_bytes or r.bytes)]
        fig = Figure(figsize=(9, 4.8), dpi=110)
        ax = fig.add_axes([0.09, 0.12, 0.56, 0.76])
        sizes = [(r.gzip_bytes or r.bytes) / 1024 for r in points]
        for r, size in zip(points, sizes):
            tflite = r.kind == "tflite"
            ax.scatter(size, r.value, marker="s" if tflite else "o", s=42, color="tab:blue" if tflite else "tab:orange", zorder=3)
        if points:
            ax.set_xscale("log")
            ticks = _size_ticks(min(sizes), max(sizes))
            ax.set_xlim(ticks[0] / 1.25, ticks[-1] * 1.25)
            ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _plain_kib(v)))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set_ylabel(points[0].metric + (" (higher is better)" if points[0].higher_is_better else " (lower is better)"))
            lo, hi = min(r.value for r in points), max(r.value for r in points)
            pad = (hi - lo) * 0.12 or abs(hi) * 0.02 or 0.01
            ax.set_ylim(lo - pad, hi + pad)
            _number_points(fig, ax, points, sizes)
        ax.set_xlabel("size, gzip KiB (log scale)")
        ax.set_title(self.title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.scatter([], [], marker="o", color="tab:orange", label="Keras model")
        ax.scatter([], [], marker="s", color="tab:blue", label="TFLite file")
        ax.legend(loc="best", fontsize=8)
        key = "\n".join(f"{n:>2}  {_short(r.step)}" for n, r in enumerate(points, start=1))
        fig.text(0.68, 0.88, key, fontsize=8, family="monospace", va="top")
        return fig

    def plot(self, path):
        """Writes `figure()` as a PNG."""
        _io.write_figure(self.figure(), path)

    def save(self, folder):
        """Writes report.json, report.md and report.png into `folder`."""
        os.makedirs(folder, exist_ok=True)
        _io.atomic_write_text(os.path.join(folder, "report.json"), json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n", "report")
        _io.atomic_write_text(os.path.join(folder, "report.md"), self.to_markdown(), "report")
        self.plot(os.path.join(folder, "report.png"))
        return [os.path.join(folder, f) for f in ("report.json", "report.md", "report.png")]

    @classmethod
    def load(cls, folder_or_file):
        """Reads a report.json (or the folder holding it)."""
        path = folder_or_file
        if os.path.isdir(path):
            path = os.path.join(path, "report.json")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no report.json here (write one with Report.save or tfcompress compress).") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}.") from None
        return cls(data.get("title", "tfcompress report"), [Record.from_dict(r) for r in data.get("records", [])], data.get("meta"), data.get("sections"))


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serializable: {value!r}")
