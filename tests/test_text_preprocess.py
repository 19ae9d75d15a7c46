"""TextPreprocessor: each step, each tokenizer, NLTK data handling, config round trips."""

import inspect
import json
import os
import subprocess
import sys

import nltk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import need_nltk
from tfcompress.text import NEGATIONS, MissingNLTKData, TextPreprocessor
from tfcompress.text import batch

SENTENCE = "They're great... It wasn't bad, 10/10!"


@pytest.fixture
def nltk_offline(tmp_path, monkeypatch):
    """NLTK looking only in an empty folder: what a fresh offline machine sees."""
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    return tmp_path


# ------------------------------------------------------------------ tokenizers


def test_regexp_default_splits_contractions_like_word_tokenize():
    assert TextPreprocessor()([SENTENCE]) == [
        ["they", "'re", "great", "...", "it", "was", "n't", "bad", ",", "10/10", "!"]
    ]


def test_word_tokenize_with_punkt_tab():
    need_nltk("punkt_tab")
    out = TextPreprocessor(tokenizer="word_tokenize")([SENTENCE])
    assert out == [["they", "'re", "great", "...", "it", "was", "n't", "bad", ",", "10/10", "!"]]


def test_treebank_tweet_whitespace_char_tokenizers():
    assert TextPreprocessor(tokenizer="treebank")(["It wasn't bad."]) == [["it", "was", "n't", "bad", "."]]
    assert TextPreprocessor(tokenizer="tweet", lowercase=False)(["Loved it :-) #film @bob"]) == [
        ["Loved", "it", ":-)", "#film", "@bob"]
    ]
    assert TextPreprocessor(tokenizer="whitespace")([" a  b\tc "]) == [["a", "b", "c"]]
    assert TextPreprocessor(tokenizer="char")(["Ab  c"]) == [["a", "b", " ", "c"]]
    assert TextPreprocessor(tokenizer="char", collapse_whitespace=False)(["a\n b"]) == [["a", "\n", " ", "b"]]


def test_custom_regexp_pattern():
    assert TextPreprocessor(pattern=r"[a-z]+")(["ab1 cd-ef"]) == [["ab", "cd", "ef"]]


# ------------------------------------------------------------------ cleaning


def test_cleaning_steps():
    assert TextPreprocessor(lowercase=False)(["Hello World"]) == [["Hello", "World"]]
    # NFKC folds the ligature and full-width digits; NFC keeps them.
    assert TextPreprocessor()(["ﬁne １２"]) == [["fine", "12"]]
    assert TextPreprocessor(unicode_form="NFC")(["ﬁne"]) == [["ﬁne"]]
    assert TextPreprocessor(strip_accents=True)(["Café naïve"]) == [["cafe", "naive"]]
    assert TextPreprocessor(digits="zero")(["paid 1,000.50 for 2 of 3"]) == [["paid", "0", "for", "0", "of", "0"]]
    assert TextPreprocessor(digits="remove")(["route66 in 1999"]) == [["route", "in"]]
    assert TextPreprocessor(tokenizer="char")(["a \t\n b"]) == [["a", " ", "b"]]


def test_punctuation_removal_keeps_contraction_pieces():
    out = TextPreprocessor(punctuation="remove")(["Don't -- stop! It's (really) $5 ..."])
    assert out == [["do", "n't", "stop", "it", "'s", "really", "5"]]


# ------------------------------------------------------------------ stopwords


def test_english_stopwords_keep_negations_by_default():
    need_nltk("stopwords")
    out = TextPreprocessor(stopwords="english")(["This is not the film I wanted, no"])
    assert out == [["not", "film", "wanted", ",", "no"]]
    assert {"not", "no", "nor", "n't"} <= NEGATIONS


def test_stopwords_without_keeping_negations_and_user_lists():
    need_nltk("stopwords")
    out = TextPreprocessor(stopwords="english", keep_words=None, extra_stopwords=["film"])(
        ["This is not the film I wanted"]
    )
    assert out == [["wanted"]]
    assert TextPreprocessor(extra_stopwords=["b"])(["a b c"]) == [["a", "c"]]


def test_stopwords_in_several_languages():
    need_nltk("stopwords")
    out = TextPreprocessor(stopwords=["english", "french"])(["le chat and the dog"])
    assert out == [["chat", "dog"]]


