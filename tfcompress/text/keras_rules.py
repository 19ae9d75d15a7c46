"""Keras' own ways of cutting text into tokens, reproduced exactly.

A model trained with a Keras `Tokenizer` or a `TextVectorization` layer knows
the ids those produce, and no other ids. To compress such a model, train it
further or deploy it, its text must be cut into tokens exactly the way its
tokenizer did, character for character. These classes do that in plain Python
(no TensorFlow ops, so they also describe what an app must do), and plug into
`tfcompress.text.TextEncoder` in place of the NLTK `TextPreprocessor`:

- `KerasTokenizerRules`: `keras.preprocessing.text.Tokenizer` (Keras 2 /
  tf_keras, and the standalone `keras_preprocessing`): Python's full Unicode
  `str.lower()`, every character of `filters` replaced by `split`, split on
  `split`, empty pieces dropped; with `char_level`, the (lower-cased)
  characters, unfiltered.
- `VectorizerRules`: `TextVectorization` (tf_keras and Keras 3): `lower` is
  TensorFlow's `tf.strings.lower`, which changes **ASCII letters only**
  (`"ÉCOLE"` -> `"École"`); punctuation stripping removes the ASCII
  characters of Keras' `DEFAULT_STRIP_REGEX`; `"whitespace"` splitting
  splits on the six ASCII whitespace characters only (a no-break space stays
  inside a token); `"character"` gives code points; `ngrams` appends the
  n-grams joined by one space, width by width, as `tf.strings.ngrams` does.

Turning tokens into ids (and what happens to unknown tokens) is the
`Vocabulary`'s job; see `tfcompress.text.TextEncoder.from_keras`.
"""

import re

from tfcompress.text.preprocess import token_table

__all__ = ["KerasTokenizerRules", "VectorizerRules", "KERAS_FILTERS", "STRIP_PUNCTUATION"]

# keras.preprocessing.text.Tokenizer's default `filters`.
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
# The characters TextVectorization's "strip_punctuation" removes (the class
# of its DEFAULT_STRIP_REGEX, r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']').
STRIP_PUNCTUATION = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'"

_ASCII_LOWER = str.maketrans({chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)})
_STRIP = str.maketrans({c: None for c in STRIP_PUNCTUATION})
_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")

_STANDARDIZE = (None, "lower_and_strip_punctuation", "lower", "strip_punctuation")
_SPLIT = (None, "whitespace", "character")


class _Rules:
    """What every tokenization rule set shares with `TextPreprocessor`."""

    kind = None

    def _check_texts(self, texts):
        if isinstance(texts, (str, bytes)):
            raise TypeError(
                f"{type(self).__name__} expects a list of strings; received one string. "
                "Fix: wrap it in a list."
            )
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f"{type(self).__name__} expects strings. Received item {i}: {text!r} "
                    f"of type {type(text).__name__}."
                )
        return texts

    def table(self, texts, n_jobs=None, cache=None, progress=None):
        """Token lists of `texts` as a `TokenTable` (the other arguments are
        accepted for `TextPreprocessor` compatibility; these rules are cheap
        enough to run in this process, uncached)."""
        return token_table(self, self._check_texts(texts))

    def __call__(self, texts, **kwargs):
        return self.table(texts, **kwargs).to_lists()

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def from_config(cls, config):
        known = set(cls().get_config())
        unknown = set(config) - known
        if unknown:
            raise ValueError(
                f"{cls.__name__}.from_config: unknown keys {sorted(unknown)}. Expected keys among {sorted(known)}."
            )
        return cls(**config)


class KerasTokenizerRules(_Rules):
    """Splits text exactly like `keras.preprocessing.text.Tokenizer`.

    Args:
        filters: characters replaced by `split` before splitting.
        lower: `str.lower()` first.
        split: the separator (any non-empty string).
        char_level: every character is a token (after lower-casing; `filters`
            do not apply, as in Keras).
    """

    kind = "keras_tokenizer"

    def __init__(self, filters=KERAS_FILTERS, lower=True, split=" ", char_level=False):
        if not isinstance(split, str) or not split:
            raise ValueError(f"KerasTokenizerRules(split=...) must be a non-empty string. Received: split={split!r}.")
        if not isinstance(filters, str):
            raise ValueError(
                f"KerasTokenizerRules(filters=...) must be a string of characters. Received: filters={filters!r}."
            )
        self.filters = filters
        self.lower = bool(lower)
        self.split = split
        self.char_level = bool(char_level)
        self._translate = str.maketrans({c: split for c in filters})

    def tokens(self, text):
        if self.lower:
            text = text.lower()
        if self.char_level:
            return list(text)
        return [t for t in text.translate(self._translate).split(self.split) if t]

    def get_config(self):
        return {"filters": self.filters, "lower": self.lower, "split": self.split, "char_level": self.char_level}


class VectorizerRules(_Rules):
    """Splits text exactly like a `TextVectorization` layer.

    Args:
        standardize: `"lower_and_strip_punctuation"` (Keras' default),
            `"lower"`, `"strip_punctuation"` or `None`.
        split: `"whitespace"` (default), `"character"` or `None` (each
            text is one token).
        ngrams: `None`, an integer n (1..n-grams) or a list of widths.
    """

    kind = "text_vectorization"

    def __init__(self, standardize="lower_and_strip_punctuation", split="whitespace", ngrams=None):
        if standardize not in _STANDARDIZE:
            raise ValueError(
                f"VectorizerRules(standardize={standardize!r}): expected one of {_STANDARDIZE}. A custom "
                "standardize function is Python code that tfcompress cannot reproduce outside Keras."
            )
        if split not in _SPLIT:
            raise ValueError(
                f"VectorizerRules(split={split!r}): expected one of {_SPLIT}. A custom split function is "
                "Python code that tfcompress cannot reproduce outside Keras."
            )
        if isinstance(ngrams, int) and not isinstance(ngrams, bool):
            widths = list(range(1, ngrams + 1)) if ngrams >= 1 else None
        elif ngrams is None:
            widths = None
        else:
            widths = list(ngrams)
        if widths is not None and (not widths or not all(isinstance(w, int) and w >= 1 for w in widths)):
            raise ValueError(
                f"VectorizerRules(ngrams={ngrams!r}): expected None, an integer >= 1 or a list of integers >= 1."
            )
        if widths is not None and split is None:
            raise ValueError("VectorizerRules(ngrams=...) needs a split: n-grams join several tokens.")
        self.standardize = standardize
        self.split = split
        self.ngrams = widths

    def tokens(self, text):
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            text = text.translate(_ASCII_LOWER)
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = text.translate(_STRIP)
        if self.split is None:
            tokens = [text]
        elif self.split == "whitespace":
            tokens = [t for t in _ASCII_SPACE.split(text) if t]
        else:
            tokens = list(text)
        if self.ngrams:
            tokens = [" ".join(tokens[i : i + n]) for n in self.ngrams for i in range(len(tokens) - n + 1)]
        return tokens

    def get_config(self):
        return {"standardize": self.standardize, "split": self.split, "ngrams": self.ngrams}


RULES = {cls.__name__: cls for cls in (KerasTokenizerRules, VectorizerRules)}
