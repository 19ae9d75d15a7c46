"""Loading labelled texts from TSV, CSV, JSONL files or a folder per label.

`load_texts` reads any of these into a `LabeledTexts`: the texts, integer
label ids, and the label names to map ids back. Columns are chosen by name or
position; a header is detected or declared; the encoding is declared or
detected (BOM, then UTF-8, then cp1252, then Latin-1). A malformed row is
reported with the file and line number.

`builtin_corpus()` is English text that every Python has (its own bundled
documentation), for demos that must run with no data files and no network.
"""

import csv
import dataclasses
import json
import os

import numpy as np

__all__ = ["LabeledTexts", "DataFormatError", "load_texts", "detect_encoding", "builtin_corpus"]

TEXT_NAMES = ("text", "sentence", "review", "content", "document", "body")
LABEL_NAMES = ("label", "labels", "sentiment", "class", "category", "target", "y")
FORMATS = ("tsv", "csv", "jsonl", "folder")


class DataFormatError(ValueError):
    """A data file does not have the expected layout; names file and line."""


@dataclasses.dataclass
class LabeledTexts:
    """Texts with integer labels.

    Attributes:
        texts: the texts.
        labels: int32 label ids, `labels[i]` for `texts[i]`.
        label_names: `label_names[id]` is the original label (as a string).
        source: where the data came from.
        encoding: the text encoding that was used.
    """

    texts: list
    labels: np.ndarray
    label_names: list
    source: str = ""
    encoding: str = "utf-8"

    def __len__(self):
        return len(self.texts)

    @property
    def num_classes(self):
        return len(self.label_names)

    def names(self, ids):
        """Label ids -> original label strings."""
        return [self.label_names[int(i)] for i in ids]

    def split(self, fraction, seed=0, groups=None):
        """(first, second): a random `1 - fraction` / `fraction` split.

        With `groups` (`text.containment_groups` of these texts), whole
        groups are held out instead and `second` holds their roots only (see
        `text.grouped_split`): no held-out text is then a phrase of a kept
        one, or the other way round."""
        if not 0 < fraction < 1:
            raise ValueError(f"split fraction must be in (0, 1). Received: {fraction!r}.")
        if groups is not None:
            from tfcompress.text.groups import grouped_split

            if len(groups) != len(self):
                raise ValueError(f"groups are for {len(groups)} examples, these texts are {len(self)}.")
            halves = grouped_split(groups, fraction, seed)
        else:
            order = np.random.default_rng(seed).permutation(len(self))
            cut = len(self) - int(round(fraction * len(self)))
            halves = order[:cut], order[cut:]
        parts = []
        for idx in halves:
            parts.append(
                LabeledTexts(
                    [self.texts[i] for i in idx], self.labels[idx], self.label_names, self.source, self.encoding
                )
            )
        return tuple(parts)


def detect_encoding(path, sample_bytes=1 << 20):
    """Guesses a file's text encoding: BOM, else UTF-8, else cp1252, else Latin-1.

    Reads at most `sample_bytes` from the start and as many from the end (a
    1 GB file costs 2 MiB), so a byte that does not decode between the two
    samples shows when the file is read, as a `DataFormatError` that names
    the encoding to pass.
    """
    import codecs

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(sample_bytes)
        tail = b""
        if size > sample_bytes:
            f.seek(max(sample_bytes, size - sample_bytes))
            tail = f.read().lstrip(bytes(range(0x80, 0xC0)))  # start at a character boundary
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    for enc in ("utf-8", "cp1252"):
        try:
            for sample in (head, tail):
                codecs.getincrementaldecoder(enc)().decode(sample, final=sample is tail or size <= sample_bytes)
            return enc
        except UnicodeDecodeError:
            continue
    return "latin-1"


def _label_ids(raw_labels, where, label_names=None):
    """Maps raw label strings to ids; returns (ids, names)."""
    if label_names is not None:
        names = [str(n) for n in label_names]
    else:
        unique = sorted(set(raw_labels))
        if all(_is_int(v) for v in unique):
            unique = sorted(unique, key=int)
        names = unique
    index = {n: i for i, n in enumerate(names)}
    ids = np.empty(len(raw_labels), np.int32)
    for i, value in enumerate(raw_labels):
        try:
            ids[i] = index[value]
        except KeyError:
            raise DataFormatError(
                f"{where[i]}: label {value!r} is not one of the given label_names "
                f"{names}. Fix: add it to label_names, or fix the row."
            ) from None
    return ids, names