def test_unknown_stopword_language_lists_available():
    need_nltk("stopwords")  # the list of languages it offers comes from the corpus
    with pytest.raises(ValueError, match=r"stopwords='klingon'.*Available: .*english.*extra_stopwords"):
        TextPreprocessor(stopwords="klingon")


# ------------------------------------------------------------------ stem / lemma


def test_stemmers():
    text = ["running generously happily"]
    assert TextPreprocessor(stemmer="porter")(text) == [["run", "gener", "happili"]]
    assert TextPreprocessor(stemmer="snowball")(text) == [["run", "generous", "happili"]]
    assert TextPreprocessor(stemmer="lancaster")(text) == [["run", "gen", "happy"]]
    assert TextPreprocessor(stemmer="snowball", language="german")(["häuser"]) == [["haus"]]


def test_wordnet_lemmatisation():
    need_nltk("wordnet")
    assert TextPreprocessor(lemmatize=True)(["geese were dogs"]) == [["goose", "were", "dog"]]


# ------------------------------------------------------------------ missing data


def test_missing_punkt_tab_names_resource_variable_and_command(nltk_offline):
    with pytest.raises(MissingNLTKData) as err:
        TextPreprocessor(tokenizer="word_tokenize")
    message = str(err.value)
    assert "'punkt_tab' (english) is missing" in message
    assert "'punkt' package does not satisfy" in message
    assert "NLTK_DATA" in message
    assert "tfcompress text download punkt_tab" in message
    assert str(nltk_offline) in message


@pytest.mark.parametrize(
    "kwargs,resource",
    [({"stopwords": "english"}, "stopwords"), ({"lemmatize": True}, "wordnet")],
)
def test_missing_corpora_are_named(nltk_offline, kwargs, resource):
    with pytest.raises(MissingNLTKData, match=rf"(?s)'{resource}' is missing.*tfcompress text download {resource}"):
        TextPreprocessor(**kwargs)


def test_data_free_parts_work_offline(nltk_offline):
    for kwargs in (
        {},
        {"tokenizer": "treebank", "stemmer": "porter"},
        {"tokenizer": "tweet", "stemmer": "snowball"},
        {"tokenizer": "whitespace", "stemmer": "lancaster"},
        {"tokenizer": "char"},
    ):
        assert TextPreprocessor(**kwargs)(["Running dogs aren't here"])[0]


