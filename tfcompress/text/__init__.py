"""Text for LSTM models: NLTK preprocessing, vocabulary, tf.data pipelines, loaders.

The usual path:

>>> from tfcompress import text
>>> data = text.load_texts("train.tsv")                       # doctest: +SKIP
>>> encoder = text.TextEncoder.fit(data.texts)                 # doctest: +SKIP
>>> ds = text.text_dataset(data.texts, data.labels, encoder)   # doctest: +SKIP

`TextPreprocessor` holds the cleaning, tokenisation, stopword and stemming
configuration; `Vocabulary` maps tokens to ids; `TextEncoder` combines the two
with a fixed length and is saved beside the model.

A model trained with a Keras `Tokenizer` or a `TextVectorization` layer keeps
its own ids: `TextEncoder.from_keras(tokenizer_or_layer)` (or
`load_tokenizer(path)`) reproduces them exactly, and `split_vectorizer(model)`
takes a `TextVectorization` layer off a string-input model.
"""

from tfcompress.text.groups import Groups, containment_groups, grouped_split, id_sequences, word_sequences
from tfcompress.text.loaders import (
    DataFormatError,
    LabeledTexts,
    builtin_corpus,
    detect_encoding,
    load_texts,
)
from tfcompress.text.nltk_data import MissingNLTKData, download, require
from tfcompress.text.pipeline import CharWindows, char_dataset, char_windows, text_dataset, tf_encoder
from tfcompress.text.preprocess import (
    NEGATIONS,
    STEMMERS,
    TOKENIZERS,
    TREEBANK_PATTERN,
    TextPreprocessor,
    TokenTable,
)
from tfcompress.text.vocab import TextEncoder, Vocabulary, pad_and_truncate
from tfcompress.text.keras_rules import KerasTokenizerRules, VectorizerRules
from tfcompress.text.keras_compat import (
    TokenizerError,
    check_encoder,
    find_vectorizer,
    from_keras,
    load_tokenizer,
    split_vectorizer,
    with_int_ids,
)

__all__ = [
    "containment_groups",
    "grouped_split",
    "word_sequences",
    "id_sequences",
    "Groups",
    "TextPreprocessor",
    "TokenTable",
    "TextEncoder",
    "Vocabulary",
    "KerasTokenizerRules",
    "VectorizerRules",
    "from_keras",
    "load_tokenizer",
    "check_encoder",
    "split_vectorizer",
    "find_vectorizer",
    "with_int_ids",
    "TokenizerError",
    "pad_and_truncate",
    "text_dataset",
    "tf_encoder",
    "char_windows",
    "CharWindows",
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
