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

    def __init__(self, title="tfcompress report", records=None, meta=None):
        self.title = title
        self.records = list(records or [])
        self.meta = dict(meta or {})

    def add(self, record=None, **fields):
        """Adds a `Record` (or builds one from keyword arguments); returns it."""
        record = record or Record(**fields)
        self.records.append(record)
        return record

    def __len__(self):
        return len(self.records)

    # ------------------------------------------------------------ rendering

    def to_dict(self):
        return {"title": self.title, "meta": self.meta, "records": [dataclasses.asdict(r) for r in self.records]}

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
        return "\n".join(lines) + "\n"

    def to_text(self):
        headers, rows = self.table_rows()
        widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([fmt.format(*headers), fmt.format(*["-" * w for w in widths])] + [fmt.format(*map(str, r)) for r in rows])

    def _repr_markdown_(self):
        return self.to_markdown().replace("![size versus quality](report.png)", "")

    def plot(self, path):
        """Writes a PNG of size (gzip KiB, log scale) versus the metric, one point per record."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        points = [r for r in self.records if r.value is not None and (r.gzip_bytes or r.bytes)]
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        for r in points:
            size = (r.gzip_bytes or r.bytes) / 1024
            marker = "s" if r.kind == "tflite" else "o"
            ax.scatter(size, r.value, marker=marker, s=40, color="tab:blue" if r.kind == "tflite" else "tab:orange")
            ax.annotate(r.step, (size, r.value), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if points:
            ax.set_xscale("log")
            ax.set_ylabel(points[0].metric + (" (higher is better)" if points[0].higher_is_better else " (lower is better)"))
        ax.set_xlabel("size, gzip KiB (log scale)")
        ax.set_title(self.title)
        ax.grid(True, alpha=0.3)
        ax.scatter([], [], marker="o", color="tab:orange", label="Keras model")
        ax.scatter([], [], marker="s", color="tab:blue", label="TFLite file")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        with _io.atomic_path(path, "plot") as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)

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
        return cls(data.get("title", "tfcompress report"), [Record.from_dict(r) for r in data.get("records", [])], data.get("meta"))


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serializable: {value!r}")