def test_download_command_fails_clearly_offline(tmp_path):
    target = tmp_path / "nltk"
    target.mkdir(mode=0o700)
    proc = subprocess.run(
        [sys.executable, "-m", "tfcompress", "text", "download", "stopwords", "--dir", str(target)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if proc.returncode == 0:  # a machine with network access really downloaded it
        assert (target / "corpora").exists()
        return
    assert proc.returncode == 1
    assert "stopwords: FAILED" in proc.stdout
    assert "needs network access" in proc.stderr and "NLTK_DATA" in proc.stderr


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"tokenizer": "spacy"}, r"tokenizer='spacy'\): expected one of 'regexp'"),
        ({"digits": "words"}, r"digits='words'"),
        ({"punctuation": "strip"}, r"punctuation='strip'"),
        ({"stemmer": "krovetz"}, r"stemmer='krovetz'"),
        ({"unicode_form": "NFX"}, r"unicode_form='NFX'"),
        ({"stemmer": "porter", "lemmatize": True}, r"choose one.*Fix: set stemmer=None or lemmatize=False"),
        ({"tokenizer": "char", "stemmer": "porter"}, r"tokenizer='char'\) produces characters"),
        ({"tokenizer": "treebank", "pattern": r"\w+"}, r"pattern=...\) applies to tokenizer='regexp' only"),
        ({"pattern": "("}, r"not a valid regular expression"),
        ({"keep_words": "nouns"}, r"keep_words='nouns'"),
        ({"stemmer": "snowball", "language": "klingon"}, r"Snowball has no 'klingon' stemmer"),
    ],
)
def test_bad_options_are_named(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        TextPreprocessor(**kwargs)


def test_bad_inputs():
    pre = TextPreprocessor()
    with pytest.raises(TypeError, match=r"received one string.*preprocessor\(\[text\]\)"):
        pre("just a string")
    with pytest.raises(TypeError, match=r"expects strings. Received: 3 of type int"):
        pre(["ok", 3])


# ------------------------------------------------------------------ config


NON_DEFAULT = dict(
    tokenizer="regexp",
    lowercase=False,
    unicode_form="NFC",
    strip_accents=True,
    digits="zero",
    punctuation="remove",
    collapse_whitespace=False,
    stopwords=["english"],
    extra_stopwords=["movie"],
    keep_words=["not", "the"],
    stemmer="lancaster",
    lemmatize=False,
    language="english",
    pattern=r"\w+|[^\w\s]",
)


def test_config_covers_every_argument_and_round_trips(tmp_path):
    need_nltk("stopwords")  # NON_DEFAULT removes English stopwords
    params = set(inspect.signature(TextPreprocessor.__init__).parameters) - {"self"}
    assert set(TextPreprocessor().get_config()) == params
    assert set(NON_DEFAULT) == params
    pre = TextPreprocessor(**NON_DEFAULT)
    assert pre.get_config() == {**NON_DEFAULT, "keep_words": ["not", "the"]}
    for key, value in NON_DEFAULT.items():  # every value really differs from the default
        if key not in ("tokenizer", "lemmatize", "language"):
            assert TextPreprocessor().get_config()[key] != value, key
    again = TextPreprocessor.from_config(json.loads(json.dumps(pre.get_config())))
    assert again == pre
    text = ["The Movie wasn't GREAT, café 42\nnot   the best"]
    assert again(text) == pre(text)

    path = tmp_path / "model_dir" / "preprocessor.json"
    os.makedirs(path.parent)
    pre.save(path)
    loaded = TextPreprocessor.load(path)
    assert loaded == pre and loaded(text) == pre(text)
    assert os.listdir(path.parent) == ["preprocessor.json"]  # no temporary files left
    assert "stemmer='lancaster'" in repr(pre)


def test_from_config_rejects_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        TextPreprocessor.from_config({"colour": "blue"})
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"p.json: not a TextPreprocessor file \(invalid JSON at line 1"):
        TextPreprocessor.load(bad)


# ------------------------------------------------------------------ throughput machinery


def _corpus(n):
    words = ["good", "bad", "film", "isn't", "great", "42", "plot", "!", "Ünïcode", "..."]
    return [" ".join(words[(i * 7 + j) % len(words)] for j in range(i % 13)) for i in range(n)]


def test_parallel_equals_serial():
    texts = _corpus(3000)
    pre = TextPreprocessor(stemmer="porter", punctuation="remove")
    assert pre(texts, n_jobs=2, cache=False) == pre(texts, n_jobs=1, cache=False)


def test_cache_is_keyed_by_data_and_configuration(tmp_path):
    texts = _corpus(500)
    pre = TextPreprocessor()
    first = pre(texts, cache=tmp_path)
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".npz")
    assert pre(texts, cache=tmp_path) == first
    assert len(os.listdir(tmp_path)) == 1  # hit, nothing new written

    TextPreprocessor(digits="zero")(texts, cache=tmp_path)  # other configuration
    pre(texts[:-1], cache=tmp_path)  # other data
    assert len(os.listdir(tmp_path)) == 3
    assert pre.cache_key(texts) != pre.cache_key(texts[:-1] + [texts[-1] + " "])


def test_corrupt_cache_is_recomputed(tmp_path):
    texts = _corpus(200)
    pre = TextPreprocessor()
    expected = pre(texts, cache=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"garbage")
    assert pre(texts, cache=tmp_path) == expected


def test_large_inputs_use_processes_and_cache_by_default(monkeypatch, tmp_path):
    monkeypatch.setattr(batch, "PARALLEL_MIN_TEXTS", 100)
    monkeypatch.setattr(batch, "CACHE_MIN_TEXTS", 100)
    monkeypatch.setenv("TFCOMPRESS_CACHE_DIR", str(tmp_path))
    texts = _corpus(400)
    assert batch.resolve_jobs(None, len(texts)) == min(2, os.cpu_count())
    out = TextPreprocessor()(texts, progress=True)
    assert out == TextPreprocessor()(texts, n_jobs=1, cache=False)
    assert len(os.listdir(tmp_path / "text")) == 1
    with pytest.raises(ValueError, match=r"n_jobs=0"):
        TextPreprocessor()(texts, n_jobs=0)


