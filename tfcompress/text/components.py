"""The NLTK parts a `TextPreprocessor` is assembled from: its tokenizer, its
stopword set and its stemmer or lemmatiser. Each needs NLTK data only when
chosen, and says which corpus is missing if it is."""

import functools
import re

from tfcompress.text import nltk_data


def tokenizer(name, pattern, language):
    """`text -> list of tokens` for a `TextPreprocessor` tokenizer name."""
    if name == "regexp":
        return re.compile(pattern).findall
    if name == "whitespace":
        return str.split
    if name == "char":
        return list
    if name == "treebank":
        from nltk.tokenize import TreebankWordTokenizer

        return TreebankWordTokenizer().tokenize
    if name == "tweet":
        from nltk.tokenize import TweetTokenizer

        return TweetTokenizer(preserve_case=True).tokenize
    nltk_data.require("punkt_tab", language)
    from nltk.tokenize import word_tokenize

    return functools.partial(word_tokenize, language=language)


def stopwords(languages, extra, lowercase, keep):
    """The words to remove: NLTK's lists for `languages` plus `extra`,
    lower-cased if `lowercase`, without the words in `keep`."""
    words = set(extra)
    if languages:
        nltk_data.require("stopwords")
        from nltk.corpus import stopwords as corpus

        available = corpus.fileids()
        for lang in languages:
            if lang not in available:
                raise ValueError(
                    f"TextPreprocessor(stopwords={lang!r}): NLTK has no stopword "
                    f"list for {lang!r}. Available: {', '.join(available)}. "
                    "Fix: use one of those, or pass your own words as "
                    "extra_stopwords=[...]."
                )
            words.update(corpus.words(lang))
    if lowercase:
        words = {w.lower() for w in words}
    return frozenset(words - keep)


def reducer(lemmatize, stemmer, language):
    """`word -> base form` (WordNet lemma or stem), or None."""
    if lemmatize:
        nltk_data.require("wordnet")
        from nltk.stem import WordNetLemmatizer

        return WordNetLemmatizer().lemmatize
    if stemmer == "porter":
        from nltk.stem import PorterStemmer

        return PorterStemmer().stem
    if stemmer == "lancaster":
        from nltk.stem import LancasterStemmer

        return LancasterStemmer().stem
    if stemmer == "snowball":
        from nltk.stem import SnowballStemmer

        if language not in SnowballStemmer.languages:
            raise ValueError(
                f"TextPreprocessor(stemmer='snowball', language={language!r}): "
                f"Snowball has no {language!r} stemmer. Available: "
                f"{', '.join(SnowballStemmer.languages)}."
            )
        return SnowballStemmer(language).stem
    return None
