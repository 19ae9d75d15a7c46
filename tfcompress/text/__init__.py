"""Text for LSTM models: NLTK preprocessing, vocabulary, tf.data pipelines, loaders.

The usual path:

>>> from tfcompress import text
>>> data = text.load_texts("train.tsv")                       # doctest: +SKIP
>>> encoder = text.TextEncoder.fit(data.texts)                 # doctest: +SKIP
>>> ds = text.text_dataset(data.texts, data.labels, encoder)   # doctest: +SKIP

`TextPreprocessor` holds the cleaning, tokenisation, stopword and stemming
configuration; `Vocabulary` maps tokens to ids; `TextEncoder` combines the two
with a fixed length and is saved beside the model.
"""

from tfcompress.text.loaders import (
    DataFormatError,
    LabeledTexts,
    builtin_corpus,
    detect_encoding,
    load_texts,
)
from tfcompress.text.nltk_data import MissingNLTKData, download, require
from tfcompress.text.pipeline import char_dataset, char_windows, text_dataset, tf_encoder
from tfcompress.text.preprocess import (
    NEGATIONS,
    STEMMERS,
    TOKENIZERS,
    TREEBANK_PATTERN,
    TextPreprocessor,
    TokenTable,
)
from tfcompress.text.vocab import TextEncoder, Vocabulary, pad_and_truncate

__all__ = [
    "TextPreprocessor",
    "TokenTable",
    "TextEncoder",
    "Vocabulary",
    "pad_and_truncate",
    "text_dataset",
    "tf_encoder",
    "char_windows",
    "char_dataset",
    "load_texts",
    "LabeledTexts",
    "DataFormatError",
    "detect_encoding",
    "builtin_corpus",
    "MissingNLTKData",
    "require",
    "download",
    "TOKENIZERS",
    "STEMMERS",
    "NEGATIONS",
    "TREEBANK_PATTERN",
]
