"""Vocabulary, encoding, tf.data pipelines and loaders."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfcompress import text
from tfcompress.text import (
    DataFormatError,
    TextEncoder,
    TextPreprocessor,
    Vocabulary,
    char_dataset,
    char_windows,
    load_texts,
    pad_and_truncate,
    text_dataset,
    tf_encoder,
)

CORPUS = [
    "a good film , not bad",
    "bad bad plot",
    "the film is good",
    "",
    "an unseen word appears",
]


# ------------------------------------------------------------------ vocabulary


def test_build_orders_by_frequency_then_alphabet_with_reserved_ids():
    v = Vocabulary.build([["b", "a", "c", "a", "b", "d"], ["d"]])
    assert v.tokens == ["<pad>", "<unk>", "a", "b", "d", "c"]
    assert (v.pad_id, v.oov_id) == (0, 1)
    assert Vocabulary.build([["b", "a", "c", "a", "b"]], max_size=4).tokens == ["<pad>", "<unk>", "a", "b"]
    assert Vocabulary.build([["b", "a", "c", "a", "b"]], min_freq=2).tokens == ["<pad>", "<unk>", "a", "b"]


@pytest.mark.parametrize(
    "padding,truncating,expected",
    [
        ("pre", "pre", [[3, 4, 5], [0, 0, 0], [0, 0, 7]]),
        ("pre", "post", [[1, 2, 3], [0, 0, 0], [0, 0, 7]]),
        ("post", "pre", [[3, 4, 5], [0, 0, 0], [7, 0, 0]]),
        ("post", "post", [[1, 2, 3], [0, 0, 0], [7, 0, 0]]),
    ],
)
def test_padding_and_truncation_on_either_side(padding, truncating, expected):
    out = pad_and_truncate([[1, 2, 3, 4, 5], [], [7]], 3, padding, truncating)
    assert out.dtype == np.int32 and out.tolist() == expected


def test_encode_decode_and_unknown_tokens():
    v = Vocabulary.build([["good", "film"], ["good"]])
    ids = v.encode([["good", "zzz", "film"]], max_len=5)
    assert ids.tolist() == [[0, 0, 2, 1, 3]]
    assert v.decode(ids[0]) == ["good", "<unk>", "film"]
    assert v.decode(ids[0], skip_padding=False)[:2] == ["<pad>", "<pad>"]


def test_vocabulary_file_round_trip_with_awkward_tokens(tmp_path):
    tokens = ["a", "\n", "\t", "\\", "\\n", " ", "é", "😀", "x y", "\r"]
    v = Vocabulary.build([tokens])
    path = tmp_path / "vocab.txt"
    v.save(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[:2] == ["<pad>", "<unk>"] and len(lines) == len(v) + 1
    assert Vocabulary.load(path) == v


def test_vocabulary_errors(tmp_path):
    with pytest.raises(ValueError, match=r"max_size counts the two reserved ids.*max_size=2"):
        Vocabulary.build([["a"]], max_size=2)
    with pytest.raises(ValueError, match=r"min_freq=0"):
        Vocabulary.build([["a"]], min_freq=0)
    with pytest.raises(ValueError, match=r"must start with the padding and OOV tokens"):
        Vocabulary(["a", "b"])
    with pytest.raises(ValueError, match=r"'a' appears twice \(ids 2 and 3\)"):
        Vocabulary(["<pad>", "<unk>", "a", "a"])
    bad = tmp_path / "v.txt"
    bad.write_text("<pad>\n")
    with pytest.raises(ValueError, match=r"v.txt: a vocabulary file needs at least"):
        Vocabulary.load(bad)
    with pytest.raises(ValueError, match=r"padding must be 'pre' or 'post'. Received: padding='left'"):
        pad_and_truncate([[1]], 3, padding="left")


# ------------------------------------------------------------------ encoder


def test_encoder_fit_save_load(tmp_path):
    enc = TextEncoder.fit(CORPUS, TextPreprocessor(punctuation="remove"), max_len=6)
    ids = enc(CORPUS)
    assert ids.shape == (5, 6) and ids.dtype == np.int32
    assert ids[3].tolist() == [0] * 6  # empty text: all padding
    assert enc(["qqq good zzz"])[0, -3:].tolist() == [1, enc.vocabulary.ids(["good"])[0], 1]
    enc2, ids2 = TextEncoder.fit_transform(CORPUS, TextPreprocessor(punctuation="remove"), max_len=6)
    assert enc2 == enc and np.array_equal(ids2, ids)

    enc.save(tmp_path / "deploy")
    assert sorted(os.listdir(tmp_path / "deploy")) == ["preprocessing.json", "vocab.txt"]
    loaded = TextEncoder.load(tmp_path / "deploy")
    assert loaded == enc
    assert np.array_equal(loaded(CORPUS), ids)


def test_encoder_detects_mismatched_files(tmp_path):
    enc = TextEncoder.fit(CORPUS, max_len=4)
    enc.save(tmp_path)
    Vocabulary.build([["x"]]).save(tmp_path / "vocab.txt")
    with pytest.raises(ValueError, match=r"do not belong together"):
        TextEncoder.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nowhere not found. Fix: pass a folder written by TextEncoder.save\(\)"):
        TextEncoder.load(tmp_path / "nowhere")


def test_default_max_len_is_99th_percentile():
    texts = ["w " * n for n in range(1, 201)]
    enc = TextEncoder.fit(texts)
    assert enc.max_len == int(np.ceil(np.percentile(range(1, 201), 99)))


# ------------------------------------------------------------------ pipelines


def test_direct_unbatched_and_batched_tf_data_give_identical_ids():
    enc = TextEncoder.fit(CORPUS, max_len=7)
    direct = enc(CORPUS)
    strings = tf.data.Dataset.from_tensor_slices(CORPUS)
    unbatched = np.stack([x.numpy() for x in strings.map(tf_encoder(enc))])
    batched = np.concatenate([x.numpy() for x in strings.batch(2).map(tf_encoder(enc))])
    assert np.array_equal(direct, unbatched)
    assert np.array_equal(direct, batched)
    spec = strings.batch(2).map(tf_encoder(enc)).element_spec
    assert spec.shape.as_list() == [None, 7] and spec.dtype == tf.int32


def test_text_dataset_is_batched_shuffled_and_complete():
    enc = TextEncoder.fit(CORPUS, max_len=7)
    labels = np.arange(5) % 2
    ds = text_dataset(CORPUS, labels, enc, batch_size=2, seed=3)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    ids = np.concatenate([b[0].numpy() for b in batches])
    got = {tuple(r) for r in ids}
    assert got == {tuple(r) for r in enc(CORPUS)}
    first = [tuple(b[1].numpy()) for b in text_dataset(CORPUS, labels, enc, batch_size=5, seed=3)]
    assert first == [tuple(b[1].numpy()) for b in text_dataset(CORPUS, labels, enc, batch_size=5, seed=3)]
    unshuffled = next(iter(text_dataset(CORPUS, labels, enc, batch_size=5, shuffle=False)))
    assert np.array_equal(unshuffled[0].numpy(), enc(CORPUS))
    with pytest.raises(ValueError, match=r"5 texts but 4 labels"):
        text_dataset(CORPUS, labels[:4], enc)


def test_char_windows_direct_and_tf_data_agree():
    corpus = "hello world, hello tfcompress!\n"
    vocab = Vocabulary.build([list(corpus)])
    x, y = char_windows(vocab.ids(list(corpus)), window=5, step=2)
    assert x.shape == (13, 5) and y.shape == (13,)
    assert vocab.decode(x[0]) == list("hello") and vocab.decode([y[0]]) == [" "]
    assert vocab.decode(x[1]) == list("llo w")
    ds = char_dataset(corpus, vocab, window=5, step=2, batch_size=4, shuffle=False)
    dx = np.concatenate([b[0].numpy() for b in ds])
    dy = np.concatenate([b[1].numpy() for b in ds])
    assert np.array_equal(dx, x) and np.array_equal(dy, y)
    with pytest.raises(ValueError, match=r"too few for window=50"):
        char_windows(vocab.ids(list(corpus)), 50)


# ------------------------------------------------------------------ loaders


def test_tsv_with_header(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text('sentence\tlabel\nit \'s "great" \t1\nawful , really \t0\n', encoding="utf-8")
    data = load_texts(p)
    assert data.texts == ["it 's \"great\" ", "awful , really "]
    assert data.labels.tolist() == [1, 0] and data.label_names == ["0", "1"]


def test_csv_quoted_fields_columns_by_name_and_string_labels(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(
        'id,review,stars\n1,"Great, truly ""great""",pos\n2,"multi\nline",neg\n3,meh,neutral\n',
        encoding="utf-8",
    )
    data = load_texts(p, text_column="review", label_column="stars")
    assert data.texts == ['Great, truly "great"', "multi\nline", "meh"]
    assert data.label_names == ["neg", "neutral", "pos"]
    assert data.names(data.labels) == ["pos", "neg", "neutral"]
    assert data.num_classes == 3


