"""SST-2 classifier: how small the .tflite gets with pruning, clustering, a
factorised embedding and cluster-preserving QAT, side by side in one run.

For each seed, in one process: train the default `lstm_classifier`
(reference recipe, 2 epochs, best epoch on 5% of train), then from that model

- prune to 80% (2 epochs, polynomial schedule), strip;
- cluster the pruned model to 16 and to 8 values per weight (1 epoch each,
  sparsity preserved), strip;
- quantization-aware train the 8-cluster model with its clusters and zeros
  kept (PCQAT, 1 epoch);
- factorise the dense model's embedding to rank 16 (SVD start), then prune it
  to 80% (2 epochs), and cluster + PCQAT it as above: the combination;
- (`--rows shrink`) remove whole units first (`pruning.shrink`, keeping 50%
  and 25% of the embedding's and the LSTM's units, l2 scores, fine-tuned 2
  epochs at 1e-3), then prune 80%, cluster to 8 and PCQAT as above;
- (`--rows per_channel`) cluster the 80%-pruned model per channel (each
  output channel its own 8 or 4 values) and PCQAT it, beside the same
  model clustered to 8 values per weight and PCQAT.

`--rows` picks the groups (today, factorised, shrink, per_channel; default
today and factorised); the dense rows, the 1x, are always run.

Each model is exported (stateless form, the default) and the file itself is
scored on SST-2 dev: accuracy, agreement with its Keras model, gzip -9 size,
single-example latency (seed 0 only, interleaved rounds). "smaller" is the
dense float32 file's gzip size over the row's.

Every setting (80%, 16/8 clusters, rank 16, epochs, learning rates) was fixed
before the run; nothing is selected on dev, which is scored once per file.
SST-2 has one public dev set and no labelled test set, so these dev figures
are the final ones.
"""

import math
import os
import statistics
import tempfile

import numpy as np

from common import emit, interleaved_latency, mean_spread, parser, row_names, sst2_ids, table, train_classifier

RANK = 16
ROWS = ("today", "factorised", "shrink", "per_channel")
KEEPS = (0.5, 0.25)
LR_PRUNE = 1e-3
LR_FINE = 1e-4


def max_values(weights, per_channel):
    """The most distinct values a weight matrix of the file holds: per
    quantization channel for int8 weights (per tensor for float ones); for a
    model clustered per channel, per channel along whichever axis the
    converter made the channel axis (the axis with the fewest)."""
    from tfcompress.export.weights import fewest_per_channel

    counts = []
    for w in weights:
        if len(w["shape"]) != 2:
            continue
        if w["sparse"]:
            counts.append(w["distinct"])
        elif per_channel:
            counts.append(fewest_per_channel(w["values"]))
        else:
            counts.append(w["distinct_per_channel"])
    return max(counts)