# ------------------------------------------------------------------ robustness


TOKENIZER_CONFIGS = [
    {},
    {"tokenizer": "treebank", "punctuation": "remove", "stemmer": "porter"},
    {"tokenizer": "tweet", "digits": "zero", "strip_accents": True},
    {"tokenizer": "char", "collapse_whitespace": False},
    {"tokenizer": "whitespace", "digits": "remove", "stemmer": "lancaster"},
    {"tokenizer": "regexp", "unicode_form": None, "stemmer": "snowball"},
]


@pytest.mark.parametrize("config", TOKENIZER_CONFIGS, ids=lambda c: c.get("tokenizer", "default"))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(codec=None, exclude_categories=["Cs"]), max_size=400))
def test_any_unicode_never_crashes(config, text):
    out = TextPreprocessor(**config)([text, "", " \t\n ", text * 3])
    assert len(out) == 4
    assert all(isinstance(tok, str) and tok for toks in out for tok in toks)
    if config.get("tokenizer") != "char":
        assert out[1] == [] and out[2] == []


@pytest.mark.parametrize("config", TOKENIZER_CONFIGS + [{"tokenizer": "word_tokenize"}], ids=str)
def test_very_long_document(config):
    if config.get("tokenizer") == "word_tokenize":
        need_nltk("punkt_tab")
    doc = ("Ünïcode text, 12 numbers; don't stop!! " * 20000) + "end"
    (tokens,) = TextPreprocessor(**config)([doc])
    assert len(tokens) > 20000


def test_lone_surrogates_survive_the_cache_and_the_worker_processes(monkeypatch, tmp_path):
    # Text decoded with errors="surrogateescape" carries lone surrogates; above the cache
    # threshold they used to crash writing the cache (UTF-8 cannot encode them).
    monkeypatch.setattr(batch, "PARALLEL_MIN_TEXTS", 100)
    monkeypatch.setattr(batch, "CACHE_MIN_TEXTS", 100)
    texts = [f"caf\udce9 number {i} \ud800" for i in range(300)]
    expected = TextPreprocessor()(texts, n_jobs=1, cache=False)
    assert TextPreprocessor()(texts, cache=tmp_path) == expected  # written (in worker processes)
    assert TextPreprocessor()(texts, cache=tmp_path) == expected  # and read back
    assert len(list(tmp_path.iterdir())) == 1


def test_the_cache_is_bounded_can_be_turned_off_and_is_not_written_when_encoding(monkeypatch, tmp_path):
    from tfcompress.text import TextEncoder

    monkeypatch.setattr(batch, "CACHE_MIN_TEXTS", 100)
    monkeypatch.setenv("TFCOMPRESS_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "text"
    corpora = [[f"text {i} of corpus {c}" for i in range(200)] for c in range(3)]
    # Bounded: room for about one file; the least recently used go first, never the new one.
    pre = TextPreprocessor()
    pre(corpora[0], n_jobs=1)
    one = next(folder.iterdir()).stat().st_size
    monkeypatch.setenv("TFCOMPRESS_CACHE_MAX_MB", str(1.5 * one / 2**20))
    pre(corpora[1], n_jobs=1)
    assert [p.name for p in folder.iterdir()] == [pre.cache_key(corpora[1]) + ".npz"]
    monkeypatch.setenv("TFCOMPRESS_CACHE_MAX_MB", "many")
    with pytest.raises(ValueError, match=r"TFCOMPRESS_CACHE_MAX_MB='many' is not a number. Fix"):
        pre(corpora[2], n_jobs=1)
    monkeypatch.delenv("TFCOMPRESS_CACHE_MAX_MB")
    # Off: nothing written above the threshold (a named folder still works).
    monkeypatch.setenv("TFCOMPRESS_CACHE", "off")
    pre(corpora[2], n_jobs=1)
    assert len(list(folder.iterdir())) == 1
    monkeypatch.delenv("TFCOMPRESS_CACHE")
    # Encoding with a fitted encoder (inference) writes nothing; fitting does.
    encoder, _ = TextEncoder.fit_transform(corpora[2], max_len=8, n_jobs=1)
    assert len(list(folder.iterdir())) == 2
    encoder([t + " again" for t in corpora[2]], n_jobs=1)
    assert len(list(folder.iterdir())) == 2
