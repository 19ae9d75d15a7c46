"""A user's Keras tokenizer, reproduced id for id, and checked against the model."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf

import keras as keras3  # Keras 3, on purpose
import tf_keras
from tfcompress import keras, recipe, text
from tfcompress.text import TextEncoder, TokenizerError

# Strings a tokenizer meets in the wild: Unicode case rules that differ
# between Python and TensorFlow, whitespace TensorFlow does not split on,
# reserved-looking tokens, empties, very long input.
HOSTILE = [
    "",
    " ",
    "\t\n",
    "!!!",
    "Don't STOP-me now!!",
    "ÉCOLE Straße İstanbul ΣΑΣ",
    "a\u00a0b\u3000c\u2028d\x1ce\x0bf\x0cg\rh\u0085i\u200bj",
    "x\u2019s café 😀 👍🏽 emoji🙂glued 👨\u200d👩\u200d👧",
    "ﬁ ligature, combining e\u0301 vs é",
    "العربية 中文 日本語",
    "[UNK] <OOV> <pad> <unk>",
    "the " * 300,
    "123 4.56 7,890 1e-3",
    "back\\slash \\n and 'quotes' \"double\"",
]


@pytest.fixture(scope="module")
def sst2(sst2_dir):
    def read(name, n=None):
        with open(sst2_dir / name, encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        return [r[0] for r in rows[:n]]

    return read("train.tsv", 4000), read("dev.tsv")


def _tokenizer(fit_texts, **kwargs):
    tok = tf_keras.preprocessing.text.Tokenizer(**kwargs)
    tok.fit_on_texts(fit_texts)
    return tok


TOKENIZERS = {
    "defaults (unknown words dropped)": {},
    "num_words": {"num_words": 300},
    "oov_token": {"oov_token": "<OOV>"},
    "num_words and oov_token": {"num_words": 300, "oov_token": "<OOV>"},
    "no lower, no filters, split on '-'": {"lower": False, "filters": "", "split": "-"},
    "char_level": {"char_level": True, "oov_token": "~"},
}
PADDINGS = [("pre", "pre"), ("post", "post"), ("pre", "post")]


@pytest.mark.parametrize("padding,truncating", PADDINGS)
@pytest.mark.parametrize("case", sorted(TOKENIZERS))
def test_keras_tokenizer_ids_are_reproduced_exactly(sst2, case, padding, truncating, tmp_path):
    train, dev = sst2
    texts = dev + HOSTILE + ["\ud800 lone surrogate"]  # a Python Tokenizer takes one
    tok = _tokenizer(train, **TOKENIZERS[case])
    expected = tf_keras.preprocessing.sequence.pad_sequences(
        tok.texts_to_sequences(texts), maxlen=24, padding=padding, truncating=truncating
    )
    (tmp_path / "tok.json").write_text(tok.to_json(), encoding="utf-8")
    sources = {
        "object": tok,
        "to_json text": tok.to_json(),
        "parsed JSON": json.loads(tok.to_json()),
        "file": tmp_path / "tok.json",
    }
    for name, source in sources.items():
        encoder = TextEncoder.from_keras(source, max_len=24, padding=padding, truncating=truncating)
        np.testing.assert_array_equal(encoder(texts), expected, err_msg=name)
    # saved beside a model and read back, it still gives the same ids
    encoder.save(tmp_path / "deploy")
    np.testing.assert_array_equal(TextEncoder.load(tmp_path / "deploy")(texts), expected)


VECTORIZERS = {
    "defaults": {},
    "lower": {"standardize": "lower"},
    "strip_punctuation": {"standardize": "strip_punctuation"},
    "no standardize": {"standardize": None},
    "characters": {"split": "character"},
    "bigrams": {"ngrams": 2},
    "small vocabulary": {"max_tokens": 300},
    "whole text is the token": {"split": None, "standardize": "lower"},
}


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
@pytest.mark.parametrize("case", sorted(VECTORIZERS))
def test_text_vectorization_ids_are_reproduced_exactly(sst2, case, flavour, tmp_path):
    train, dev = sst2
    module = keras3 if flavour == "keras3" else tf_keras
    layer = module.layers.TextVectorization(output_sequence_length=32, **{"max_tokens": 5000, **VECTORIZERS[case]})
    layer.adapt(train + (dev[:50] if case == "whole text is the token" else []))
    texts = dev + HOSTILE
    expected = np.asarray(layer(tf.constant(texts)[:, None]))  # (batch, 1) strings, as a model feeds it

    encoder = TextEncoder.from_keras(layer)

    assert (encoder.max_len, encoder.padding, encoder.truncating) == (32, "post", "post")
    np.testing.assert_array_equal(encoder(texts), expected)
    encoder.save(tmp_path / "deploy")
    np.testing.assert_array_equal(TextEncoder.load(tmp_path / "deploy")(texts), expected)


def test_vocabulary_files_in_text_vectorization_order(sst2, tmp_path):
    train, dev = sst2
    layer = keras3.layers.TextVectorization(max_tokens=2000, output_sequence_length=20)
    layer.adapt(train)
    vocab = [str(t) for t in layer.get_vocabulary()]
    expected = np.asarray(layer(tf.constant(dev)[:, None]))
    for name, lines in {"full": vocab, "without mask": vocab[1:], "tokens only": vocab[2:]}.items():
        path = tmp_path / f"{name}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        encoder = text.load_tokenizer(path, max_len=20)
        np.testing.assert_array_equal(encoder(dev), expected, err_msg=name)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    np.testing.assert_array_equal(text.load_tokenizer(tmp_path / "vocab.json", max_len=20)(dev), expected)


def _id_model(vocab_size=1000, length=40, float_input=False):
    inp = keras.Input((length,), dtype="float32" if float_input else "int32")
    x = keras.layers.Embedding(vocab_size, 4, name="embedding")(inp)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.LSTM(3)(x)), name="users_model")


def test_encoder_is_checked_against_the_model(sst2):
    train, dev = sst2
    tok = _tokenizer(train, num_words=2000)
    # the length comes from the model when not given
    assert TextEncoder.from_keras(tok, model=_id_model(2000, 40)).max_len == 40
    with pytest.raises(TokenizerError, match=r"2000 ids .* Embedding 'embedding' .* 1000 rows"):
        TextEncoder.from_keras(tok, model=_id_model(1000, 40))
    with pytest.raises(TokenizerError, match=r"pads to 64 tokens but model 'users_model' reads 40.*max_len=40"):
        TextEncoder.from_keras(tok, max_len=64, model=_id_model(2000, 40))
    features = keras.Sequential([keras.Input((40, 3)), keras.layers.LSTM(2)])
    with pytest.raises(TokenizerError, match=r"not one \(batch, length\) array of integer token ids"):
        TextEncoder.from_keras(tok, model=features)
    # keras.Input((40,)) is float32 by default; an Embedding reading it still reads ids
    floaty = _id_model(2000, 40, float_input=True)
    assert TextEncoder.from_keras(tok, model=floaty).max_len == 40
    fixed = text.with_int_ids(floaty)
    assert fixed.inputs[0].dtype == tf.int32
    ids = TextEncoder.from_keras(tok, model=fixed)(dev[:32])
    np.testing.assert_allclose(fixed.predict(ids, verbose=0), floaty.predict(ids.astype("float32"), verbose=0), atol=1e-6)


def test_tokenizers_that_cannot_be_reproduced_are_refused_with_the_reason(tmp_path):
    tok = tf_keras.preprocessing.text.Tokenizer(analyzer=str.split)
    tok.fit_on_texts(["a b"])
    with pytest.raises(TokenizerError, match=r"custom `analyzer` function"):
        TextEncoder.from_keras(tok, max_len=4)
    with pytest.raises(TokenizerError, match=r"does not know the sequence length.*max_len="):
        TextEncoder.from_keras(_tokenizer(["a b"]))
    with pytest.raises(TokenizerError, match=r"no word_index"):
        TextEncoder.from_keras('{"class_name": "Something", "config": {}}', max_len=4)
    with pytest.raises(TokenizerError, match=r"has no words"):
        TextEncoder.from_keras(tf_keras.preprocessing.text.Tokenizer(), max_len=4)
    custom = keras3.layers.TextVectorization(standardize=lambda s: s, output_sequence_length=4)
    custom.adapt(["a b"])
    with pytest.raises(TokenizerError, match=r"custom standardize function"):
        TextEncoder.from_keras(custom)
    counts = keras3.layers.TextVectorization(output_mode="multi_hot")
    counts.adapt(["a b"])
    with pytest.raises(TokenizerError, match=r"output_mode='multi_hot'.*not token ids"):
        TextEncoder.from_keras(counts)
    with pytest.raises(TokenizerError, match=r"empty vocabulary: adapt\(\) was never run"):
        TextEncoder.from_keras(keras3.layers.TextVectorization(output_sequence_length=4))
    ragged = keras3.layers.TextVectorization()
    ragged.adapt(["a b"])
    with pytest.raises(TokenizerError, match=r"no output_sequence_length.*--max-len"):
        TextEncoder.from_keras(ragged)
    assert TextEncoder.from_keras(ragged, max_len=7).max_len == 7
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00binary" * 10)
    with pytest.raises(TokenizerError, match=r"not UTF-8"):
        text.load_tokenizer(tmp_path / "bin.txt", max_len=4)
    (tmp_path / "late.txt").write_bytes(b"word\n" * 20000 + b"\xff\n")
    with pytest.raises(TokenizerError, match=r"must be UTF-8 text; byte 100000"):
        text.load_tokenizer(tmp_path / "late.txt", max_len=4)
    (tmp_path / "list.json").write_text('["a", 1, null]')
    with pytest.raises(TokenizerError, match=r"a JSON vocabulary is a list of strings"):
        text.load_tokenizer(tmp_path / "list.json", max_len=4)


# --------------------------------------------------------------------------
# TextVectorization inside the model
# --------------------------------------------------------------------------


def _string_models(module, texts):
    def vectorizer(name):
        layer = module.layers.TextVectorization(max_tokens=300, output_sequence_length=12, name=name)
        layer.adapt(texts)
        return layer

    inp = module.Input((1,), dtype="string", name="text")
    x = vectorizer("tv")(inp)
    x = module.layers.Embedding(300, 4)(x)
    x = module.layers.Bidirectional(module.layers.LSTM(3))(x)
    functional = module.Model(inp, module.layers.Dense(2, activation="softmax")(x), name="functional")
    sequential = module.Sequential(
        [module.Input((1,), dtype="string"), vectorizer("tv2"), module.layers.Embedding(300, 4), module.layers.LSTM(3), module.layers.Dense(1, activation="sigmoid")],
        name="sequential",
    )
    return functional, sequential


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_split_vectorizer_gives_an_id_model_with_the_same_outputs(sst2, flavour):
    train, dev = sst2
    for model in _string_models(keras3 if flavour == "keras3" else tf_keras, train):
        encoder, id_model = text.split_vectorizer(model)
        assert isinstance(id_model, keras.Model)
        assert id_model.inputs[0].dtype == tf.int32 and tuple(id_model.input_shape) == (None, 12)
        texts = dev[:200] + HOSTILE
        expected = np.asarray(model(tf.constant(texts)[:, None]))
        np.testing.assert_allclose(id_model.predict(encoder(texts), verbose=0), expected, atol=1e-6)


def test_split_vectorizer_refusals(sst2):
    train, _ = sst2
    with pytest.raises(TokenizerError, match=r"no TextVectorization layer"):
        text.split_vectorizer(_id_model())
    a, b = (keras3.layers.TextVectorization(output_sequence_length=4, name=n) for n in ("a", "b"))
    for layer in (a, b):
        layer.adapt(train[:100])
    inp = keras3.Input((1,), dtype="string")
    emb = keras3.layers.Embedding(200, 2)
    twice = keras3.Model(inp, keras3.layers.Concatenate()([emb(a(inp)), emb(b(inp))]))
    with pytest.raises(TokenizerError, match=r"2 TextVectorization layers \('a', 'b'\)"):
        text.split_vectorizer(twice)


def test_recipe_refuses_an_id_model_without_its_tokenizer(tmp_path):
    data = tmp_path / "train.tsv"
    data.write_text("text\tlabel\n" + "".join(f"good film {i}\t1\nbad film {i}\t0\n" for i in range(20)))
    _id_model(50, 6).save(tmp_path / "m.keras")
    plan = recipe.Recipe.from_dict(
        {"data": {"train": "train.tsv"}, "model": {"load": "m.keras"}, "steps": ["export"]}, base_dir=str(tmp_path)
    )
    with pytest.raises(recipe.RecipeError, match=r"reads token ids, but no tokenizer was given.*--tokenizer"):
        recipe.run(plan, tmp_path / "out", log=lambda *_: None)
    (tmp_path / "vocab.txt").write_text("good\nbad\nfilm\n")
    model_with_tv = _string_models(keras3, ["good film", "bad film"])[0]
    model_with_tv.save(tmp_path / "tv.keras")
    plan = recipe.Recipe.from_dict(
        {"data": {"train": "train.tsv"}, "text": {"tokenizer": "vocab.txt"}, "model": {"load": "tv.keras"}, "steps": ["export"]},
        base_dir=str(tmp_path),
    )
    with pytest.raises(recipe.RecipeError, match=r"its own TextVectorization layer 'tv'.*drop text.tokenizer"):
        recipe.run(plan, tmp_path / "out2", log=lambda *_: None)
