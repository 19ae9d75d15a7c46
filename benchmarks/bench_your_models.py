"""Models users arrive with: their own model and tokenizer, compressed.

A. Three SST-2 models as people write them, each trained on all of SST-2
   train (2 epochs, the author's own settings), then in the same process:
   - baseline: the user's model exported whole to a float32 `.tflite`
     (`export.to_tflite`, no compression);
   - candidate: `tfcompress compress --model ... [--tokenizer ...] --epochs 1`
     with the default steps (prune 80%, 8-bit QAT, dynamic export).
   Shapes: a Keras 3 IMDB-style `Embedding -> BiLSTM -> Dense(1, sigmoid)`
   with a vocabulary file; a Keras 3 string-input model with a
   `TextVectorization` layer; a tf_keras model on a Keras `Tokenizer` with
   `pad_sequences(padding="post")` and a masked LSTM.
B. The seed's character model (Keras 3, one-hot input, 3 stacked LSTMs) on
   Python's documentation: float32 `.tflite` of the model as trained vs
   `quantize_model` + Adam(1e-5) for one epoch + dynamic export.
C. Bit widths: the default SST-2 classifier, trained once, then QAT at
   8, 6, 4, 3 and 2 weight bits (one epoch each, same start), dynamic export.

No setting is chosen here: every model uses fixed, stated settings, and SST-2
dev is used only to report (it is the only labelled set besides train). One
seed per row; accuracy differences under ~1 point are within seed noise
(BENCHMARKS.md, pruning section: ±0.8).
"""

import json
import re
import tempfile

import numpy as np

from common import DATA, Timer, emit, parser, sst2, table, train_classifier

LEN = 48


def _agreement(notes):
    return float(re.search(r"agreement ([\d.]+)%", notes).group(1)) / 100


def _tflite_accuracy(path, x, y):
    from tfcompress import export

    probs = export.TFLiteModel(path).predict(x)
    pred = (probs[:, 0] > 0.5).astype(int) if probs.shape[-1] == 1 else probs.argmax(1)
    return float((pred == y).mean())


