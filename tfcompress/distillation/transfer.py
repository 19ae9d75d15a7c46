"""A transfer set: new inputs made from the training texts, for a teacher to label.

Tang et al. (2019, "Distilling Task-Specific Knowledge from BERT into Simple
Neural Networks") credit most of what their BiLSTM student gained to
inputs made this way; labelled by the teacher, they carry its knowledge
where the training set has no example. For each new text, a training text
is taken and each of its words, independently:

- **mask**: with probability `rates["mask"]` becomes `mask_token` (the
  vocabulary's unknown token, so the student learns what the teacher
  predicts without that word);
- **pos_swap**: else with probability `rates["pos_swap"]` becomes another
  word with the same part-of-speech tag, drawn from how often each word
  carries that tag in the training texts (NLTK's perceptron tagger);
- **wordnet_synonym**: else with probability `rates["wordnet_synonym"]`
  becomes a synonym from the word's most frequent WordNet sense for its
  part of speech (nouns, verbs, adjectives, adverbs; unchanged when it has
  none);

then, with probability `rates["ngram"]`, only an n-gram of it is kept (n
uniform in 1..`max_ngram`, at a uniform position). Texts equal to a training
text or to one made before are discarded and drawn again, as in the paper.

Words are the text's whitespace-separated tokens (SST-2 style, already
tokenized); the texts returned are joined with single spaces, for the
model's own preprocessing. The part-of-speech tagger and WordNet are NLTK
data (`averaged_perceptron_tagger_eng`, `wordnet`): read from `NLTK_DATA`,
never downloaded; a method whose data is missing raises `MissingNLTKData`
naming it. The result is cached on disk like preprocessing
(`$TFCOMPRESS_CACHE_DIR/transfer`, no pickle).

Cost: 1,000,000 texts from SST-2's 67,349 training phrases took 99 s in one
process (38 s of it tagging), about 10,000 texts a second (AMD EPYC, 2
cores, with a test run beside it).
"""

import hashlib
import json
import os
import re
import time

import numpy as np

__all__ = ["transfer_set", "METHODS", "DEFAULT_RATES", "TransferSet"]

METHODS = ("mask", "pos_swap", "ngram", "wordnet_synonym")
# Tang et al. 2019: p_mask = p_pos = 0.1, p_ng = 0.25; synonyms at the rate of a swap.
DEFAULT_RATES = {"mask": 0.1, "pos_swap": 0.1, "wordnet_synonym": 0.1, "ngram": 0.25}
CACHE_FORMAT = 1
_WORDNET_POS = {"N": "n", "V": "v", "J": "a", "R": "r"}


class TransferSet(list):
    """The augmented texts (a list of str), with where they came from.

    Attributes:
        sources: for each text, the index of the training text it was made from.
        seconds: how long building it took (0 when read from the cache).
        attempts: texts drawn, including the duplicates discarded.
    """

    def __init__(self, texts, sources, seconds=0.0, attempts=0):
        super().__init__(texts)
        self.sources = np.asarray(sources, np.int64)
        self.seconds = seconds
        self.attempts = attempts


class TransferOptionError(ValueError):
    """A bad `transfer_set` option; `option` names it ("n", "methods",
    "rates", "max_ngram"), so a recipe can point at its own key."""

    def __init__(self, option, message):
        super().__init__(message)
        self.option = option