def main():
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--keep-refused", metavar="DIR", help="save each model whose export is refused there (.h5)")
    p.add_argument("--rows", type=row_names(ROWS), default="today,factorised", help=f"comma-separated, of: {', '.join(ROWS)}")
    args = p.parse_args()
    chosen = args.rows
    from tfcompress import clustering, embeddings, export, keras, pruning, quantization

    train, dev, encoder, x_train, x_dev = sst2_ids(limit=6000 if args.quick else None)
    y_dev = dev.labels
    y_train = train.labels
    epochs = 1 if args.quick else 2
    seeds = 1 if args.quick else args.seeds
    steps = int(np.ceil(len(x_train) / 128))

    def fit(model, n_epochs, lr):
        model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
        model.fit(x_train, y_train, batch_size=128, epochs=n_epochs, verbose=0)
        return model

    def prune(model):
        return pruning.strip(fit(pruning.prune(model, target_sparsity=0.8, epochs=epochs, steps_per_epoch=steps), epochs, LR_PRUNE))

    def cluster(model, k, per_channel=False):
        return clustering.strip(fit(clustering.cluster(model, clusters=k, per_channel=per_channel), 1, LR_FINE))

    def pcqat(model):
        return fit(quantization.quantize(model), 1, LR_FINE)

    rows = {}  # name -> list of per-seed figures
    order = []
    latency_inputs, callables = x_dev, {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            dense, _ = train_classifier(x_train, y_train, len(encoder.vocabulary), seed=seed, epochs=epochs)
            plan = [("dense", dense, "float32"), ("dense", dense, "dynamic")]
            if "today" in chosen:
                pruned = prune(dense)
                c16, c8 = cluster(pruned, 16), cluster(pruned, 8)
                q8 = pcqat(c8)
                plan += [
                    ("80% pruned (today)", pruned, "dynamic"),
                    ("80% pruned + 16 clusters", c16, "dynamic"),
                    ("80% pruned + 8 clusters", c8, "dynamic"),
                    ("80% pruned + 8 clusters + PCQAT", q8, "dynamic"),
                    ("80% pruned + 8 clusters + PCQAT", q8, "int8"),
                ]
            if "factorised" in chosen:
                factorised = embeddings.factorize(dense, rank=RANK)
                f_error = factorised.tfcompress_factorize_report["relative_error"]
                f_pruned = prune(factorised)
                f_q8 = pcqat(cluster(f_pruned, 8))
                plan += [
                    (f"rank-{RANK} embedding + 80% pruned", f_pruned, "dynamic"),
                    (f"rank-{RANK} embedding + 80% pruned + 8 clusters + PCQAT", f_q8, "dynamic"),
                    (f"rank-{RANK} embedding + 80% pruned + 8 clusters + PCQAT", f_q8, "int8"),
                ]
            if "shrink" in chosen:
                for keep in KEEPS:
                    keras.utils.set_random_seed(seed)
                    small = fit(pruning.shrink(dense, units={"embedding": keep, "lstm_0": keep}), epochs, LR_PRUNE)
                    s_pruned = prune(small)
                    s_q8 = pcqat(cluster(s_pruned, 8))
                    name = f"shrink to {keep:.0%} of the units"
                    plan += [
                        (name, small, "dynamic"),
                        (f"{name} + 80% pruned", s_pruned, "dynamic"),
                        (f"{name} + 80% pruned + 8 clusters + PCQAT", s_q8, "dynamic"),
                        (f"{name} + 80% pruned + 8 clusters + PCQAT", s_q8, "int8"),
                    ]
            if "per_channel" in chosen:
                if "today" not in chosen:  # its pruned model and per-weight row are the comparison
                    pruned = prune(dense)
                    plan.append(("80% pruned + 8 clusters + PCQAT", pcqat(cluster(pruned, 8)), "dynamic"))
                for k, modes in ((8, ("dynamic", "int8")), (4, ("dynamic",))):
                    pc = pcqat(cluster(pruned, k, per_channel=True))
                    plan += [(f"80% pruned + {k} clusters per channel + PCQAT", pc, mode) for mode in modes]
            for name, model, mode in plan:
                key = (name, mode)
                if key not in rows:
                    rows[key] = []
                    order.append(key)
                path = os.path.join(tmp, f"s{seed}_{len(rows)}_{mode}.tflite")
                try:
                    result = export.to_tflite(model, path, mode=mode, representative_data=x_train, verify=False, isolate=False)
                except export.TFLiteConversionError as e:  # a row the exporter refuses is reported, not dropped
                    rows[key].append({"refused": str(e)})
                    if args.keep_refused:
                        model.save(os.path.join(args.keep_refused, f"refused_s{seed}_{len(rows)}_{mode}.h5"))
                    print(seed, name, mode, "REFUSED", e, flush=True)
                    continue
                runtime = export.TFLiteModel(path, num_threads=1)
                probs = runtime.predict(x_dev)
                # An int8 file computes the QAT model (fake-quantized activations); the others its stripped copy.
                keras_model = model if mode == "int8" else quantization.strip(model)
                reference = keras_model.predict(x_dev, batch_size=256, verbose=0)
                figures = {
                    "accuracy": float((probs.argmax(-1) == y_dev).mean()),
                    "keras_accuracy": float((reference.argmax(-1) == y_dev).mean()),
                    "agreement": float((probs.argmax(-1) == reference.argmax(-1)).mean()),
                    "gzip": result.gzip_bytes,
                    "bytes": result.bytes,
                    "max_distinct": max_values(export.weights.file_weights(path), "per channel" in name),
                }
                if name.startswith("rank"):
                    figures["svd_error"] = f_error
                rows[key].append(figures)
                if seed == 0:
                    callables[key] = runtime.invoke
                print(seed, name, mode, figures, flush=True)
        latency = interleaved_latency(callables, latency_inputs)

    base_gzip = statistics.mean(f["gzip"] for f in rows["dense", "float32"])
    base_acc = [f["accuracy"] for f in rows["dense", "float32"]]
    body_rows, refused = [], []
    for key in order:
        seeds_refused = [i for i, f in enumerate(rows[key]) if "refused" in f]
        if seeds_refused:
            refused.append(f"- {key[0]}, {key[1]}: the export refused the file of seed(s) {seeds_refused}: {rows[key][seeds_refused[0]]['refused']}")
        pairs = [(f, b) for f, b in zip(rows[key], base_acc) if "refused" not in f]
        if not pairs:
            body_rows.append([key[0], key[1], "refused", "—", "—", "—", "—", "—", "—"])
            continue
        figs, base_kept = [f for f, _ in pairs], [b for _, b in pairs]
        gz = statistics.mean(f["gzip"] for f in figs)
        delta = statistics.mean(100 * (f["accuracy"] - b) for f, b in zip(figs, base_kept))
        worst = min(100 * (f["accuracy"] - b) for f, b in zip(figs, base_kept))
        med, p90 = latency.get(key, (math.nan, math.nan))
        body_rows.append(
            [
                key[0],
                key[1],
                mean_spread(f["accuracy"] for f in figs),
                f"{delta:+.2f} (worst {worst:+.2f})",
                f"{statistics.mean(f['agreement'] for f in figs):.3f}",
                f"{gz / 1024:,.0f}",
                f"{base_gzip / gz:.1f}×",
                max(f["max_distinct"] for f in figs) if max(f["max_distinct"] for f in figs) <= 256 else "—",
                f"{med:.3f} / {p90:.3f}",
            ]
        )
    errors = [f["svd_error"] for key in order for f in rows[key] if "svd_error" in f]
    body = (
        f"{seeds} seed(s); every file in the stateless form (the default). Accuracy: the `.tflite` file on SST-2 dev "
        "(mean ± sd over seeds); Δ: points against the same seed's dense float32 file; agreement: the file's class vs its "
        "own Keras model's; values: the most distinct values any weight matrix holds in the file (per quantization "
        "channel for int8 weights); latency: one example, median / p90 ms, seed 0, interleaved rounds, 1 thread. "
        + " ".join(
            ([f"Rank-{RANK} SVD start: relative reconstruction error of the trained table {statistics.mean(errors):.3f}."] if errors else [])
            + (["Shrink: `pruning.shrink` keeps that fraction of the embedding's and the LSTM's units (l2 scores), fine-tuned 2 epochs at 1e-3 before pruning."] if "shrink" in chosen else [])
        )
        + "\n\n"
        + table(
            ["model", "mode", "dev accuracy", "Δ points", "agreement", "gzip KiB", "smaller", "values", "latency ms"],
            body_rows,
        )
        + ("\n\nRefused by the exporter (no file written; those seeds are left out of the row):\n\n" + "\n".join(refused) if refused else "")
    )
    title = "Smaller: clustering, factorised embedding, PCQAT (issue 16)"
    if chosen == ["shrink"]:
        title = "Smaller: whole units removed, then pruned, clustered and PCQAT (issue 16)"
    if chosen == ["per_channel"]:
        title = "Smaller: clustering per channel (issue 16)"
    emit(args, title, body)


if __name__ == "__main__":
    main()
