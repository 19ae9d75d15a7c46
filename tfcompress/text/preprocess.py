"""NLTK text preprocessing: one configurable, serializable object.

`TextPreprocessor` turns raw strings into token lists in a fixed order:

1. Unicode normalisation (`unicode_form`, NFKC by default) and optional accent
   stripping;
2. lower-casing;
3. digits kept, mapped to `0` (each number becomes one `0`), or removed;
4. whitespace collapsed;
5. tokenisation (`"regexp"`, `"treebank"`, `"word_tokenize"`, `"tweet"`,
   `"char"`, `"whitespace"`); contractions are split the way NLTK's Treebank
   tokenizer splits them (`don't` -> `do`, `n't`) and those pieces are words,
   not punctuation;
6. punctuation tokens kept or removed;
7. stopwords (any language NLTK ships, plus your own words) removed, except
   the words in `keep_words` (negations by default: they carry sentiment);
8. stemming (Porter, Snowball, Lancaster) or WordNet lemmatisation.

The default tokenizer is `"regexp"` with a pattern that splits like NLTK's
`word_tokenize` on ordinary English (`TREEBANK_PATTERN`): it
needs no NLTK data and is about ten times faster than `TreebankWordTokenizer`
(figures in BENCHMARKS.md). Preprocessing runs in Python, outside the model
graph, so it never affects TFLite export; its configuration is saved beside
the model (`save`/`load`) so that a deployed model gets the same input.

Large corpora are processed in several processes and cached on disk (see
`TextPreprocessor.__call__`).
"""

import json
import re
import unicodedata

from tfcompress.text import batch, components
from tfcompress.text.token_table import TokenTable, token_table

__all__ = ["TextPreprocessor", "TokenTable", "token_table", "TOKENIZERS", "STEMMERS", "NEGATIONS", "TREEBANK_PATTERN"]

TOKENIZERS = ("regexp", "treebank", "word_tokenize", "tweet", "char", "whitespace")
STEMMERS = ("porter", "snowball", "lancaster")
_DIGIT_MODES = ("keep", "zero", "remove")
_PUNCT_MODES = ("keep", "remove")
_UNICODE_FORMS = ("NFC", "NFKC", "NFD", "NFKD")

# Splits ordinary English close to NLTK's word_tokenize (contractions "do n't",
# "they 're"; numbers such as 3.14, 10,000 and 10/10; hyphenated words kept),
# in one regular-expression pass. It differs on abbreviations ("u.s." keeps no
# final dot) and quotes (left as '"' rather than `` and '').
TREEBANK_PATTERN = (
    r"(?i)\w+(?=n't\b)"  # "do" of "don't", "ca" of "can't"
    r"|n't\b"  # "n't"
    r"|'(?:s|m|d|ll|re|ve)\b"  # clitics: 's 'm 'd 'll 're 've
    r"|\w+(?:[-.,/]\w+)*"  # words, 3.14, 10,000, 10/10, well-known
    r"|\.\.\."  # ellipsis
    r"|[^\w\s]"  # any other symbol, one at a time
)

# Negations in NLTK's English stopword list (and the Treebank "n't" piece):
# removing them flips the meaning of a sentence.
NEGATIONS = frozenset(
    """no nor not never n't cannot ain aren aren't couldn couldn't didn didn't
    doesn doesn't don don't hadn hadn't hasn hasn't haven haven't isn isn't
    mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't
    wasn wasn't weren weren't won won't wouldn wouldn't""".split()
)

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_DIGIT = re.compile(r"\d")
_SPACE = re.compile(r"\s+")

def _is_punct(token):
    return all(unicodedata.category(ch)[0] in "PS" for ch in token)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"TextPreprocessor({name}={value!r}): expected one of "
            f"{', '.join(map(repr, choices))}. Received: {name}={value!r}."
        )


def _check_options(tokenizer, digits, punctuation, unicode_form, stemmer, lemmatize, stopwords, extra_stopwords, keep_words, pattern):
    """Refuses unknown or conflicting options; returns (stopword languages,
    extra stopwords, words kept back) normalised."""
    _check_choice("tokenizer", tokenizer, TOKENIZERS)
    _check_choice("digits", digits, _DIGIT_MODES)
    _check_choice("punctuation", punctuation, _PUNCT_MODES)
    if unicode_form is not None:
        _check_choice("unicode_form", unicode_form, _UNICODE_FORMS + (None,))
    if stemmer is not None:
        _check_choice("stemmer", stemmer, STEMMERS + (None,))
    if stemmer is not None and lemmatize:
        raise ValueError(
            f"TextPreprocessor(stemmer={stemmer!r}, lemmatize=True): choose one. "
            "Stemming and lemmatisation both reduce a word to a base form; "
            "applying both mangles words. Fix: set stemmer=None or lemmatize=False."
        )
    if isinstance(stopwords, str):
        stopwords = [stopwords]
    stopwords = list(stopwords) if stopwords else []
    extra_stopwords = list(extra_stopwords or [])
    if tokenizer == "char" and (stopwords or extra_stopwords or stemmer or lemmatize):
        raise ValueError(
            "TextPreprocessor(tokenizer='char') produces characters, so "
            "stopwords, stemming and lemmatisation do not apply. Fix: use a "
            "word tokenizer, or drop those options."
        )
    if pattern is not None and tokenizer != "regexp":
        raise ValueError(
            f"TextPreprocessor(pattern=...) applies to tokenizer='regexp' only. "
            f"Received: tokenizer={tokenizer!r}. Fix: drop `pattern` or use "
            "tokenizer='regexp'."
        )
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(
                f"TextPreprocessor(pattern={pattern!r}) is not a valid regular "
                f"expression: {err}."
            ) from None
    if keep_words == "negations":
        keep = NEGATIONS
    elif isinstance(keep_words, str):
        raise ValueError(
            f"TextPreprocessor(keep_words={keep_words!r}): expected 'negations', "
            "a list of words, or None."
        )
    else:
        keep = frozenset(keep_words or ())
    return stopwords, extra_stopwords, keep


