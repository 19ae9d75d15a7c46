"""SST-2: distillation on a transfer set (issue 18): scratch vs distilled vs
distilled + transfer set, same teacher, same student, same epochs.

One process. A selection split of whole training sentences (10%, with the
phrases inside them: `text.containment_groups`) is carved from the training
data; every choice (each model's best epoch) is made on it, and SST-2 dev is
scored once per model, after training. Rows, each for every seed (the seed
sets the student's initial weights and the batch order):

- scratch: the student trained on the labelled phrases;
- distilled: `Distiller(teacher, student)` on the labelled phrases;
- distilled + transfer: the same, plus `transfer_set(train texts, size)`
  labelled by the teacher (`Distiller.fit(unlabeled=...)`; Tang et al. 2019
  rates: mask 0.1, part-of-speech swap 0.1, synonym 0.1, n-gram 0.25).

With `--ensemble K`, K - 1 more teachers (the same architecture, seeds 1..K-1,
best epoch on the selection split) are trained, their soft targets combined at
the distillation temperature as `Distiller(teacher=[...])` combines them, and a
row distils on the same transfer set from the ensemble (issue 18.5).

The "same updates" row distils on the labelled phrases alone for as many
updates as the transfer row makes (epochs x (size + 1) passes), so the
transfer set's gain can be told apart from the extra updates. `--rows` picks
the rows to run (scratch, distilled, updates, transfer, ensemble).

An epoch is one pass over the row's data, so a transfer-set epoch is longer
and takes (size + 1) times the updates: each row's wall time is reported, and
the transfer set's build time. (The issue fixes epochs, not updates; a
`--quick` run, one epoch of 3,600 phrases, showed how much the extra updates
alone can weigh when the other rows are undertrained.)
Targets: distilled + transfer >= +2.0 points over scratch on the mean and
ahead on every seed, and within 0.5 point of the teacher.
"""

import time

import numpy as np

from common import emit, mean_spread, parser, row_names, sst2, table
from tfcompress.distillation.teacher import LABELED_KEY, TEACHER_KEY

TEACHER = dict(embedding_dim=128, units=128, bidirectional=True, dropout=0.4)
STUDENT = dict(embedding_dim=24, units=16, bidirectional=True, dropout=0.3, embedding_vocab_size=8000)


def _best_epoch(model, xs, ys):
    """A callback keeping `model`'s weights of the epoch with the best
    accuracy on the selection split, restored when training ends."""
    from tfcompress import keras

    class Best(keras.callbacks.Callback):
        best, weights, epoch = -1.0, None, 0

        def on_epoch_end(self, epoch, logs=None):
            acc = float((np.argmax(model.predict(xs, batch_size=512, verbose=0), -1) == ys).mean())
            if acc > self.best:
                self.best, self.weights, self.epoch = acc, model.get_weights(), epoch + 1

        def on_train_end(self, logs=None):
            model.set_weights(self.weights)

    return Best()


ROWS = {
    "scratch": "scratch",
    "distilled": "distilled",
    "updates": "distilled, same updates as transfer",
    "transfer": "distilled + transfer",
    "ensemble": "distilled + transfer, {k} teachers",
}


