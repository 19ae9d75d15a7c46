"""Four Keras text models as people write them, each carried to a .tflite file.

1. the seed's character model: Keras 3, one-hot input, three stacked LSTMs,
   saved as .h5, loaded, quantized (`quantize_model`), compiled with
   Adam(1e-5), re-trained, exported (Python API);
2. an IMDB-style Keras 3 `Embedding -> Bidirectional(LSTM) -> Dense(1,
   sigmoid)` with its vocabulary file (`tfcompress compress --tokenizer
   --steps quantize,export`);
3. a string-input Keras 3 LSTM model with a `TextVectorization` layer inside
   (`tfcompress compress --model`), and a tf_keras GRU one exported whole
   (`export.to_tflite`);
4. a Keras `Tokenizer` + `pad_sequences(padding="post")` pipeline, masked
   LSTM, float `keras.Input((48,))` (`tfcompress compress --tokenizer
   tok.json --padding post --steps quantize,export`; pruning a user's model
   through the command line is the third test's).

Agreement is measured on data no model trained on (SST-2 dev, or held-back
character windows), against the Keras model each file was exported from.
"""

import csv
import json
import re

import numpy as np
import pytest
import tensorflow as tf

import keras as keras3  # Keras 3, on purpose
import tf_keras
import tfcompress
from tfcompress import cli, export, quantization, text

pytestmark = pytest.mark.slow
LEN = 48


