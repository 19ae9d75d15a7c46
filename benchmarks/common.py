"""Helpers shared by the benchmark scripts.

Every benchmark runs its baseline and its candidate in the same process, prints
the figures and their ratios, and (with `--markdown FILE`) writes a Markdown
section that `benchmarks/run_all.py` assembles into BENCHMARKS.md.
"""

import argparse
import os
import pathlib
import platform
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if (SHARED / "nltk_data").is_dir():
    os.environ.setdefault("NLTK_DATA", str(SHARED / "nltk_data"))


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--markdown", help="also write the results as a Markdown section to this file")
    p.add_argument("--quick", action="store_true", help="smaller run, for checking the script works")
    return p


def row_names(choices):
    """An argparse `type` for `--rows`: comma-separated names, at least one,
    each one of `choices`; gives the list."""

    def parse(text):
        chosen = [r.strip() for r in text.split(",") if r.strip()]
        unknown = [r for r in chosen if r not in choices]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"unknown {unknown or 'empty list'}; choose from {', '.join(choices)}")
        return chosen

    return parse


def require_shared():
    if not (DATA / "sst2" / "train.tsv").exists():
        sys.exit(f"This benchmark needs ../shared/data beside the repository ({DATA} not found).")


def labelled(train_path, held_path):
    """(train, held-out) LabeledTexts of two files, the held-out labels read
    with the training file's label names."""
    from tfcompress import text

    train = text.load_texts(train_path)
    return train, text.load_texts(held_path, label_names=train.label_names)


def sst2(limit=None):
    """(train, dev) LabeledTexts from ../shared/data/sst2."""
    from tfcompress import text

    require_shared()
    train, dev = labelled(DATA / "sst2" / "train.tsv", DATA / "sst2" / "dev.tsv")
    if limit:
        train = text.LabeledTexts(train.texts[:limit], train.labels[:limit], train.label_names)
    return train, dev


def sst2_ids(limit=None, max_len=64):
    """SST-2 encoded as every SST-2 benchmark encodes it (a `TextEncoder`
    fitted on train): `(train, dev, encoder, x_train, x_dev)`."""
    from tfcompress import text

    train, dev = sst2(limit)
    encoder, x_train = text.TextEncoder.fit_transform(train.texts, max_len=max_len)
    return train, dev, encoder, x_train, encoder(dev.texts)


def char_data(chars, window=40):
    """The demo's character data: the first `chars` characters of the built-in
    corpus, 95% as training windows (stride 3), the rest held out (stride 7):
    `(vocab, (x, y), (x_held, y_held))`."""
    from tfcompress import text

    corpus = text.builtin_corpus()[:chars]
    vocab = text.Vocabulary.build([corpus])
    ids = vocab.char_ids(corpus)
    cut = int(len(ids) * 0.95)
    return vocab, text.char_windows(ids[:cut], window, 3), text.char_windows(ids[cut:], window, 7), len(corpus)


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def mean_spread(values):
    """'0.842 ± 0.004' (mean ± standard deviation; ± half-range for n=2)."""
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    spread = statistics.stdev(values) if len(values) > 2 else (max(values) - min(values)) / 2
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def command_line():
    args = " ".join(sys.argv[1:])
    args = " ".join(a for a in args.split() if not a.startswith("--markdown") and not a.endswith(".md"))
    return f"python benchmarks/{pathlib.Path(sys.argv[0]).name} {args}".strip()


_STARTED = time.perf_counter()


def emit(args, title, body):
    """Prints a section and writes it to --markdown if given (atomically),
    stamped with the date, duration, machine and versions of this run."""
    import datetime

    m = machine()
    stamp = (
        f"<sub>Run {datetime.date.today().isoformat()}, {(time.perf_counter() - _STARTED) / 60:.0f} min; "
        f"{m['cpu']}, {m['cores']} cores; Python {m['python']}; {m['versions']}.</sub>"
    )
    section = f"## {title}\n\nCommand: `{command_line()}`\n\n{body.strip()}\n\n{stamp}\n"
    print("\n" + section)
    if args.markdown:
        path = pathlib.Path(args.markdown)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(section, encoding="utf-8")
        os.replace(tmp, path)


def machine():
    import importlib.metadata as md

    versions = []
    for name in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "nltk", "ai-edge-litert", "numpy"):
        try:
            versions.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": ", ".join(versions),
    }


def train_classifier(x_train, y_train, vocab_size, seed=0, epochs=2, batch_size=128, max_len=64, verbose=0, **model_kwargs):
    """The reference SST-2 recipe: default `lstm_classifier`, `epochs` epochs,
    5% of train held out for a best-only ModelCheckpoint (dev is never used
    for selection). Returns (model, seconds)."""
    from tfcompress import keras, models

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = models.lstm_classifier(vocab_size, max_len=max_len, **model_kwargs)
    seconds = fit_best(model, x_train, y_train, seed=seed, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return model, seconds


def fit_best(model, x_train, y_train, seed=0, epochs=2, batch_size=128, verbose=0):
    """Fits a compiled model (or Distiller) on 95% of train, keeping the weights
    of the epoch with the best accuracy on the other 5%. Returns seconds."""
    import tempfile

    import numpy as np

    from tfcompress import keras

    order = np.random.default_rng(seed).permutation(len(x_train))
    cut = int(len(order) * 0.95)
    fit_idx, val_idx = order[:cut], order[cut:]
    with tempfile.TemporaryDirectory() as tmp:
        best = f"{tmp}/best.weights.h5"
        with Timer() as t:
            model.fit(
                x_train[fit_idx],
                y_train[fit_idx],
                batch_size=batch_size,
                epochs=epochs,
                validation_data=(x_train[val_idx], y_train[val_idx]),
                callbacks=[
                    keras.callbacks.ModelCheckpoint(
                        best, monitor="val_accuracy", save_best_only=True, save_weights_only=True
                    )
                ],
                verbose=verbose,
            )
        model.load_weights(best)
    return t.seconds


def accuracy(model, x, y):
    import numpy as np

    return float((np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y).mean())


def interleaved_latency(callables, inputs, runs=300, rounds=5, warmup=30):
    """Median and p90 (ms) per callable, measured in interleaved rounds.

    Each round times `runs // rounds` single-example calls of every callable
    in turn, so a slow stretch of the machine hits all of them alike. Median =
    median of the round medians; p90 over all timed calls.

    Args:
        callables: {name: f(one_example)}.
        inputs: examples, indexed along axis 0 (each call gets a batch of 1).
    """
    import numpy as np

    per_round = max(1, runs // rounds)
    times = {name: [] for name in callables}
    medians = {name: [] for name in callables}
    for name, fn in callables.items():
        for i in range(warmup):
            fn(inputs[i % len(inputs)][None])
    for r in range(rounds):
        for name, fn in callables.items():
            ts = []
            for i in range(per_round):
                sample = inputs[(r * per_round + i) % len(inputs)][None]
                t0 = time.perf_counter()
                fn(sample)
                ts.append(time.perf_counter() - t0)
            medians[name].append(float(np.median(ts)))
            times[name] += ts
    return {
        name: (float(np.median(medians[name]) * 1e3), float(np.percentile(times[name], 90) * 1e3))
        for name in callables
    }