def main():
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--size", default="10x", help="transfer set size (a multiple of the training texts, or a number)")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--ensemble", type=int, default=1, help="with K > 1, a row distilled + transfer from K teachers (seeds 0..K-1) combined")
    p.add_argument("--rows", type=row_names(ROWS), default="scratch,distilled,transfer,ensemble", help=f"comma-separated, of: {', '.join(ROWS)}")
    args = p.parse_args()
    chosen = args.rows
    if args.ensemble < 2:
        chosen = [r for r in chosen if r != "ensemble"]
    from tfcompress import distillation, keras, models, text
    from tfcompress.distillation.losses import ensemble_logits

    train, dev = sst2(limit=4000 if args.quick else None)
    seeds, epochs = (1, 1) if args.quick else (args.seeds, args.epochs)
    groups = text.containment_groups(text.word_sequences(train.texts), seed=0)
    kept, held = text.grouped_split(groups, 0.1, seed=[0, 17])
    texts = [train.texts[i] for i in kept]
    encoder, x = text.TextEncoder.fit_transform(texts, max_len=64)
    y = train.labels[kept]
    xs, ys = encoder([train.texts[i] for i in held]), train.labels[held]
    x_dev, y_dev = encoder(dev.texts), dev.labels
    vocab = len(encoder.vocabulary)

    def dev_accuracy(model):
        return float((np.argmax(model.predict(x_dev, batch_size=512, verbose=0), -1) == y_dev).mean())

    def train_teacher(seed):
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        t = models.lstm_classifier(vocab, max_len=64, **TEACHER)
        started, best = time.perf_counter(), _best_epoch(t, xs, ys)
        t.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[best])
        spent, acc = time.perf_counter() - started, dev_accuracy(t)
        print(f"teacher {seed}: {t.count_params():,} parameters, dev {acc:.4f}, best epoch {best.epoch} ({spent:.0f} s)", flush=True)
        return t, acc, spent

    teacher, teacher_acc, teacher_seconds = train_teacher(0)

    started = time.perf_counter()
    transfer = distillation.transfer_set(texts, args.size, seed=0, cache=False, log=print)
    transfer_seconds = time.perf_counter() - started
    u = encoder(list(transfer))
    print(f"transfer set: {len(transfer):,} texts in {transfer_seconds:.0f} s (encoded in {time.perf_counter() - started - transfer_seconds:.0f} s)", flush=True)

    # The teacher's outputs, once for every seed (Distiller.fit keeps outputs already attached).
    started = time.perf_counter()
    x_all = np.concatenate([x, u])
    _, y_all = distillation.attach_teacher_outputs((x_all, np.concatenate([y, np.zeros(len(u), y.dtype)])), teacher)
    y_all[LABELED_KEY] = np.concatenate([np.ones(len(x), np.float32), np.zeros(len(u), np.float32)])
    y_labelled = {k: v[: len(x)] for k, v in y_all.items() if k != LABELED_KEY}
    teacher_pass_seconds = time.perf_counter() - started
    print(f"teacher outputs on {len(x_all):,} texts in {teacher_pass_seconds:.0f} s", flush=True)

    ensemble_acc = None
    if "ensemble" in chosen:  # more teachers, other seeds; soft targets combined as Distiller(teacher=[...]) does
        def logits_of(t, data):
            return distillation.attach_teacher_outputs((data, np.zeros(len(data), y.dtype)), t)[1][TEACHER_KEY]

        started = time.perf_counter()
        on_all, on_dev = [y_all[TEACHER_KEY]], [logits_of(teacher, x_dev)]
        for k in range(1, args.ensemble):
            t, _, _ = train_teacher(k)
            on_all.append(logits_of(t, x_all))
            on_dev.append(logits_of(t, x_dev))
        y_ensemble = {**y_all, TEACHER_KEY: ensemble_logits(on_all, "kl", args.temperature).numpy()}
        ensemble_acc = float((np.argmax(ensemble_logits(on_dev, "kl", args.temperature).numpy(), -1) == y_dev).mean())
        ensemble_seconds = time.perf_counter() - started
        print(f"ensemble of {args.ensemble} teachers: dev {ensemble_acc:.4f} ({ensemble_seconds:.0f} s for the other teachers and their outputs)", flush=True)

    student_args = {**STUDENT, "embedding_vocab_size": min(STUDENT["embedding_vocab_size"], vocab)}  # --quick: a small vocabulary
    student_params = models.lstm_classifier(vocab, max_len=64, compile=False, **student_args).count_params()
    ratio = student_params / teacher.count_params()
    passes = round(len(x_all) / len(x))
    names = {r: ROWS[r].format(k=args.ensemble) for r in chosen}
    results, seconds = {r: [] for r in chosen}, {r: [] for r in chosen}

    def report(done):  # written after every seed, so a run cut short still leaves its figures
        partial = "" if done == seeds else f" **Partial: {done} of {seeds} seeds done.**"
        rows = [["teacher (BiLSTM 128, emb 128)", f"{teacher.count_params():,}", "1", f"{teacher_acc:.4f}", "—", f"{teacher_seconds / 60:.1f}"]]
        if ensemble_acc is not None:
            rows.append([f"{args.ensemble} such teachers, soft targets combined at T={args.temperature}", f"{args.ensemble} × {teacher.count_params():,}", "1", f"{ensemble_acc:.4f}", "—", f"{ensemble_seconds / 60:.1f} (the others, and their outputs)"])
        scratch = results.get("scratch")
        for row, values in results.items():
            gain = f"{(np.mean(values) - np.mean(scratch)) * 100:+.2f}" if scratch and row != "scratch" else "—"
            rows.append([f"student {names[row]}", f"{student_params:,} ({ratio:.1%})", str(len(values)), mean_spread(values), gain, f"{np.mean(seconds[row]) / 60:.1f}"])
        checks = []
        best = results.get("transfer")
        if best and scratch:
            checks = [
                ["+2.0 points over scratch on the mean", "yes" if np.mean(best) - np.mean(scratch) >= 0.02 else "**no**", f"{(np.mean(best) - np.mean(scratch)) * 100:+.2f}"],
                ["ahead of scratch on every seed", "yes" if all(b > s for b, s in zip(best, scratch)) else "**no**",
                 ", ".join(f"{s:.3f} → {b:.3f}" for s, b in zip(scratch, best))],
                ["within 0.5 point of the teacher", "yes" if teacher_acc - np.mean(best) <= 0.005 else "**no**", f"{(np.mean(best) - teacher_acc) * 100:+.2f}"],
            ]
        paired = [(a, b) for a, b in (("transfer", "updates"), ("transfer", "ensemble")) if a in results and b in results]
        pairs = [
            [f"{names[b]} − {names[a]}", ", ".join(f"{(vb - va) * 100:+.2f}" for va, vb in zip(results[a], results[b])),
             f"{(np.mean(results[b]) - np.mean(results[a])) * 100:+.2f}"]
            for a, b in paired
        ]
        body = (
            f"{len(x):,} training phrases ({len(held):,} whole sentences and their phrases set aside as the selection split "
            f"on which each model's best epoch is kept; {epochs} epochs, {epochs * passes} for the same-updates row); SST-2 dev, "
            f"scored once per model. Student ≤ 10% of the teacher's parameters: {ratio:.1%}. Distillation: α={args.alpha}, "
            f"T={args.temperature}. Transfer set: {len(transfer):,} texts ({args.size}) built in {transfer_seconds:.0f} s; the "
            f"teacher's outputs on the labelled and the transfer texts, computed once and shared by every seed, in "
            f"{teacher_pass_seconds:.0f} s (not in the rows' wall time).\n\n"
            + table(["model", "parameters", "seeds", "dev accuracy", "Δ vs scratch (points)", "wall min per model"], rows)
            + ("\n\n" + table(["target", "met", "measured"], checks) if checks else "")
            + ("\n\n" + table(["paired by seed (points)", "per seed", "mean"], pairs) if pairs else "")
            + "\n\nSST-2 has one labelled dev set; no choice here looks at it." + partial
        )
        title = "Distillation on a transfer set" + (": more teachers, and the same updates without it" if "scratch" not in chosen else "")
        emit(args, f"{title} (issue 18)", body)

    for seed in range(seeds):
        for row in chosen:
            keras.backend.clear_session()
            keras.utils.set_random_seed(seed)
            student = models.lstm_classifier(vocab, max_len=64, compile=row == "scratch", **student_args)
            started, best = time.perf_counter(), _best_epoch(student, xs, ys)
            if row == "scratch":
                student.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[best])
            else:  # the teacher's outputs were computed once, above: as fit(x, y, unlabeled=u) does per call
                d = distillation.Distiller(teacher, student, alpha=args.alpha, temperature=args.temperature)
                d.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"])
                xr, yr = (x_all, y_all) if row == "transfer" else (x_all, y_ensemble) if row == "ensemble" else (x, y_labelled)
                d.fit(xr, yr, batch_size=128, epochs=epochs * passes if row == "updates" else epochs, verbose=0, callbacks=[best])
            spent = time.perf_counter() - started
            results[row].append(dev_accuracy(student))
            seconds[row].append(spent)
            print(f"seed {seed} {names[row]}: dev {results[row][-1]:.4f} (best epoch {best.epoch}, {spent:.0f} s)", flush=True)

        report(seed + 1)


if __name__ == "__main__":
    main()
