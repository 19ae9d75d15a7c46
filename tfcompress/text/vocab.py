"""Vocabulary and encoding: tokens to fixed-length id arrays, and back.

Ids 0 and 1 are reserved for padding and out-of-vocabulary tokens. Sequences
are padded and truncated at the **front** by default (`padding="pre"`,
`truncating="pre"`): an LSTM without masking then reads the real tokens last,
right before its final state, and learns; with padding at the end and no mask
it stays at chance on SST-2 (BENCHMARKS.md). Pre-padding needs no mask, so the
model still converts to TFLite's fused LSTM op.

The vocabulary is saved as a plain UTF-8 text file, one token per line, the
line number being the id (newline, carriage return, tab and backslash inside a
token are written as `\\n`, `\\r`, `\\t`, `\\\\`).
"""

import collections
import itertools
import json
import os

import numpy as np

from tfcompress.text.keras_rules import RULES, KerasTokenizerRules, VectorizerRules
from tfcompress.text.preprocess import TextPreprocessor, TokenTable

__all__ = ["Vocabulary", "TextEncoder", "pad_and_truncate"]

_PAD_SIDES = ("pre", "post")


def _escape(token):
    return (
        token.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )


def _unescape(line):
    out = []
    it = iter(line)
    for ch in it:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(it, "")
        out.append({"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}.get(nxt, "\\" + nxt))
    return "".join(out)


def _check_side(name, value):
    if value not in _PAD_SIDES:
        raise ValueError(f"{name} must be 'pre' or 'post'. Received: {name}={value!r}.")


def pad_and_truncate(id_lists, max_len, padding="pre", truncating="pre", pad_id=0):
    """Packs lists of ids into an int32 array of shape (len(id_lists), max_len)."""
    lengths = np.fromiter((len(ids) for ids in id_lists), np.int64, len(id_lists))
    flat = np.fromiter(itertools.chain.from_iterable(id_lists), np.int32, int(lengths.sum()))
    return _pack(flat, lengths, max_len, padding, truncating, pad_id)


def _pack(flat, lengths, max_len, padding, truncating, pad_id=0):
    """Vectorised padding of rows stored back to back in `flat`."""
    _check_side("padding", padding)
    _check_side("truncating", truncating)
    if not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len must be a positive integer. Received: max_len={max_len!r}.")
    n = len(lengths)
    out = np.full((n, max_len), pad_id, dtype=np.int32)
    keep = np.minimum(lengths, max_len)
    total = int(keep.sum())
    if total == 0:
        return out
    rows = np.repeat(np.arange(n), keep)
    offset = np.arange(total) - np.repeat(np.cumsum(keep) - keep, keep)  # 0..keep-1
    starts = np.cumsum(lengths) - lengths
    first = starts + (lengths - keep if truncating == "pre" else 0)
    src = np.repeat(first, keep) + offset
    cols = offset + (np.repeat(max_len - keep, keep) if padding == "pre" else 0)
    out[rows, cols] = flat[src]
    return out


class Vocabulary:
    """A token <-> id mapping with reserved padding (0) and OOV (1) ids.

    Build one from a corpus with `Vocabulary.build`, or pass the tokens.

    Args:
        tokens: the tokens in id order, starting with `pad_token` and
            `oov_token`.
        pad_token: the token of id 0.
        oov_token: the token of id 1, which every unknown token maps to.
            `None`: there is no OOV id and unknown tokens are **dropped**, as
            a Keras `Tokenizer` without `oov_token` does (id 1 is then an
            ordinary token).

    Example:

    >>> v = Vocabulary.build([["a", "b", "a"], ["c", "a"]], min_freq=2)
    >>> v.tokens
    ['<pad>', '<unk>', 'a']
    >>> v.encode([["a", "zzz"]], max_len=4).tolist()
    [[0, 0, 2, 1]]
    """

    def __init__(self, tokens, pad_token="<pad>", oov_token="<unk>"):
        tokens = list(tokens)
        reserved = [pad_token] + ([oov_token] if oov_token is not None else [])
        if tokens[: len(reserved)] != reserved:
            raise ValueError(
                f"Vocabulary tokens must start with the padding and OOV tokens "
                f"{reserved}. Received first tokens: {tokens[: len(reserved)]}."
            )
        index = {}
        for i, tok in enumerate(tokens):
            if tok in index:
                raise ValueError(
                    f"Vocabulary token {tok!r} appears twice (ids {index[tok]} and {i})."
                )
            index[tok] = i
        self.tokens = tokens
        self.pad_token = pad_token
        self.oov_token = oov_token
        self.oov_id = 1 if oov_token is not None else None
        self._index = index

    pad_id = 0

    @classmethod
    def build(cls, token_lists, max_size=None, min_freq=1, pad_token="<pad>", oov_token="<unk>"):
        """Builds a vocabulary from a corpus of token lists.

        Tokens are ordered by decreasing frequency, ties alphabetically, so the
        same corpus always gives the same ids.

        Args:
            token_lists: an iterable of token lists (e.g. a preprocessor's
                output) or a `TokenTable`.
            max_size: the total size including the two reserved ids (the
                `input_dim` of an Embedding); `None` keeps every token.
            min_freq: tokens seen fewer times are left out (they map to OOV).
        """
        if max_size is not None and (not isinstance(max_size, int) or max_size < 3):
            raise ValueError(
                "max_size counts the two reserved ids, so it must be an integer >= 3 "
                f"or None. Received: max_size={max_size!r}."
            )
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an integer >= 1. Received: min_freq={min_freq!r}.")
        if isinstance(token_lists, TokenTable):
            counts = dict(zip(token_lists.tokens, token_lists.counts().tolist()))
        else:
            counts = collections.Counter(itertools.chain.from_iterable(token_lists))
        counts.pop(pad_token, None)
        counts.pop(oov_token, None)
        ranked = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))

        if max_size is not None:
            ranked = ranked[: max_size - 2]
        return cls([pad_token, oov_token] + ranked, pad_token, oov_token)

    def __len__(self):
        return len(self.tokens)

    def __contains__(self, token):
        return token in self._index

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self):
        return f"Vocabulary(size={len(self)}, pad={self.pad_token!r}, oov={self.oov_token!r})"

    def ids(self, tokens):
        """Ids of one token list (unknown tokens -> `oov_id`, or dropped)."""
        get = self._index.get
        if self.oov_id is None:
            return [i for i in map(get, tokens) if i is not None]
        return [get(t, 1) for t in tokens]

    def char_ids(self, text):
        """Ids of the characters of one string, as an int32 array, computed with
        numpy (a 100 MB corpus needs no list of 100 M one-character strings).
        Same ids as `ids(list(text))`."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        unknown = -1 if self.oov_id is None else self.oov_id
        singles = {ord(t): i for t, i in self._index.items() if len(t) == 1}
        size = max(int(codes.max()) if len(codes) else 0, max(singles, default=0)) + 1
        table = np.full(size, unknown, np.int32)
        table[list(singles)] = list(singles.values())
        ids = table[codes]
        return ids[ids >= 0] if unknown < 0 else ids

    def encode(self, token_lists, max_len, padding="pre", truncating="pre"):
        """Token lists (or a `TokenTable`) -> int32 array (n, max_len)."""
        unknown = -1 if self.oov_id is None else self.oov_id
        get = self._index.get
        if isinstance(token_lists, TokenTable):
            mapping = np.fromiter((get(t, unknown) for t in token_lists.tokens), np.int32, len(token_lists.tokens))
            flat = mapping[token_lists.ids] if token_lists.ids.size else token_lists.ids
            lengths = token_lists.lengths
        else:
            lengths = np.fromiter((len(t) for t in token_lists), np.int64, len(token_lists))
            flat = np.fromiter(
                (get(t, unknown) for t in itertools.chain.from_iterable(token_lists)),
                np.int32,
                int(lengths.sum()),
            )
        if self.oov_id is None and flat.size:
            keep = flat >= 0
            rows = np.repeat(np.arange(len(lengths)), lengths)
            lengths = np.bincount(rows[keep], minlength=len(lengths)).astype(np.int64)
            flat = flat[keep]
        return _pack(flat, lengths, max_len, padding, truncating)

    def decode(self, ids, skip_padding=True):
        """Ids -> tokens (padding dropped unless `skip_padding=False`)."""
        return [self.tokens[int(i)] for i in ids if not (skip_padding and int(i) == 0)]

    def save(self, path):
        """Writes the plain-text vocabulary file (complete or not at all)."""
        from tfcompress._io import atomic_write_text

        atomic_write_text(path, "".join(_escape(t) + "\n" for t in self.tokens), "vocabulary")

    @classmethod
    def load(cls, path, has_oov=True):
        """Reads a file written by `save`; the first line is the padding token
        and, with `has_oov`, the second the OOV token."""
        with open(path, encoding="utf-8", newline="\n") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        reserved = 2 if has_oov else 1
        if len(lines) < reserved:
            raise ValueError(
                f"{path}: a vocabulary file needs at least the padding"
                f"{' and OOV lines' if has_oov else ' line'}; found {len(lines)} line(s)."
            )
        tokens = [_unescape(line) for line in lines]
        try:
            return cls(tokens, tokens[0], tokens[1] if has_oov else None)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


_PREPROCESSORS = (TextPreprocessor, KerasTokenizerRules, VectorizerRules)


class TextEncoder:
    """Raw text -> model input: a preprocessor, a vocabulary and a length.

    This is the piece a deployed model needs beside its `.tflite` file;
    `save(folder)` writes `vocab.txt` and `preprocessing.json` (`save(folder,
    name)`: `NAME.vocab.txt` and `NAME.preprocessing.json`, as `to_tflite` does).

    Build one from your texts (`fit`), or take over the tokenizer a Keras
    model was trained with (`from_keras`: a `Tokenizer`, its JSON, or a
    `TextVectorization` layer), so that the model gets the ids it knows.

    Args:
        preprocessor: a `TextPreprocessor` (NLTK), or the rules of a Keras
            tokenizer (`KerasTokenizerRules`, `VectorizerRules`).
        vocabulary: a `Vocabulary`.
        max_len: the fixed sequence length of the model input.
        padding: `"pre"` (default) or `"post"`.
        truncating: `"pre"` (default; keeps the end of long texts) or `"post"`.
    """

    def __init__(self, preprocessor, vocabulary, max_len, padding="pre", truncating="pre"):
        if not isinstance(preprocessor, _PREPROCESSORS):
            raise TypeError(
                f"TextEncoder(preprocessor=...) expects a TextPreprocessor, KerasTokenizerRules or "
                f"VectorizerRules. Received: {type(preprocessor).__name__}."
            )
        if not isinstance(vocabulary, Vocabulary):
            raise TypeError(
                f"TextEncoder(vocabulary=...) expects a Vocabulary. Received: "
                f"{type(vocabulary).__name__}."
            )
        _check_side("padding", padding)
        _check_side("truncating", truncating)
        if not isinstance(max_len, (int, np.integer)) or max_len < 1:
            raise ValueError(f"max_len must be a positive integer. Received: max_len={max_len!r}.")
        self.preprocessor = preprocessor
        self.vocabulary = vocabulary
        self.max_len = int(max_len)
        self.padding = padding
        self.truncating = truncating

    @classmethod
    def fit(cls, texts, preprocessor=None, max_len=None, max_size=20000, min_freq=1, **kwargs):
        """Builds the vocabulary from `texts`.

        `max_len=None` takes the 99th percentile of token counts (at least 8).
        Extra keyword arguments go to the preprocessor's call (`n_jobs`,
        `cache`, `progress`).
        """
        return cls.fit_transform(texts, preprocessor, max_len, max_size, min_freq, **kwargs)[0]

    @classmethod
    def fit_transform(cls, texts, preprocessor=None, max_len=None, max_size=20000, min_freq=1, **kwargs):
        """`fit`, and the encoded `texts`, preprocessing them only once.

        Returns:
            `(encoder, ids)`.
        """
        preprocessor = preprocessor or TextPreprocessor()
        table = preprocessor.table(texts, **kwargs)
        vocab = Vocabulary.build(table, max_size=max_size, min_freq=min_freq)
        if max_len is None:
            lengths = table.lengths if len(table) else [8]
            max_len = max(8, int(np.ceil(np.percentile(lengths, 99))))
        encoder = cls(preprocessor, vocab, max_len)
        return encoder, encoder.encode_tokens(table)

    @classmethod
    def from_keras(cls, obj, max_len=None, padding=None, truncating=None, model=None):
        """The encoder of a Keras tokenizer: the same ids, exactly.

        See `tfcompress.text.from_keras` for the arguments.
        """
        from tfcompress.text.keras_compat import from_keras

        return from_keras(obj, max_len=max_len, padding=padding, truncating=truncating, model=model)

    def __call__(self, texts, **kwargs):
        """Texts -> int32 array (n, max_len). Keyword arguments go to the
        preprocessor; the disk cache is not used (`cache=False`) unless asked
        for: encoding is what inference does, and it must not fill a disk."""
        kwargs.setdefault("cache", False)
        return self.encode_tokens(self.preprocessor.table(texts, **kwargs))

    def encode_tokens(self, token_lists):
        """Token lists or a `TokenTable` -> int32 array (n, max_len)."""
        return self.vocabulary.encode(token_lists, self.max_len, self.padding, self.truncating)

    @staticmethod
    def file_names(name=None):
        """`(vocabulary file, preprocessing file)` that `save(folder, name)` writes."""
        if name is None:
            return "vocab.txt", "preprocessing.json"
        return f"{name}.vocab.txt", f"{name}.preprocessing.json"

    def get_config(self, vocabulary_file="vocab.txt"):
        return {
            "preprocessor_class": type(self.preprocessor).__name__,
            "preprocessor": self.preprocessor.get_config(),
            "max_len": self.max_len,
            "padding": self.padding,
            "truncating": self.truncating,
            "vocabulary_file": vocabulary_file,
            "vocabulary_size": len(self.vocabulary),
            "pad_token": self.vocabulary.pad_token,
            "oov_token": self.vocabulary.oov_token,
        }

    def save(self, folder, name=None):
        """Writes `vocab.txt` and `preprocessing.json` into `folder` (with a
        `name`: `NAME.vocab.txt` and `NAME.preprocessing.json`, so that several
        models' files can share a folder)."""
        from tfcompress._io import atomic_write_text

        vocab_file, config_file = self.file_names(name)
        os.makedirs(folder, exist_ok=True)
        self.vocabulary.save(os.path.join(folder, vocab_file))
        payload = {"class_name": "TextEncoder", "config": self.get_config(vocab_file)}
        atomic_write_text(
            os.path.join(folder, config_file),
            json.dumps(payload, indent=2, ensure_ascii=False) + "\n",
            "preprocessing",
        )

    @classmethod
    def load(cls, path):
        """Reads what `save` wrote. `path`: the folder (its `preprocessing.json`,
        or its only `NAME.preprocessing.json`), a `NAME.preprocessing.json`
        file, or a `.tflite` file's `NAME.json` (its `preprocessing` entry is
        followed)."""
        path = _preprocessing_file(os.fspath(path))
        folder = os.path.dirname(path)
        try:
            with open(path, encoding="utf-8") as f:
                payload = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path} not found. Fix: pass a folder written by TextEncoder.save() (preprocessing.json + "
                "vocab.txt), a NAME.preprocessing.json file, or the NAME.json beside a .tflite file."
            ) from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}.") from None
        config = payload.get("config", {})
        kind = config.get("preprocessor_class", "TextPreprocessor")
        classes = {"TextPreprocessor": TextPreprocessor, **RULES}
        if kind not in classes:
            raise ValueError(
                f"{path}: unknown preprocessor_class {kind!r}; expected one of {sorted(classes)}. "
                "The file may come from a newer tfcompress."
            )
        has_oov = config.get("oov_token", "<unk>") is not None
        vocab = Vocabulary.load(os.path.join(folder, config.get("vocabulary_file", "vocab.txt")), has_oov=has_oov)
        if config.get("vocabulary_size") not in (None, len(vocab)):
            raise ValueError(
                f"{path} says the vocabulary has {config['vocabulary_size']} tokens but "
                f"{config.get('vocabulary_file', 'vocab.txt')} has {len(vocab)}: the two "
                "files do not belong together."
            )
        return cls(
            classes[kind].from_config(config["preprocessor"]),
            vocab,
            config["max_len"],
            config.get("padding", "pre"),
            config.get("truncating", "pre"),
        )

    def __eq__(self, other):
        return (
            isinstance(other, TextEncoder)
            and self.get_config() == other.get_config()
            and self.vocabulary == other.vocabulary
        )