class TextPreprocessor:
    """Cleans, normalises and tokenises text with NLTK.

    Call it on a list of strings to get a list of token lists.

    Args:
        tokenizer: `"regexp"` (default; `pattern`, splits like
            `word_tokenize` on ordinary English, needs no data), `"treebank"` (`TreebankWordTokenizer`),
            `"word_tokenize"` (NLTK's sentence splitter + tokenizer; needs
            `punkt_tab`), `"tweet"` (`TweetTokenizer`, keeps emoticons,
            hashtags), `"char"` (characters) or `"whitespace"`.
        lowercase: lower-case the text first.
        unicode_form: Unicode normalisation form (`"NFC"`, `"NFKC"`, `"NFD"`,
            `"NFKD"`) or `None`.
        strip_accents: remove combining marks (`café` -> `cafe`).
        digits: `"keep"`, `"zero"` (each number becomes `0`: `1,000.5` -> `0`)
            or `"remove"`.
        punctuation: `"keep"` or `"remove"` (drops tokens made only of
            punctuation or symbols; `n't` and `'s` are words and stay).
        collapse_whitespace: turn runs of whitespace into one space and strip
            the ends (set False for a character model that should see
            newlines).
        stopwords: `None`, an NLTK stopword language (`"english"`), or a list of
            them. Needs the NLTK `stopwords` corpus.
        extra_stopwords: your own words to remove as well.
        keep_words: words never removed as stopwords; `"negations"` (default)
            is `NEGATIONS`; `None` or `()` keeps nothing back.
        stemmer: `None`, `"porter"`, `"snowball"` (in `language`) or
            `"lancaster"`.
        lemmatize: WordNet lemmatisation (nouns); needs the `wordnet` corpus.
            Cannot be combined with a stemmer.
        language: language of `word_tokenize`'s sentence model and of the
            Snowball stemmer.
        pattern: the regular expression of `tokenizer="regexp"`; default
            `TREEBANK_PATTERN`.

    Raises:
        ValueError: an unknown or conflicting option (the message names it).
        MissingNLTKData: a configured step needs an NLTK corpus that is not
            installed (the message names it and how to get it).

    Example:

    >>> pre = TextPreprocessor(digits="zero", punctuation="remove")
    >>> pre(["It wasn't  bad, 10/10!"])
    [['it', 'was', "n't", 'bad', '0', '0']]
    """

    def __init__(
        self,
        tokenizer="regexp",
        lowercase=True,
        unicode_form="NFKC",
        strip_accents=False,
        digits="keep",
        punctuation="keep",
        collapse_whitespace=True,
        stopwords=None,
        extra_stopwords=(),
        keep_words="negations",
        stemmer=None,
        lemmatize=False,
        language="english",
        pattern=None,
    ):
        stopwords, extra_stopwords, keep = _check_options(
            tokenizer, digits, punctuation, unicode_form, stemmer, lemmatize, stopwords, extra_stopwords, keep_words, pattern
        )
        self.tokenizer = tokenizer
        self.lowercase = bool(lowercase)
        self.unicode_form = unicode_form
        self.strip_accents = bool(strip_accents)
        self.digits = digits
        self.punctuation = punctuation
        self.collapse_whitespace = bool(collapse_whitespace)
        self.stopwords = stopwords
        self.extra_stopwords = extra_stopwords
        self.keep_words = keep_words if isinstance(keep_words, str) else sorted(keep)
        self.stemmer = stemmer
        self.lemmatize = bool(lemmatize)
        self.language = language
        self.pattern = pattern

        self._tokenize = components.tokenizer(tokenizer, pattern or TREEBANK_PATTERN, language)
        self._stop = components.stopwords(self.stopwords, self.extra_stopwords, self.lowercase, keep)
        self._reduce = components.reducer(lemmatize, stemmer, language)
        self._punct_cache = {}
        self._reduce_cache = {}

    # ----------------------------------------------------------- applying

    def clean(self, text):
        """Steps 1-4 (normalisation and cleaning) on one string."""
        if not isinstance(text, str):
            raise TypeError(
                f"TextPreprocessor expects strings. Received: {text!r} of type "
                f"{type(text).__name__}."
            )
        if self.unicode_form:
            text = unicodedata.normalize(self.unicode_form, text)
        if self.strip_accents:
            text = "".join(
                c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
            )
        if self.lowercase:
            text = text.lower()
        if self.digits == "zero":
            text = _NUMBER.sub("0", text)
        elif self.digits == "remove":
            text = _DIGIT.sub(" ", text)
        if self.collapse_whitespace:
            text = _SPACE.sub(" ", text).strip()
        return text

    def tokens(self, text):
        """All steps on one string; returns its list of tokens."""
        tokens = self._tokenize(self.clean(text))
        if self.punctuation == "remove":
            cache = self._punct_cache
            kept = []
            for tok in tokens:
                p = cache.get(tok)
                if p is None:
                    p = cache[tok] = _is_punct(tok)
                if not p:
                    kept.append(tok)
            tokens = kept
        if self._stop:
            stop = self._stop
            tokens = [t for t in tokens if t not in stop]
        if self._reduce is not None:
            cache, reduce = self._reduce_cache, self._reduce
            out = []
            for tok in tokens:
                r = cache.get(tok)
                if r is None:
                    r = cache[tok] = reduce(tok)
                out.append(r)
            tokens = out
        return tokens

    def __call__(self, texts, n_jobs=None, cache=None, progress=None):
        """Preprocesses a list of strings into a list of token lists.

        Args:
            texts: a list (or other sequence) of strings. A single string is
                refused, since iterating it would give characters.
            n_jobs: worker processes; `None` uses every core when there are
                at least `tfcompress.text.batch.PARALLEL_MIN_TEXTS` texts, `1` stays in this process.
            cache: `None` caches on disk when there are at least
                `batch.CACHE_MIN_TEXTS` texts; `True`/`False` force it; a path
                chooses the folder. The key is the texts plus this
                configuration, so any change to either misses the cache. The
                default folder is `$TFCOMPRESS_CACHE_DIR`, else
                `~/.cache/tfcompress`.
            progress: show a progress bar; `None` shows one for at least
                `batch.PROGRESS_MIN_TEXTS` texts on a terminal or in a notebook.
        """
        return self.table(texts, n_jobs=n_jobs, cache=cache, progress=progress).to_lists()

    def table(self, texts, n_jobs=None, cache=None, progress=None):
        """Like calling the preprocessor, but returns a compact `TokenTable`.

        `Vocabulary.build` and `Vocabulary.encode` accept it directly; this
        is the fast path for large corpora (arguments as for `__call__`).
        """
        return batch.run(self, texts, n_jobs=n_jobs, cache=cache, progress=progress)

    # ----------------------------------------------------------- config

    def get_config(self):
        """The constructor arguments, JSON-serializable."""
        return {
            "tokenizer": self.tokenizer,
            "lowercase": self.lowercase,
            "unicode_form": self.unicode_form,
            "strip_accents": self.strip_accents,
            "digits": self.digits,
            "punctuation": self.punctuation,
            "collapse_whitespace": self.collapse_whitespace,
            "stopwords": list(self.stopwords),
            "extra_stopwords": list(self.extra_stopwords),
            "keep_words": self.keep_words,
            "stemmer": self.stemmer,
            "lemmatize": self.lemmatize,
            "language": self.language,
            "pattern": self.pattern,
        }

    @classmethod
    def from_config(cls, config):
        unknown = set(config) - set(cls().get_config())
        if unknown:
            raise ValueError(
                f"TextPreprocessor.from_config: unknown keys {sorted(unknown)}. "
                f"Expected keys among {sorted(cls().get_config())}."
            )
        return cls(**config)

    def save(self, path):
        """Writes the configuration as JSON (complete or not at all)."""
        from tfcompress._io import atomic_write_text

        payload = {"class_name": "TextPreprocessor", "config": self.get_config()}
        atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path):
        """Reads a configuration written by `save`."""
        with open(path, encoding="utf-8") as f:
            try:
                payload = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}: not a TextPreprocessor file (invalid JSON at line "
                    f"{err.lineno}: {err.msg})."
                ) from None
        if payload.get("class_name") != "TextPreprocessor":
            raise ValueError(f"{path}: not a TextPreprocessor file (no class_name).")
        return cls.from_config(payload["config"])

    def __eq__(self, other):
        return isinstance(other, TextPreprocessor) and self.get_config() == other.get_config()

    def __repr__(self):
        default = TextPreprocessor().get_config()
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if v != default[k])
        return f"TextPreprocessor({args})"

    def cache_key(self, texts):
        """The cache key of preprocessing `texts` with this configuration."""
        return batch.cache_key(self, texts)