def _is_int(value):
    try:
        int(value)
        return True
    except ValueError:
        return False


def _resolve_column(spec, header, defaults, role, path):
    """A column name or position -> position."""
    if isinstance(spec, int):
        return spec
    if header is None:
        if spec is None:
            return None
        raise DataFormatError(
            f"{path}: {role}_column={spec!r} names a column, but the file has no header "
            "row. Fix: give the column's position (0-based), or set header=True if the "
            "first row holds the column names."
        )
    lowered = [h.strip().lower() for h in header]
    if spec is None:
        for name in defaults:
            if name in lowered:
                return lowered.index(name)
        return None
    if spec.strip().lower() not in lowered:
        raise DataFormatError(
            f"{path}, line 1: no column named {spec!r} for the {role}. Columns: {header}. "
            f"Fix: use one of those names or a position."
        )
    return lowered.index(spec.strip().lower())


def _looks_like_header(row):
    cells = {c.strip().lower() for c in row}
    return bool(cells & set(TEXT_NAMES + LABEL_NAMES))


def _read_delimited(path, fmt, text_column, label_column, header, encoding, delimiter):
    if delimiter is None:
        delimiter = "\t" if fmt == "tsv" else ","
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    with open(path, encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting, strict=True)
        rows = []
        try:
            for row in reader:
                rows.append((reader.line_num, row))
        except csv.Error as err:
            raise DataFormatError(
                f"{path}, line {reader.line_num}: malformed {fmt.upper()} ({err}). Fix: "
                "close the quoted field or escape the quote character."
            ) from None
        except UnicodeDecodeError as err:
            raise DataFormatError(
                f"{path}: cannot be read as {encoding} ({err.reason} at byte {err.start}). "
                "Fix: pass the right encoding=..., or leave encoding=None to detect it."
            ) from None
    rows = [(n, r) for n, r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise DataFormatError(f"{path}: no rows.")
    if header == "auto":
        header = isinstance(text_column, str) or isinstance(label_column, str) or _looks_like_header(rows[0][1])
    head = rows.pop(0)[1] if header else None
    t_col = _resolve_column(text_column, head, TEXT_NAMES, "text", path)
    l_col = _resolve_column(label_column, head, LABEL_NAMES, "label", path)
    width = len(head) if head else len(rows[0][1]) if rows else 0
    if t_col is None:
        t_col = 0
    if l_col is None:
        l_col = width - 1
    if t_col == l_col:
        raise DataFormatError(
            f"{path}: the text and label columns are both column {t_col}. Fix: set "
            "text_column= and label_column= explicitly."
        )
    texts, raw, where = [], [], []
    need = max(t_col, l_col) + 1
    for line, row in rows:
        if len(row) < need:
            raise DataFormatError(
                f"{path}, line {line}: expected at least {need} {fmt.upper()} fields "
                f"(text in column {t_col}, label in column {l_col}), found {len(row)}: "
                f"{delimiter.join(row)[:80]!r}. Fix: repair or remove the row."
            )
        label = row[l_col].strip()
        if not label:
            raise DataFormatError(f"{path}, line {line}: the label (column {l_col}) is empty.")
        texts.append(row[t_col])
        raw.append(label)
        where.append(f"{path}, line {line}")
    return texts, raw, where


def _read_jsonl(path, text_column, label_column, encoding):
    for spec, role in ((text_column, "text"), (label_column, "label")):
        if isinstance(spec, int):
            raise DataFormatError(
                f"{path}: {role}_column={spec} is a position, but JSONL rows are objects. "
                f"Fix: give the key name of the {role}."
            )
    texts, raw, where = [], [], []
    with open(path, encoding=encoding) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(
                    f"{path}, line {line_no}: invalid JSON ({err.msg} at column {err.colno})."
                ) from None
            if not isinstance(obj, dict):
                raise DataFormatError(f"{path}, line {line_no}: expected a JSON object per line.")
            keys = {k.lower(): k for k in obj}
            tkey = text_column or next((keys[n] for n in TEXT_NAMES if n in keys), None)
            lkey = label_column or next((keys[n] for n in LABEL_NAMES if n in keys), None)
            for key, role in ((tkey, "text"), (lkey, "label")):
                if key is None or key not in obj:
                    raise DataFormatError(
                        f"{path}, line {line_no}: no {role} field"
                        + (f" {key!r}" if key else "")
                        + f"; the object has keys {sorted(obj)}. Fix: set {role}_column=<key>."
                    )
            if not isinstance(obj[tkey], str):
                raise DataFormatError(f"{path}, line {line_no}: the text {tkey!r} is not a string.")
            texts.append(obj[tkey])
            raw.append(str(obj[lkey]).strip())
            where.append(f"{path}, line {line_no}")
    if not texts:
        raise DataFormatError(f"{path}: no rows.")
    return texts, raw, where


def _read_folder(path, encoding):
    labels = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))
    if not labels:
        raise DataFormatError(
            f"{path}: a folder dataset needs one sub-folder per label, each holding one "
            "text file per example; found no sub-folders."
        )
    texts, raw, where, encodings = [], [], [], set()
    for label in labels:
        folder = os.path.join(path, label)
        for name in sorted(os.listdir(folder)):
            file = os.path.join(folder, name)
            if name.startswith(".") or not os.path.isfile(file):
                continue
            enc = encoding or detect_encoding(file)
            encodings.add(enc)
            try:
                with open(file, encoding=enc) as f:
                    texts.append(f.read())
            except UnicodeDecodeError as err:
                raise DataFormatError(f"{file}: cannot be read as {enc} ({err.reason}).") from None
            raw.append(label)
            where.append(file)
    if not texts:
        raise DataFormatError(f"{path}: the label folders hold no files.")
    return texts, raw, where, "/".join(sorted(encodings))