def _preprocessing_file(path):
    """The preprocessing JSON `TextEncoder.load(path)` reads."""
    if os.path.isdir(path):
        plain = os.path.join(path, "preprocessing.json")
        named = sorted(f for f in os.listdir(path) if f.endswith(".preprocessing.json"))
        if os.path.exists(plain) or not named:
            return plain
        if len(named) > 1:
            raise ValueError(
                f"{path} holds the preprocessing of several models ({', '.join(named)}). Fix: pass the one "
                "you want, or the model's NAME.json."
            )
        return os.path.join(path, named[0])
    if path.endswith(".json") and not path.endswith("preprocessing.json") and os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}.") from None
        if isinstance(meta, dict) and str(meta.get("format", "")).startswith("tfcompress.tflite"):
            from tfcompress._io import recover_set

            folder, stem = os.path.split(os.path.abspath(path))
            if recover_set(folder, os.path.splitext(stem)[0]):  # a killed export's set, completed
                with open(path, encoding="utf-8") as f:
                    meta = json.load(f)
            if not meta.get("preprocessing"):
                raise ValueError(
                    f"{path} describes a .tflite file exported without text preprocessing (no encoder). Fix: "
                    "export with to_tflite(..., encoder=...) or tfcompress compress."
                )
            return os.path.join(os.path.dirname(path), meta["preprocessing"])
    return path
