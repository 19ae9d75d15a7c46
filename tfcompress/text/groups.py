"""Held-out splits that do not leak: examples that are parts of one another
go to the same side.

Some labelled text sets are made of phrases cut from longer texts: SST-2's
67,349 training examples are the phrases of 6,920 parsed sentences, each
sentence among them. A split drawn at random from such examples puts most
held-out phrases beside the sentence they were cut from, so the held-out
score follows the training score, not the score on new sentences (on SST-2,
182 of 200 sampled training phrases occur inside another training example;
0 of 200 dev sentences do). `containment_groups` finds the texts that are
not part of any other (the *roots*) and gives every other text the group of
a root that contains it; `grouped_split` then holds out whole groups and
scores on their roots, as a dev set of whole sentences would.
"""

import re

import numpy as np

__all__ = ["containment_groups", "grouped_split", "word_sequences", "id_sequences", "Groups"]

_WORD = re.compile(r"\w+", re.UNICODE)
SUBSTRING_BUDGET = 30_000_000
"""At most this many token substrings of the roots are indexed (memory and time)."""


class Groups:
    """Which example belongs with which.

    Attributes:
        group: int array, one group id per example (the index of its root).
        root: bool array, True where the example is part of no other example.
        contained_share: the share of sampled examples found inside another
            one (or equal to it); below `min_share` no groups are formed and
            every example is its own root.
    """

    def __init__(self, group, root, contained_share):
        self.group, self.root, self.contained_share = group, root, contained_share

    @property
    def grouped(self):
        """True when some example was put with another one."""
        return bool((~self.root).any())

    def __len__(self):
        return len(self.group)


def word_sequences(texts):
    """Each text as its lower-cased words (`\\w+`), for `containment_groups`."""
    return [_WORD.findall(t.lower()) for t in texts]


def id_sequences(rows, pad_id=0):
    """Each padded id row without its padding, for `containment_groups`."""
    rows = np.asarray(rows)
    return [r[r != pad_id].tolist() for r in rows]


def containment_groups(sequences, min_share=0.05, sample=500, seed=0):
    """Groups examples whose tokens occur, in order and contiguous, inside a
    longer example (or that equal another one).

    Args:
        sequences: one sequence of hashable tokens per example (words, or ids
            without padding; see `word_sequences` and `id_sequences`).
        min_share: groups are formed only when at least this share of a
            random sample of `sample` examples lies inside another example;
            otherwise every example is its own root (the usual case of
            independent documents, at the cost of the sample only).
        seed: the sample's seed.

    Returns:
        `Groups`. An example inside several roots goes with the longest of
        them (the first one met among equals).
    """
    n = len(sequences)
    token_ids = {}
    strings = []
    for seq in sequences:  # each token as one character: contiguity becomes substring search
        strings.append("".join(_char(token_ids.setdefault(t, len(token_ids))) for t in seq))
    share = _contained_share(strings, sample, seed)
    group, root = np.arange(n), np.ones(n, bool)
    if n < 2 or share < min_share:
        return Groups(group, root, share)
    order = sorted(range(n), key=lambda i: -len(strings[i]))
    lengths = np.array([len(s) for s in strings])
    cap = 64  # longer parts are found by their first `cap` tokens, then checked whole
    while cap > 8 and np.minimum(lengths, cap).dot(lengths) > SUBSTRING_BUDGET:
        cap //= 2
    owner = {}  # substring (at most `cap` tokens) of a root -> the root
    for i in order:
        s = strings[i]
        if not s:
            continue  # an empty example is its own group
        r = owner.get(s[:cap])
        if r is not None and (len(s) <= cap or s in strings[r]):
            group[i], root[i] = r, False
            continue
        for a in range(len(s)):
            for b in range(a + 1, min(len(s), a + cap) + 1):
                owner.setdefault(s[a:b], i)
    return Groups(group, root, share)


def grouped_split(groups, fraction, seed=0):
    """Holds out whole groups, about `fraction` of the examples.

    Returns:
        `(kept, held_out)`: index arrays. `kept` is every example of the
        groups not held out; `held_out` is the roots of the held-out groups
        only (their parts would repeat them). Without groups this is a plain
        random split of `fraction`.

    Raises:
        ValueError: `fraction` outside (0, 1).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"split fraction must be in (0, 1). Received: {fraction!r}.")
    n = len(groups)
    ids, sizes = np.unique(groups.group, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(ids))
    taken = np.cumsum(sizes[order]) <= int(round(fraction * n))
    chosen = np.zeros(n, bool)
    chosen[ids[order[taken]]] = True  # group ids are root indices
    out = chosen[groups.group]
    return np.flatnonzero(~out), np.flatnonzero(out & groups.root)


def _char(i):
    # Skips the surrogate range, which a str may hold but cannot encode.
    return chr(i + 1) if i + 1 < 0xD800 else chr(i + 1 + 0x800)


def _contained_share(strings, sample, seed):
    n = len(strings)
    if n < 2:
        return 0.0
    joined = "\0".join(strings)
    picks = np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False)
    found = sum(1 for i in picks if strings[i] and joined.count(strings[i]) > 1)
    return found / len(picks)
