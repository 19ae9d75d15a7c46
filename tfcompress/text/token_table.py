"""`TokenTable`: many preprocessed texts in a few arrays instead of many lists."""

import contextlib
import gc

import numpy as np


@contextlib.contextmanager
def gc_paused():
    """Pauses the cyclic garbage collector while building many small lists.

    Token lists hold no reference cycles, so collection finds nothing, yet with
    TensorFlow's objects on the heap each pass is expensive: pausing it makes
    reading a cached SST-2 result five times faster.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class TokenTable:
    """Preprocessed texts, stored compactly.

    `tokens` holds each distinct token once; text `i` is the run
    `tokens[ids[offsets[i]:offsets[i] + lengths[i]]]`. This is what worker
    processes send back, what the disk cache holds, and what `Vocabulary`
    counts and encodes with numpy, so that hundreds of thousands of small
    Python strings are only made if you ask for token lists (`to_lists`).
    """

    __slots__ = ("tokens", "ids", "lengths")

    def __init__(self, tokens, ids, lengths):
        self.tokens = list(tokens)
        self.ids = np.asarray(ids, dtype=np.int32)
        self.lengths = np.asarray(lengths, dtype=np.int64)

    def __len__(self):
        return len(self.lengths)

    @classmethod
    def from_lists(cls, token_lists):
        index = {}
        ids = []
        append = ids.append
        for toks in token_lists:
            for tok in toks:
                i = index.get(tok)
                if i is None:
                    i = index[tok] = len(index)
                append(i)
        lengths = np.fromiter((len(t) for t in token_lists), np.int64, len(token_lists))
        return cls(list(index), np.asarray(ids, np.int32), lengths)

    @classmethod
    def concat(cls, tables):
        """One table from several, in order (distinct tokens merged)."""
        index = {}
        parts = []
        for table in tables:
            remap = np.fromiter(
                (index.setdefault(t, len(index)) for t in table.tokens), np.int32, len(table.tokens)
            )
            parts.append(remap[table.ids] if len(table.ids) else table.ids)
        ids = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        lengths = np.concatenate([t.lengths for t in tables]) if tables else np.zeros(0, np.int64)
        return cls(list(index), ids, lengths)

    def counts(self):
        """How often each of `tokens` occurs."""
        return np.bincount(self.ids, minlength=len(self.tokens))

    def to_lists(self):
        with gc_paused():
            words = [self.tokens[i] for i in self.ids.tolist()]
            out = []
            pos = 0
            for n in self.lengths.tolist():
                out.append(words[pos : pos + n])
                pos += n
        return out

    def __eq__(self, other):
        return isinstance(other, TokenTable) and self.to_lists() == other.to_lists()


def token_table(pre, texts):
    """Preprocesses `texts` with `pre` (anything with a `tokens(text)` method)
    straight into a `TokenTable`."""
    index = {}
    ids = []
    lengths = []
    append, extend = ids.append, lengths.append
    tokens_of = pre.tokens
    with gc_paused():
        for text in texts:
            toks = tokens_of(text)
            extend(len(toks))
            for tok in toks:
                i = index.get(tok)
                if i is None:
                    i = index[tok] = len(index)
                append(i)
    return TokenTable(list(index), np.asarray(ids, np.int32), np.asarray(lengths, np.int64))