def test_columns_by_position_without_header_and_integer_labels(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("5,first text\n10,second\n2,third\n", encoding="utf-8")
    data = load_texts(p, text_column=1, label_column=0, header=False)
    assert data.label_names == ["2", "5", "10"]  # numeric order
    assert data.labels.tolist() == [1, 2, 0]


def test_jsonl(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0}\n', encoding="utf-8")
    data = load_texts(p)
    assert data.texts == ["good", "bad"] and data.labels.tolist() == [1, 0]


def test_folder_per_label(tmp_path):
    for label, docs in {"neg": ["awful", "bad"], "pos": ["great"]}.items():
        (tmp_path / label).mkdir()
        for i, doc in enumerate(docs):
            (tmp_path / label / f"{i}.txt").write_text(doc, encoding="utf-8")
    data = load_texts(tmp_path)
    assert data.texts == ["awful", "bad", "great"] and data.names(data.labels) == ["neg", "neg", "pos"]


@pytest.mark.parametrize(
    "encoding,expected",
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16"), ("cp1252", "cp1252")],
)
def test_encoding_is_detected(tmp_path, encoding, expected):
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\ncafé “naïve” – ok\t1\n", encoding=encoding)
    data = load_texts(p)
    assert data.texts == ["café “naïve” – ok"] and data.encoding == expected


def test_declared_encoding_and_label_names(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\nzß\tb\n", encoding="latin-1")
    data = load_texts(p, encoding="latin-1", label_names=["a", "b"])
    assert data.texts == ["zß"] and data.labels.tolist() == [1]


@pytest.mark.parametrize(
    "name,content,kwargs,pattern",
    [
        ("d.tsv", "text\tlabel\nok\t1\nbroken row\n", {}, r"d.tsv, line 3: expected at least 2 TSV fields"),
        ("d.csv", 'text,label\n"unclosed,1\n', {}, r"d.csv, line \d+: malformed CSV"),
        ("d.jsonl", '{"text": "a", "label": 1}\n{"text": "b"\n', {}, r"d.jsonl, line 2: invalid JSON"),
        ("d.jsonl", '{"text": "a", "label": 1}\n{"body2": "b", "label": 0}\n', {}, r"line 2: no text field"),
        ("d.tsv", "text\tlabel\nok\t\n", {}, r"d.tsv, line 2: the label \(column 1\) is empty"),
        ("d.tsv", "text\tlabel\nok\tc\n", {"label_names": ["a", "b"]}, r"line 2: label 'c' is not one of"),
        ("d.tsv", "text\tlabel\nok\t1\n", {"text_column": "body"}, r"no column named 'body'"),
        ("d.tsv", "ok\t1\n", {"text_column": "text", "header": False}, r"names a column, but the file has no header"),
        ("d.jsonl", '{"text": "a", "label": 1}\n', {"text_column": 0}, r"is a position, but JSONL rows are objects"),
        ("d.xml", "<a/>", {}, r"cannot tell the format from the extension '.xml'"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, name, content, kwargs, pattern):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError, match=pattern):
        load_texts(p, **kwargs)


def test_split_and_builtin_corpus():
    corpus = text.builtin_corpus()
    assert len(corpus) > 400_000 and "for" in corpus
    assert corpus == text.builtin_corpus()
    data = text.LabeledTexts(list("abcdefghij"), np.arange(10) % 2, ["0", "1"])
    a, b = data.split(0.3, seed=1)
    assert len(a) == 7 and len(b) == 3 and sorted(a.texts + b.texts) == data.texts


def test_sst2_loads(sst2_dir):
    train = load_texts(sst2_dir / "train.tsv")
    dev = load_texts(sst2_dir / "dev.tsv", label_names=train.label_names)
    assert (len(train), len(dev)) == (67349, 872)
    assert int(train.labels.sum()) == 37569 and int(dev.labels.sum()) == 444
    assert json.dumps(train.label_names) == '["0", "1"]'


def test_token_table_path_equals_token_list_path():
    from tfcompress.text import TokenTable

    pre = TextPreprocessor(punctuation="remove")
    lists = pre(CORPUS * 3)
    table = pre.table(CORPUS * 3)
    assert table.to_lists() == lists
    assert TokenTable.from_lists(lists) == table
    halves = TokenTable.concat([pre.table(CORPUS), pre.table(CORPUS * 2)])
    assert halves.to_lists() == lists
    for kwargs in ({}, {"max_size": 5}, {"min_freq": 2}):
        assert Vocabulary.build(table, **kwargs) == Vocabulary.build(lists, **kwargs)
    vocab = Vocabulary.build(table, max_size=6)
    for padding in ("pre", "post"):
        assert np.array_equal(vocab.encode(table, 4, padding), vocab.encode(lists, 4, padding))
    empty = pre.table([])
    assert len(empty) == 0 and vocab.encode(empty, 3).shape == (0, 3)


def test_char_ids_match_ids_of_the_character_list_without_making_it():
    from tfcompress import text

    corpus = text.builtin_corpus()[:20_000] + "caf\u00e9 \ud800 \U0001F600 zz"
    vocab = text.Vocabulary.build([list(corpus[:5_000])])  # later characters are out of vocabulary
    ids = vocab.char_ids(corpus)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, np.asarray(vocab.ids(list(corpus)), np.int32))
    assert (ids == vocab.oov_id).any()


def test_detect_encoding_samples_the_start_and_the_end(tmp_path):
    from tfcompress.text import detect_encoding

    utf8 = ("\u00e9t\u00e9 " * 50 + "\n").encode() * 20  # 6 KB, multi-byte characters everywhere
    (tmp_path / "u.txt").write_bytes(utf8)
    assert detect_encoding(tmp_path / "u.txt", sample_bytes=1001) == "utf-8"  # samples cut characters: fine
    (tmp_path / "c.txt").write_bytes(utf8 + "caf\u00e9\n".encode("cp1252"))  # cp1252 only at the end
    assert detect_encoding(tmp_path / "c.txt", sample_bytes=1000) == "cp1252"
