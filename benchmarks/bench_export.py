"""SST-2 classifier exported to TFLite in every mode, measured against Keras.

One process: train the default `lstm_classifier` (reference recipe), prune a
copy to 80% (2 epochs), QAT a copy (1 epoch); export each in every mode;
evaluate every file on SST-2 dev (accuracy, agreement with its Keras model,
output difference, single-example latency over 300 runs with the state reset,
size raw and gzip) and time the Keras model's `tf.function` on the same single
examples. Targets (issue 5): each quantized mode within 0.5 point of Keras;
pruned + int8 gzip ≥ 10× smaller than dense float32 gzip; the recommended mode
at least as fast as float32 TFLite and ≥ 4× faster than Keras.
"""

import os
import tempfile

import numpy as np

from common import accuracy, emit, interleaved_latency, parser, sst2, table, train_classifier


def keras_fn(model):
    import tensorflow as tf

    fn = tf.function(lambda t: model(t, training=False), autograph=False)
    return lambda sample: fn(tf.constant(sample)).numpy()


def main():
    args = parser(__doc__).parse_args()
    from tfcompress import export, keras, pruning, quantization, text

    train, dev = sst2(limit=6000 if args.quick else None)
    encoder, x_train = text.TextEncoder.fit_transform(train.texts, max_len=64)
    x_dev, y_dev = encoder(dev.texts), dev.labels
    y_train = train.labels
    epochs = 1 if args.quick else 2
    dense, _ = train_classifier(x_train, y_train, len(encoder.vocabulary), seed=0, epochs=epochs)
    steps = int(np.ceil(len(x_train) / 128))

    def fine_tune(model, n_epochs):
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
        model.fit(x_train, y_train, batch_size=128, epochs=n_epochs, verbose=0)
        return model

    pruned = pruning.strip(fine_tune(pruning.prune(dense, target_sparsity=0.8, epochs=epochs, steps_per_epoch=steps), epochs))
    qat = fine_tune(quantization.quantize(dense), 1)

    variants = [("dense", dense), ("80% pruned", pruned), ("QAT", qat)]
    figures = {}
    callables = {}
    order = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in variants:
            keras_acc = accuracy(model, x_dev, y_dev)
            figures[name, "keras"] = {"accuracy": keras_acc}
            callables[name, "keras"] = keras_fn(quantization.strip(model))
            order.append((name, "keras"))
            modes = list(export.MODES) + (["int8 (mlir)"] if name == "dense" else [])
            if name == "QAT":
                modes = ["dynamic", "int8"]
            for mode in modes:
                real_mode, quantizer = (mode, "legacy") if mode != "int8 (mlir)" else ("int8", "mlir")
                path = os.path.join(tmp, f"{name.replace(' ', '_').replace('%', '')}_{mode.split()[0]}_{quantizer}.tflite")
                result = export.to_tflite(
                    model, path, mode=real_mode, representative_data=x_train, quantizer=quantizer, isolate=True
                )
                r = export.evaluate(path, (x_dev, y_dev), reference=model, latency_runs=0, verbose=False)
                figures[name, mode] = {**r, "sparse": result.sparse_encoding, "keras_accuracy": keras_acc}
                runtime = export.TFLiteModel(path, num_threads=1)
                callables[name, mode] = runtime.invoke
                order.append((name, mode))
                print(name, mode, f"accuracy {r['accuracy']:.4f} agreement {r['agreement']:.3f}", flush=True)
        print("timing...", flush=True)
        latencies = interleaved_latency(callables, x_dev, runs=300, rounds=6)
    for key, (median, p90) in latencies.items():
        figures[key]["latency"] = median
        figures[key]["p90"] = p90
    rows = []
    for name, mode in order:
        f = figures[name, mode]
        if mode == "keras":
            rows.append([name, "Keras (tf.function)", "—", "—", f"{f['accuracy']:.4f}", "—", "—", f"{f['latency']:.3f} / {f['p90']:.3f}"])
            continue
        rows.append(
            [
                name,
                mode + (" +sparse" if f["sparse"] else ""),
                f"{f['bytes'] / 1024:,.0f}",
                f"{f['gzip_bytes'] / 1024:,.0f}",
                f"{f['accuracy']:.4f} ({(f['accuracy'] - f['keras_accuracy']) * 100:+.1f})",
                f"{f['agreement']:.3f}",
                f"{f['max_abs_diff']:.1e}",
                f"{f['latency']:.3f} / {f['p90']:.3f}",
            ]
        )

    f32 = figures["dense", "float32"]
    best = figures["80% pruned", "int8"]
    dyn = figures["dense", "dynamic"]
    f32["latency_ms_median"], dyn["latency_ms_median"] = f32["latency"], dyn["latency"]
    checks = [
        (
            "quantized modes within 0.5 point of Keras (dense)",
            all(abs(figures["dense", m]["accuracy"] - figures["dense", "keras"]["accuracy"]) <= 0.005 for m in ("float16", "dynamic", "int8")),
            ", ".join(
                f"{m} {(figures['dense', m]['accuracy'] - figures['dense', 'keras']['accuracy']) * 100:+.1f}"
                for m in ("float16", "dynamic", "int8", "int8 (mlir)")
            ),
        ),
        (
            "80% pruned + int8 gzip ≥ 10× smaller than dense float32 gzip",
            f32["gzip_bytes"] / best["gzip_bytes"] >= 10,
            f"{f32['gzip_bytes'] / best['gzip_bytes']:.1f}× (dynamic: {f32['gzip_bytes'] / figures['80% pruned', 'dynamic']['gzip_bytes']:.1f}×)",
        ),
        (
            "recommended mode (dynamic) at least as fast as float32 TFLite",
            dyn["latency_ms_median"] <= f32["latency_ms_median"] * 1.02,
            f"{dyn['latency_ms_median']:.3f} vs {f32['latency_ms_median']:.3f} ms",
        ),
        (
            "recommended mode ≥ 4× faster than Keras",
            figures["dense", "keras"]["latency"] / dyn["latency"] >= 4,
            f"{figures['dense', 'keras']['latency'] / dyn['latency']:.1f}×",
        ),
    ]
    body = f"""
SST-2 dev (872 sentences), default `lstm_classifier` ({len(encoder.vocabulary):,}-token vocabulary, length 64,
batch-1 files). Latency: ms per example, median of 6 interleaved rounds of 50 single-example runs (every
file and Keras model timed in turn each round, so a slow stretch of the machine hits all alike) / p90 over
all 300 runs; interpreter state reset included ({export.runtime_name()}, 1 thread). Keras: the same
examples through `tf.function` (TensorFlow's default threads). Accuracy in brackets: points vs that model's Keras accuracy. "int8 (mlir)" is full int8
with TensorFlow's default quantizer, which tfcompress does not use (see the agreement column).

{table(["model", "mode", "KiB", "gzip KiB", "dev accuracy", "agreement", "max diff", "latency ms"], rows)}

{table(["target", "met", "measured"], [[c, "yes" if ok else "**no**", m] for c, ok, m in checks])}
"""
    emit(args, "TFLite export modes on SST-2 (issue 5)", body)


if __name__ == "__main__":
    main()