def _size(n, count, name="n"):
    if isinstance(n, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[xX]\s*", n)
        if not m:
            raise TransferOptionError("n", f"{name} must be a number of texts or a multiple of the training texts such as '10x'. Received: {name}={n!r}.")
        return int(round(float(m.group(1)) * count))
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise TransferOptionError("n", f"{name} must be a positive number of texts or a multiple such as '10x'. Received: {name}={n!r}.")
    return int(n)


def check_options(n, methods, rates, max_ngram, n_name="n"):
    """Checks `transfer_set`'s options without texts (a recipe checks them
    before any step runs). Returns `(methods, rates)` as `transfer_set` uses
    them (every method's rate, 0 for those not chosen).

    Raises:
        TransferOptionError: naming the option and what is wrong with it.
    """
    _size(n, 1, n_name)
    if isinstance(methods, (str, bytes)):
        methods = [methods]
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise TransferOptionError("methods", f"methods must be some of {list(METHODS)}. Received: methods={list(methods)!r}.")
    if rates is not None and not isinstance(rates, dict):
        raise TransferOptionError("rates", f"rates must be a mapping of method to probability, such as {{'mask': 0.1}}. Received: rates={rates!r}.")
    rates = {**DEFAULT_RATES, **(rates or {})}
    for name, value in rates.items():
        if name not in METHODS:
            raise TransferOptionError("rates", f"rates has an unknown method {name!r}; methods are {list(METHODS)}.")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise TransferOptionError("rates", f"rates[{name!r}] must be a probability in [0, 1]. Received: {value!r}.")
    rates = {m: float(rates[m]) if m in methods else 0.0 for m in METHODS}
    if rates["mask"] + rates["pos_swap"] + rates["wordnet_synonym"] > 1:
        raise TransferOptionError(
            "rates",
            "rates for mask, pos_swap and wordnet_synonym are chances for the same word and must add up to at most 1. "
            f"Received: {rates['mask']} + {rates['pos_swap']} + {rates['wordnet_synonym']}.",
        )
    if isinstance(max_ngram, bool) or not isinstance(max_ngram, int) or max_ngram < 1:
        raise TransferOptionError("max_ngram", f"max_ngram must be an integer >= 1. Received: max_ngram={max_ngram!r}.")
    return methods, rates


def _check(texts, n, methods, rates, max_ngram):
    if isinstance(texts, (str, bytes)):
        raise TypeError("transfer_set expects a list of training texts; received one string. Fix: wrap it in a list.")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts[{bad[0]}] is a {type(texts[bad[0]]).__name__}, not a str: transfer_set augments text.")
    if not any(t.split() for t in texts):
        raise ValueError("transfer_set needs training texts with words; every text given is empty.")
    methods, rates = check_options(n, methods, rates, max_ngram)
    return texts, methods, rates


def transfer_set(texts, n="10x", *, methods=METHODS, rates=None, seed=0, mask_token="<unk>", max_ngram=5, cache=None, log=None):
    """Builds `n` new texts from `texts` for a teacher to label.

    Args:
        texts: the training texts (whitespace-tokenized words; SST-2 style).
        n: how many texts to make: a number, or a multiple of `len(texts)`
            such as `"10x"`.
        methods: any of `"mask"`, `"pos_swap"`, `"ngram"`, `"wordnet_synonym"`.
        rates: per-method probabilities (see the module docstring); default
            `DEFAULT_RATES` (Tang et al.'s 0.1 / 0.1 / 0.25, synonyms 0.1).
        seed: the same seed, texts and settings give the same set.
        mask_token: what a masked word becomes: the unknown token of the
            model's vocabulary (`<unk>` for the vocabularies tfcompress builds).
        max_ngram: the longest n-gram `ngram` keeps.
        cache: a folder for the cache, `False` for none; default
            `$TFCOMPRESS_CACHE_DIR/transfer` (`TFCOMPRESS_CACHE=off`: none).
        log: a function taking progress lines.

    Returns:
        `TransferSet`: a list of `n` texts, with `.sources`. Fewer when the
        training texts cannot give `n` distinct new ones (a warning says how
        many).

    Raises:
        MissingNLTKData: `pos_swap` without the tagger data, or
            `wordnet_synonym` without WordNet, naming the package and the fix.
        ValueError, TypeError: bad arguments, saying which.
    """
    texts, methods, rates = _check(texts, n, methods, rates, max_ngram)
    count = _size(n, len(texts))
    log = log or (lambda line: None)
    config = {"n": count, "rates": rates, "seed": int(seed), "mask_token": mask_token, "max_ngram": max_ngram}
    path = _cache_path(texts, config, cache)
    if path is not None and os.path.exists(path):
        try:
            result = _read(path)
            os.utime(path)
            log(f"[transfer] {len(result):,} texts read from the cache {path}")
            return result
        except (OSError, ValueError, KeyError):
            pass  # unreadable: build again and overwrite
    started = time.perf_counter()
    words = [t.split() for t in texts]
    tags = _tag(words, log) if rates["pos_swap"] or rates["wordnet_synonym"] else None
    pools = _pos_pools(words, tags) if rates["pos_swap"] else None
    synonyms = _Synonyms() if rates["wordnet_synonym"] else None
    rng = np.random.default_rng([int(seed), 1301])
    seen = set(" ".join(w) for w in words)
    out, sources = [], []
    usable = np.array([i for i, w in enumerate(words) if w], np.int64)
    attempts, limit = 0, 20 * count + 1000
    order = rng.permutation(usable)
    cursor = 0
    while len(out) < count and attempts < limit:
        if cursor == len(order):
            order, cursor = rng.permutation(usable), 0
        i = int(order[cursor])
        cursor += 1
        attempts += 1
        new = _augment(words[i], None if tags is None else tags[i], rates, rng, pools, synonyms, mask_token, max_ngram)
        text = " ".join(new)
        if text and text not in seen:
            seen.add(text)
            out.append(text)
            sources.append(i)
    seconds = time.perf_counter() - started
    if len(out) < count:
        import warnings

        warnings.warn(
            f"transfer_set: only {len(out):,} distinct new texts of the {count:,} asked for after {attempts:,} draws from "
            f"{len(texts):,} training texts. Fix: higher rates, more methods, or a smaller n.",
            stacklevel=2,
        )
    result = TransferSet(out, sources, seconds, attempts)
    log(f"[transfer] {len(out):,} texts from {len(texts):,} in {seconds:.1f} s ({attempts:,} draws)")
    if path is not None:
        _write(path, result)
    return result


def _augment(words, tags, rates, rng, pools, synonyms, mask_token, max_ngram):
    draws = rng.random(len(words))
    p_mask, p_pos, p_syn = rates["mask"], rates["pos_swap"], rates["wordnet_synonym"]
    new = list(words)
    for j, u in enumerate(draws):
        if u < p_mask:
            new[j] = mask_token
        elif u < p_mask + p_pos:
            pool = pools.get(tags[j])
            if pool is not None:
                new[j] = pool[0][int(np.searchsorted(pool[1], rng.random() * pool[1][-1], side="right"))]
        elif u < p_mask + p_pos + p_syn:
            choices = synonyms(words[j], tags[j])
            if choices:
                new[j] = choices[int(rng.integers(len(choices)))]
    if rates["ngram"] and rng.random() < rates["ngram"]:
        size = int(rng.integers(1, max_ngram + 1))
        if size < len(new):
            start = int(rng.integers(0, len(new) - size + 1))
            new = new[start : start + size]
    return new


def _tag(words, log):
    """Part-of-speech tags of every word (tagging each distinct text once)."""
    import nltk

    from tfcompress.text import nltk_data

    nltk_data.require("averaged_perceptron_tagger_eng")
    started = time.perf_counter()
    distinct = {}
    for w in words:
        if w:
            distinct.setdefault(tuple(w), None)
    keys = list(distinct)
    for key, tagged in zip(keys, nltk.pos_tag_sents([list(k) for k in keys])):
        distinct[key] = [t for _, t in tagged]
    log(f"[transfer] tagged {len(keys):,} distinct texts in {time.perf_counter() - started:.1f} s")
    return [distinct[tuple(w)] if w else [] for w in words]


def _pos_pools(words, tags):
    """tag -> (words, cumulative counts): the words seen with each tag, by frequency."""
    counts = {}
    for ws, ts in zip(words, tags):
        for w, t in zip(ws, ts):
            bucket = counts.setdefault(t, {})
            bucket[w] = bucket.get(w, 0) + 1
    pools = {}
    for tag, bucket in counts.items():
        vocab = sorted(bucket)
        pools[tag] = (vocab, np.cumsum([bucket[w] for w in vocab], dtype=np.float64))
    return pools


class _Synonyms:
    """Synonyms from a word's most frequent WordNet sense for its tag (memoized)."""

    def __init__(self):
        from tfcompress.text import nltk_data

        nltk_data.require("wordnet")
        from nltk.corpus import wordnet

        self.wordnet = wordnet
        self.memo = {}

    def __call__(self, word, tag):
        pos = _WORDNET_POS.get(tag[:1])
        if pos is None or not word.isalpha():
            return ()
        key = (word, pos)
        if key not in self.memo:
            senses = self.wordnet.synsets(word, pos=pos)
            names = []
            for lemma in senses[0].lemmas() if senses else ():
                name = lemma.name().replace("_", " ").lower()
                if name != word.lower() and name not in names:
                    names.append(name)
            self.memo[key] = tuple(names)
        return self.memo[key]


# ------------------------------------------------------------------ cache


def _cache_path(texts, config, cache):
    if cache is False or os.environ.get("TFCOMPRESS_CACHE", "").lower() == "off":
        return None
    from tfcompress.text.batch import _nltk_version, cache_root

    folder = cache if isinstance(cache, (str, os.PathLike)) else os.path.join(cache_root(), "transfer")
    digest = hashlib.sha256()
    digest.update(json.dumps({**config, "format": CACHE_FORMAT, "nltk": _nltk_version()}, sort_keys=True).encode())
    for t in texts:
        digest.update(t.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return os.path.join(folder, digest.hexdigest()[:32] + ".npz")


def _write(path, result):
    import io

    from tfcompress._io import atomic_write_bytes

    buf = io.BytesIO()
    blob = json.dumps(list(result), ensure_ascii=False).encode("utf-8", "surrogatepass")
    np.savez(buf, texts=np.frombuffer(blob, np.uint8), sources=result.sources)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        return  # a cache that cannot be written is not an error
    from tfcompress.text.batch import cache_limit_bytes, evict

    evict(os.path.dirname(path), cache_limit_bytes(), keep=path)


def _read(path):
    with np.load(path, allow_pickle=False) as data:
        texts = json.loads(data["texts"].tobytes().decode("utf-8", "surrogatepass"))
        sources = data["sources"]
    if len(texts) != len(sources) or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"inconsistent cache file {path}")
    return TransferSet(texts, sources)