def load_texts(
    path,
    format=None,
    text_column=None,
    label_column=None,
    header="auto",
    encoding=None,
    delimiter=None,
    label_names=None,
):
    """Loads labelled texts from a TSV, CSV or JSONL file, or a folder.

    Args:
        path: a `.tsv`/`.csv`/`.jsonl` file, or a folder with one sub-folder
            per label (each file in it is one text).
        format: `"tsv"`, `"csv"`, `"jsonl"` or `"folder"`; `None` decides from
            the extension (`.txt` counts as TSV).
        text_column: column name or 0-based position (key for JSONL); `None`
            looks for a header named text/sentence/review/..., else column 0.
        label_column: likewise; `None` looks for label/sentiment/class/...,
            else the last column.
        header: `True`, `False` or `"auto"` (a first row naming known columns
            is a header; naming a column implies one).
        encoding: the text encoding; `None` detects it.
        delimiter: the field separator (default tab for TSV, comma for CSV).
        label_names: the label order to use (e.g. the training set's
            `label_names`, so a dev set gets the same ids). By default labels
            are sorted, numerically if they are all integers.

    Returns:
        A `LabeledTexts`.

    Raises:
        DataFormatError: malformed row, unknown column, unknown label; the
            message names the file and line.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder.")
    if format is None:
        if os.path.isdir(path):
            format = "folder"
        else:
            ext = os.path.splitext(path)[1].lower()
            format = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}.get(ext)
            if format is None:
                raise DataFormatError(
                    f"{path}: cannot tell the format from the extension {ext!r}. Fix: pass "
                    f"format= one of {FORMATS}."
                )
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}. Received: format={format!r}.")
    if header not in (True, False, "auto"):
        raise ValueError(f"header must be True, False or 'auto'. Received: header={header!r}.")
    if format == "folder":
        texts, raw, where, used = _read_folder(path, encoding)
    else:
        used = encoding or detect_encoding(path)
        if format == "jsonl":
            try:
                texts, raw, where = _read_jsonl(path, text_column, label_column, used)
            except UnicodeDecodeError as err:
                raise DataFormatError(f"{path}: cannot be read as {used} ({err.reason}).") from None
        else:
            try:
                texts, raw, where = _read_delimited(path, format, text_column, label_column, header, used, delimiter)
            except UnicodeDecodeError as err:
                raise DataFormatError(
                    f"{path}: cannot be read as {used} ({err.reason}, byte 0x{err.object[err.start]:02x}). Fix: "
                    "pass the file's encoding (encoding='cp1252', data.encoding in a recipe), or save it as UTF-8."
                ) from None
    ids, names = _label_ids(raw, where, label_names)
    return LabeledTexts(texts, ids, names, path, used)


def builtin_corpus():
    """English text that ships with every CPython: its bundled documentation.

    About 465 KB from `pydoc_data.topics` (the text behind `help()`), in a
    fixed order, so a demo needs no data files and no network.
    """
    from pydoc_data import topics

    return "\n\n".join(topics.topics[key].strip() for key in sorted(topics.topics)) + "\n"