def shapes(train, dev, work, quick):
    import keras as keras3
    import tensorflow as tf
    import tf_keras

    from tfcompress import cli, export, text

    texts, labels = train.texts, train.labels
    with open(work / "train.tsv", "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in zip(texts, labels)))
    epochs = 1 if quick else 2
    rows = []

    def fit3(model, x, y, loss):
        model.compile(optimizer=keras3.optimizers.Adam(2e-3), loss=loss, metrics=["accuracy"])
        model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)

    built = {}
    # Keras 3 IMDB-style model + vocabulary file
    tv = keras3.layers.TextVectorization(max_tokens=15000, output_sequence_length=LEN)
    tv.adapt(texts)
    (work / "vocab.txt").write_text("\n".join(tv.get_vocabulary()[2:]) + "\n", encoding="utf-8")
    L = keras3.layers
    imdb = keras3.Sequential([keras3.Input((LEN,), dtype="int32"), L.Embedding(15000, 64), L.Bidirectional(L.LSTM(64)), L.Dense(1, activation="sigmoid")])
    with Timer() as t:
        fit3(imdb, np.asarray(tv(tf.constant(texts))), labels, "binary_crossentropy")
    imdb.save(work / "imdb.keras")
    built["Keras 3 Embedding→BiLSTM(64)→sigmoid, vocabulary file"] = (
        imdb, ["--model", str(work / "imdb.keras"), "--tokenizer", str(work / "vocab.txt")], text.load_tokenizer(work / "vocab.txt", max_len=LEN), t.seconds
    )
    # Keras 3 string-input model with TextVectorization inside
    tv2 = keras3.layers.TextVectorization(max_tokens=15000, output_sequence_length=LEN)
    tv2.adapt(texts)
    inp = keras3.Input((1,), dtype="string")
    h = L.LSTM(64)(L.Embedding(15000, 64, mask_zero=True)(tv2(inp)))
    string_model = keras3.Model(inp, L.Dense(2, activation="softmax")(h))
    with Timer() as t:
        string_model.compile(optimizer=keras3.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        string_model.fit(tf.data.Dataset.from_tensor_slices((tf.constant(texts)[:, None], labels)).shuffle(8192, seed=0).batch(64), epochs=epochs, verbose=0)
    string_model.save(work / "tv.keras")
    built["Keras 3 string input, TextVectorization + masked LSTM(64)"] = (string_model, ["--model", str(work / "tv.keras")], None, t.seconds)
    # tf_keras on a Keras Tokenizer, post-padded, masked
    tok = tf_keras.preprocessing.text.Tokenizer(num_words=15000, oov_token="<OOV>")
    tok.fit_on_texts(texts)
    (work / "tokenizer.json").write_text(tok.to_json(), encoding="utf-8")
    x = tf_keras.preprocessing.sequence.pad_sequences(tok.texts_to_sequences(texts), maxlen=LEN, padding="post", truncating="post")
    tok_model = tf_keras.Sequential([tf_keras.Input((LEN,)), tf_keras.layers.Embedding(15000, 64, mask_zero=True), tf_keras.layers.LSTM(64), tf_keras.layers.Dense(2, activation="softmax")])
    tok_model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    with Timer() as t:
        tok_model.fit(x, labels, batch_size=64, epochs=epochs, verbose=0)
    tok_model.save(work / "tok.h5")
    built["tf_keras Tokenizer JSON, post-padded, masked LSTM(64)"] = (
        tok_model,
        ["--model", str(work / "tok.h5"), "--tokenizer", str(work / "tokenizer.json"), "--padding", "post", "--truncating", "post"],
        text.TextEncoder.from_keras(tok, max_len=LEN, padding="post", truncating="post"),
        t.seconds,
    )

    for i, (name, (model, args, encoder, train_s)) in enumerate(built.items()):
        base = export.to_tflite(model, work / f"base{i}" / "model.tflite", mode="float32", encoder=encoder)
        x_dev = base.encoder(dev.texts)
        base_acc = _tflite_accuracy(base.path, x_dev, dev.labels)
        base_lat = export.evaluate(base.path, (x_dev, dev.labels), latency_runs=300, verbose=False)["latency_ms_median"]
        out = work / f"out{i}"
        with Timer() as t:
            code = cli.main(["compress", str(work / "train.tsv"), "--dev", str(DATA / "sst2" / "dev.tsv"), "--out", str(out), "--epochs", "1", *args])
        assert code == 0, name
        records = {r["step"]: r for r in json.loads((out / "report.json").read_text())["records"]}
        loaded, final = records["your model (as loaded)"], records["export model dynamic"]
        rows.append(
            [
                name,
                f"{train_s:.0f}",
                f"{loaded['value']:.3f}",
                f"{base_acc:.3f}",
                f"{base.gzip_bytes / 1024:,.0f}",
                f"{base_lat:.3f}",
                f"{final['value']:.3f}",
                f"{final['gzip_bytes'] / 1024:,.0f}",
                f"{base.gzip_bytes / final['gzip_bytes']:.1f}×",
                f"{final['latency_ms']:.3f}",
                f"{_agreement(final['notes']):.1%}",
                f"{t.seconds:.0f}",
            ]
        )
        print(rows[-1], flush=True)
    return rows


def seed_model(quick):
    import keras as keras3

    import tfcompress
    from tfcompress import export, quantization, text
    from tfcompress.quantization import quantize_model

    corpus = text.builtin_corpus()[: 60_000 if quick else 300_000]
    chars = sorted(set(corpus))
    index = {c: i for i, c in enumerate(chars)}
    maxlen, step = 40, 3
    starts = range(0, len(corpus) - maxlen, step)
    x = np.zeros((len(starts), maxlen, len(chars)), dtype="float32")
    y = np.zeros((len(starts), len(chars)), dtype="float32")
    for n, i in enumerate(starts):
        for t, c in enumerate(corpus[i : i + maxlen]):
            x[n, t, index[c]] = 1
        y[n, index[corpus[i + maxlen]]] = 1
    cut = int(len(x) * 0.95)  # the last 5% of the text is held out
    held_x, held_y = x[cut:], y[cut:].argmax(1)
    L = keras3.layers
    units = 64 if quick else 128
    model = keras3.Sequential(
        [keras3.Input((maxlen, len(chars)))]
        + [l for _ in range(2) for l in (L.LSTM(units, return_sequences=True), L.Dropout(0.2))]
        + [L.LSTM(units), L.Dropout(0.2), L.Dense(len(chars)), L.Activation("softmax")]
    )
    model.compile(loss="categorical_crossentropy", optimizer=keras3.optimizers.RMSprop(learning_rate=0.01))
    with Timer() as t_train:
        model.fit(x[:cut], y[:cut], batch_size=128, epochs=1 if quick else 3, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(f"{tmp}/my_model.h5")
        base = export.to_tflite(model, f"{tmp}/base.tflite", mode="float32")
        base_probs = export.TFLiteModel(base.path).predict(held_x)
        with Timer() as t_qat:
            q_aware = quantize_model(tfcompress.load_model(f"{tmp}/my_model.h5"))
            q_aware.compile(loss="categorical_crossentropy", optimizer=tfcompress.keras.optimizers.Adam(learning_rate=1e-5))
            q_aware.fit(x[:cut], y[:cut], batch_size=128, epochs=1, verbose=0)
        small = export.to_tflite(q_aware, f"{tmp}/small.tflite", mode="dynamic")
        probs = export.TFLiteModel(small.path).predict(held_x)
    reference = quantization.strip(q_aware).predict(held_x, verbose=0)

    def bits(p):
        return float(-np.log2(np.clip(p[np.arange(len(p)), held_y], 1e-12, 1)).mean())

    return [
        [f"Keras 3 3×LSTM({units}) one-hot, as trained ({t_train.seconds:.0f} s)", "float32", f"{(base_probs.argmax(1) == held_y).mean():.3f}", f"{bits(base_probs):.3f}", f"{base.gzip_bytes / 1024:,.0f}", "1.0×", "—"],
        [f"load .h5, quantize_model, Adam(1e-5), 1 epoch ({t_qat.seconds:.0f} s)", "dynamic", f"{(probs.argmax(1) == held_y).mean():.3f}", f"{bits(probs):.3f}", f"{small.gzip_bytes / 1024:,.0f}", f"{base.gzip_bytes / small.gzip_bytes:.1f}×", f"{(probs.argmax(1) == reference.argmax(1)).mean():.1%}"],
    ]


def bit_widths(train, dev, work, quick):
    from tfcompress import export, keras, quantization, text

    encoder, x_train = text.TextEncoder.fit_transform(train.texts, max_len=64)
    x_dev = encoder(dev.texts)
    model, _ = train_classifier(x_train, train.labels, len(encoder.vocabulary), epochs=1 if quick else 2)
    model.save(work / "dense.keras")
    dense = export.to_tflite(model, work / "dense.tflite", mode="float32")
    rows = [["dense, float32 file", f"{_tflite_accuracy(dense.path, x_dev, dev.labels):.3f}", "—", f"{dense.bytes / 1024:,.0f}", f"{dense.gzip_bytes / 1024:,.0f}", "1.0×"]]
    for bits in (8, 6, 4, 3, 2):
        start = keras.models.load_model(work / "dense.keras")
        qat = quantization.quantize(start, bits=bits)
        qat.compile(keras.optimizers.Adam(5e-4), "sparse_categorical_crossentropy", ["accuracy"])
        qat.fit(x_train, train.labels, batch_size=128, epochs=1, verbose=0)
        result = export.to_tflite(qat, work / f"b{bits}.tflite", mode="dynamic")
        values = len(np.unique(quantization.strip(qat).get_layer("embedding").get_weights()[0]))
        rows.append(
            [f"QAT {bits}-bit weights, dynamic file", f"{_tflite_accuracy(result.path, x_dev, dev.labels):.3f}", str(values), f"{result.bytes / 1024:,.0f}", f"{result.gzip_bytes / 1024:,.0f}", f"{dense.gzip_bytes / result.gzip_bytes:.1f}×"]
        )
        print(rows[-1], flush=True)
    return rows


def main():
    args = parser(__doc__).parse_args()
    import pathlib

    train, dev = sst2(limit=6000 if args.quick else None)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-your-models-"))
    a = shapes(train, dev, work, args.quick)
    b = seed_model(args.quick)
    c = bit_widths(train, dev, work, args.quick)
    body = (
        "A. Your model vs the same model compressed by `tfcompress compress --model` (defaults: prune 80%, "
        "8-bit QAT, dynamic export, 1 epoch per step). SST-2 dev accuracy; baseline = the model as trained, "
        "exported whole to float32 (string-input models: vectorizer split off). Agreement: the compressed file "
        "vs the Keras model it was exported from.\n\n"
        + table(
            ["model", "train s", "Keras dev acc", "float32 file acc", "gzip KiB", "ms", "compressed acc", "gzip KiB", "smaller", "ms", "agreement", "compress s"],
            a,
        )
        + "\n\nB. The seed's character model on Python's documentation; last 5% of the text held out.\n\n"
        + table(["model", "file", "held-out char accuracy", "bits/char", "gzip KiB", "smaller", "agreement"], b)
        + "\n\nC. Weight bit widths on the default SST-2 classifier (trained once, each QAT run from the same start, "
        "one seed). The file stores every width as int8; gzip sees the fewer distinct values.\n\n"
        + table(["model", "dev acc", "embedding values", "KiB", "gzip KiB", "smaller (gzip)"], c)
    )
    emit(args, "Your model: bring your own model and tokenizer", body)


if __name__ == "__main__":
    main()
