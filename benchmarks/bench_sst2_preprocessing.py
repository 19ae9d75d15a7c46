"""SST-2: which preprocessing defaults help an LSTM classifier, and what it reaches.

Each configuration fits its vocabulary on SST-2 train, trains the default
`lstm_classifier` from scratch with the reference recipe (two epochs, best-only
checkpoint on 5% of train) and reports SST-2 dev accuracy over several seeds,
all in one process. The first row is the tfcompress default; the stopword rows
are the question of issue 3: NLTK's English list deletes "not", "no", "nor".
"""

from common import accuracy, emit, mean_spread, parser, sst2, table, train_classifier


def main():
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    from tfcompress import text

    train, dev = sst2(limit=8000 if args.quick else None)
    epochs = 1 if args.quick else 2
    configs = [
        ("default: regexp tokenizer, no stopword removal", {}),
        ("NLTK English stopwords removed (negations too)", {"stopwords": "english", "keep_words": None}),
        ("NLTK English stopwords removed, negations kept", {"stopwords": "english"}),
        ("word_tokenize instead of regexp", {"tokenizer": "word_tokenize"}),
        ("Porter stemming", {"stemmer": "porter"}),
        ("post-padding, no mask (DESIGN fact 8)", {"_padding": "post"}),
    ]
    rows = []
    for name, kwargs in configs:
        padding = kwargs.pop("_padding", "pre")
        pre = text.TextPreprocessor(**kwargs)
        encoder, _ = text.TextEncoder.fit_transform(train.texts, pre, max_len=64)
        encoder.padding = padding
        x_train, x_dev = encoder(train.texts), encoder(dev.texts)
        seeds = range(args.seeds if name.startswith("default") or not args.quick else 1)
        accs, times = [], []
        for seed in seeds:
            model, seconds = train_classifier(x_train, train.labels, len(encoder.vocabulary), seed=seed, epochs=epochs)
            accs.append(accuracy(model, x_dev, dev.labels))
            times.append(seconds)
            print(f"{name} seed {seed}: dev accuracy {accs[-1]:.4f} ({seconds:.0f} s)", flush=True)
        rows.append([name, len(encoder.vocabulary), len(accs), mean_spread(accs), f"{sum(times) / len(times):.0f}"])
        if name.startswith("default"):
            base = sum(accs) / len(accs)
        rows[-1].append(f"{(sum(accs) / len(accs) - base) * 100:+.1f}")

    body = f"""
SST-2 dev accuracy (872 sentences), default `lstm_classifier` (Embedding 64 → LSTM 64 → softmax),
trained from scratch on {len(train):,} SST-2 train phrases, {epochs} epochs, batch 128; mean ± standard
deviation over seeds. Training time is per run on this machine (2 CPU cores).

{table(["preprocessing", "vocabulary", "seeds", "dev accuracy", "train s", "Δ points vs default"], rows)}
"""
    emit(args, "SST-2 preprocessing defaults and classifier accuracy (issue 3)", body)


if __name__ == "__main__":
    main()