@pytest.fixture(scope="module")
def sst2(sst2_dir, tmp_path_factory):
    """8,000 SST-2 training phrases (a fixed sample), and the dev set."""

    def read(name):
        with open(sst2_dir / name, encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        return [r[0] for r in rows], np.array([int(r[1]) for r in rows])

    texts, labels = read("train.tsv")
    keep = np.random.default_rng(0).permutation(len(texts))[:8000]
    train = [texts[i] for i in keep], labels[keep]
    folder = tmp_path_factory.mktemp("sst2")
    with open(folder / "train.tsv", "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in zip(*train)))
    return train, read("dev.tsv"), folder / "train.tsv", sst2_dir / "dev.tsv"


def _compress(args, out, steps="prune,quantize,export"):
    code = cli.main(["compress", *args, "--out", str(out), "--epochs", "1", "--steps", steps])
    assert code == 0
    records = {r["step"]: r for r in json.loads((out / "report.json").read_text())["records"]}
    exported = records["export model dynamic"]
    agreement = float(re.search(r"agreement ([\d.]+)%", exported["notes"]).group(1)) / 100
    return records, agreement


def _fit_keras3(model, x, y, loss):
    model.compile(optimizer=keras3.optimizers.Adam(2e-3), loss=loss, metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    return model


def test_the_seed_char_model_workflow_runs_as_written(tmp_path):
    corpus = text.builtin_corpus()[:40_000]
    chars = sorted(set(corpus))
    index = {c: i for i, c in enumerate(chars)}
    maxlen, step = 20, 3
    starts = range(0, len(corpus) - maxlen, step)
    x = np.zeros((len(starts), maxlen, len(chars)), dtype="float32")
    y = np.zeros((len(starts), len(chars)), dtype="float32")
    for n, i in enumerate(starts):
        for t, c in enumerate(corpus[i : i + maxlen]):
            x[n, t, index[c]] = 1
        y[n, index[corpus[i + maxlen]]] = 1
    held_x, held_y = x[-1500:], y[-1500:]
    L = keras3.layers
    model = keras3.Sequential(
        [
            keras3.Input((maxlen, len(chars))),
            L.LSTM(32, return_sequences=True),
            L.Dropout(0.2),
            L.LSTM(32, return_sequences=True),
            L.Dropout(0.2),
            L.LSTM(32),
            L.Dropout(0.2),
            L.Dense(len(chars)),
            L.Activation("softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer=keras3.optimizers.RMSprop(learning_rate=0.01))
    model.fit(x[:-1500], y[:-1500], batch_size=128, epochs=2, verbose=0)
    model.save(tmp_path / "my_model.h5")

    # The seed's workflow, with tfcompress's names:
    from tfcompress.quantization import quantize_model

    loaded = tfcompress.load_model(tmp_path / "my_model.h5")
    q_aware = quantize_model(loaded)
    q_aware.compile(loss="categorical_crossentropy", optimizer=tfcompress.keras.optimizers.Adam(learning_rate=1e-5))
    q_aware.fit(x[:-1500], y[:-1500], batch_size=128, epochs=1, verbose=0)

    reference = quantization.strip(q_aware).predict(held_x, verbose=0)
    top_two = np.sort(reference, 1)[:, -2:]
    undecided = top_two[:, 1] - top_two[:, 0] <= export.VERIFY_TIE  # agreement as export verification counts it
    for mode in ("float32", "dynamic"):
        result = export.to_tflite(q_aware, tmp_path / f"seed-{mode}.tflite", mode=mode)
        assert "WHILE" in result.ops and not result.stateful  # the three LSTMs run as loops, no state kept
        probs = export.TFLiteModel(result.path).predict(held_x)
        assert ((probs.argmax(1) == reference.argmax(1)) | undecided).mean() >= 0.99, mode
    original = np.asarray(model.predict(held_x, verbose=0))
    assert (probs.argmax(1) == held_y.argmax(1)).mean() >= (original.argmax(1) == held_y.argmax(1)).mean() - 0.03


def test_imdb_style_keras3_model_with_its_vocabulary_file(sst2, tmp_path):
    (texts, labels), (dev_texts, _), train_file, dev_file = sst2
    vectorizer = keras3.layers.TextVectorization(max_tokens=8000, output_sequence_length=LEN)
    vectorizer.adapt(texts)
    (tmp_path / "vocab.txt").write_text("\n".join(vectorizer.get_vocabulary()[2:]) + "\n", encoding="utf-8")
    L = keras3.layers
    model = keras3.Sequential(
        [keras3.Input((LEN,), dtype="int32"), L.Embedding(8000, 32), L.Bidirectional(L.LSTM(32)), L.Dense(1, activation="sigmoid")]
    )
    _fit_keras3(model, np.asarray(vectorizer(tf.constant(texts))), labels, "binary_crossentropy")
    model.save(tmp_path / "imdb.keras")

    records, agreement = _compress(["--model", str(tmp_path / "imdb.keras"), "--tokenizer", str(tmp_path / "vocab.txt"), str(train_file), "--dev", str(dev_file)], tmp_path / "out", steps="quantize,export")

    assert records["your model (as loaded)"]["value"] >= 0.72  # it was read with the right ids
    assert agreement >= 0.99
    deployed = text.TextEncoder.load(tmp_path / "out")
    np.testing.assert_array_equal(deployed(dev_texts), np.asarray(vectorizer(tf.constant(dev_texts))))


def test_string_input_models_with_a_text_vectorization_layer(sst2, tmp_path):
    (texts, labels), (dev_texts, _), train_file, dev_file = sst2
    strings = tf.constant(texts)[:, None]
    # Keras 3, through the command line
    vectorizer = keras3.layers.TextVectorization(max_tokens=8000, output_sequence_length=LEN)
    vectorizer.adapt(texts)
    inp = keras3.Input((1,), dtype="string")
    h = keras3.layers.LSTM(32)(keras3.layers.Embedding(8000, 32)(vectorizer(inp)))
    k3_model = keras3.Model(inp, keras3.layers.Dense(2, activation="softmax")(h))
    k3_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    k3_model.fit(tf.data.Dataset.from_tensor_slices((strings, labels)).batch(64), epochs=2, verbose=0)
    k3_model.save(tmp_path / "tv.keras")
    _, agreement = _compress(["--model", str(tmp_path / "tv.keras"), str(train_file), "--dev", str(dev_file)], tmp_path / "out")
    assert agreement >= 0.99

    # tf_keras, exported whole: the .tflite + deployment files answer like the model on raw strings
    tv = tf_keras.layers.TextVectorization(max_tokens=8000, output_sequence_length=LEN)
    tv.adapt(texts)
    inp = tf_keras.Input((1,), dtype="string")
    h = tf_keras.layers.GRU(16)(tf_keras.layers.Embedding(8000, 32)(tv(inp)))
    tfk_model = tf_keras.Model(inp, tf_keras.layers.Dense(2, activation="softmax")(h))
    tfk_model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    tfk_model.fit(strings, labels, batch_size=64, epochs=2, verbose=0)
    for name, model in (("keras3", k3_model), ("tf_keras", tfk_model)):
        result = export.to_tflite(model, tmp_path / name / "sentiment.tflite")
        assert result.encoder is not None and "TextVectorization" in result.notes[0]
        encoder = text.TextEncoder.load(tmp_path / name)
        probs = export.TFLiteModel(result.path).predict(encoder(dev_texts))
        expected = np.asarray(model.predict(tf.constant(dev_texts)[:, None], verbose=0))
        assert (probs.argmax(1) == expected.argmax(1)).mean() >= 0.99, name


def test_keras_tokenizer_with_post_padding_and_masking(sst2, tmp_path):
    (texts, labels), _, train_file, dev_file = sst2
    tokenizer = tf_keras.preprocessing.text.Tokenizer(num_words=8000, oov_token="<OOV>")
    tokenizer.fit_on_texts(texts)
    (tmp_path / "tokenizer.json").write_text(tokenizer.to_json(), encoding="utf-8")
    x = tf_keras.preprocessing.sequence.pad_sequences(tokenizer.texts_to_sequences(texts), maxlen=LEN, padding="post", truncating="post")
    model = tf_keras.Sequential(
        [
            tf_keras.Input((LEN,)),  # float32, as written in countless tutorials
            tf_keras.layers.Embedding(8000, 32, mask_zero=True),
            tf_keras.layers.LSTM(32),
            tf_keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, labels, batch_size=64, epochs=2, verbose=0)
    model.save(tmp_path / "model.h5")

    args = ["--model", str(tmp_path / "model.h5"), "--tokenizer", str(tmp_path / "tokenizer.json"), "--padding", "post", "--truncating", "post"]
    records, agreement = _compress(args + [str(train_file), "--dev", str(dev_file)], tmp_path / "out", steps="quantize,export")

    assert records["your model (as loaded)"]["value"] >= 0.75
    assert agreement >= 0.99
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["inputs"][0]["dtype"] == "int32" and not meta["stateful"]  # masked LSTM: a WHILE loop, no state
