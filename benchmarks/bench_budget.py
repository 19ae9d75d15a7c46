"""SST-2 (or, with `--data fine-foods`, Amazon fine-food reviews): the
accuracy-budget search (`--max-loss`) against the fixed recipe, the dense
model and a TF-IDF + logistic-regression classifier, in one process.

`--data fine-foods` (`fine_foods.py`: 4,000 training and 1,000 test reviews,
"great" or "other", from Debian's r-cran-modeldata) runs the same rows with
the test reviews in the dev set's place, and `text.max_len` left to the
recipe's default (the 99th percentile of the training lengths) where SST-2
pins 64.

Rows (one seed; SST-2 train, its dev set scored once, seen by no choice):

- dense: the classifier `compress` builds, trained 2 epochs; its float32
  `.tflite` is the 1x size;
- fixed recipe: `compress` as it was before 2026-12-04 (train 2, prune 80%
  2, QAT 1, dynamic);
- default: `compress` as it is (train on `epochs: auto`, at least 2 epochs,
  kept by the one-standard-error rule, on a 10% selection split, then
  refit on everything; prune 80% 2, QAT 1, dynamic);
- default-acc: as default, with the epochs chosen on selection accuracy
  (`monitor: accuracy`) in place of its loss;
- `--max-loss 0.5` and `--max-loss 1.0`: train 2 epochs, then the `auto`
  step (round 1 removes half the units if that costs at most half the
  budget; sensitivity, per-layer plans starting at the size of 80% pruned
  and 8 clusters, at most 4 fine-tuned rounds in all,
  verified on a selection split of whole training sentences, 10% of them
  (the rows `0.5-25%` and `1.0-25%`: 25%, the recipe's default with an auto
  step since 2026-12-04),
  each scored as the mean over itself and the phrases cut from it, with the
  paired standard error of each loss over the sentences; a candidate keeps
  the budget when its loss plus one standard error does; the chosen plan is
  then refit with the selection split back in training, from the dense model
  trained again on it too), dynamic export;
- `0.5-25%-auto`, `1.0-25%-auto`: as `0.5-25%` and `1.0-25%`, with the dense
  model trained on `epochs: auto` (at least 2, one_se) on the same split,
  and trained again for that count in the refit (`--max-loss` trains 2);
- `0.5-25%-verified`, `1.0-25%-verified`: as `0.5-25%` and `1.0-25%`, with
  the refit starting from the verified model and training it one more epoch
  on train + selection (`auto: {refit_from: verified}`) in place of the plan
  replayed from a dense model trained again;
- `0.5-25%-norefit`: as `0.5-25%`, handing on the verified model
  (`auto: {refit: false}`);
- `0.5-25%-teacher`: as `0.5-25%`, every fine-tune (and the refit) trained
  towards half the label and half the dense model's own output
  (`auto: {teacher_weight: 0.5}`); `1.0-25%-teacher` the same with
  `--max-loss 1.0`; `0.5-25%-teacher-uniform` the same as `0.5-25%-teacher`
  with round 1 every layer pruned 80% and clustered to 8 values
  (`start: uniform, shrink_first: null, rounds: 3`);
- `--max-loss 0.5` refit from the dense model the search started from
  (`auto: {refit_dense: false}`, the default before 2026-12-04), with the
  10% and the 25% selection split;
- `--max-loss 0.5` and `--max-loss 1.0` handing on the verified model
  (`auto: {refit: false}`, the default before 2026-12-03);
- `--max-loss 0.5` checked on the loss alone (`auto: {margin: 0}`, the
  default before 2026-12-02);
- `--max-loss 0.5` with a selection split of 25% (`data.selection_fraction`):
  a finer check of the budget, paid for with less training data;
- `--max-loss 0.5` with nothing shrunk first (`auto: {shrink_first: null}`):
  the plans compress the model as trained;
- `--max-loss 0.5` whose round 1 is every layer pruned 80% and clustered to
  8 values itself (`auto: {start: uniform, shrink_first: null, rounds: 3}`);
- `--max-loss 0.5` verified on the held-out sentences alone
  (`auto: {phrases: false}`, the default before 2026-12-02);
- TF-IDF (word 1-2-grams) + logistic regression (scikit-learn, the `bench`
  extra): C chosen on the same kind of selection split (10%), then fit on
  every phrase (before 2026-12-04 it kept the fit on the other 90%) and
  scored on dev; with `--seeds`, each seed carves its own split.

Sizes are gzip -9 of the file (the TF-IDF model: its vocabulary, idf and
coefficients, pickled). Latency: one example at a time, median.
"""

import dataclasses
import gzip
import os
import pickle
import re
import statistics
import tempfile
import time

import numpy as np

from common import DATA, emit, labelled, parser, require_shared, row_names, table

DATASETS = {
    # name: (label in tables, a sentence on its held-out set, max_len)
    "sst2": ("SST-2 dev", "SST-2 has one labelled dev set: no choice here looks at it, so these are final figures on it.", 64),
    "fine-foods": ("fine-foods test", "The fine-food reviews' 1,000 test reviews play the dev set's part: no choice here looks at them, so these are final figures on them.", None),
}

SEED = 0
ROW_FRACTIONS = [0.75, 0.5]  # the rows rows: the fractions probe_vocab_rows found to cost little once fine-tuned
ROWS = ("default", "default-acc", "0.5", "1.0", "0.5-norefit", "1.0-norefit", "0.5-25%", "1.0-25%", "0.5-25%-auto", "1.0-25%-auto", "0.5-as-given", "0.5-25%-as-given", "0.5-sentences", "0.5-unshrunk", "0.5-margin0", "0.5-uniform", "0.5-25%-verified", "1.0-25%-verified", "0.5-25%-norefit", "0.5-25%-teacher", "1.0-25%-teacher", "0.5-25%-teacher-uniform", "0.5-25%-teacher-rows", "1.0-25%-teacher-rows", "tfidf")
TITLE = "The smallest model within an accuracy budget: `--max-loss` (issue 17)"


def _paths(data):
    """(train, held-out) file paths of a `DATASETS` name."""
    if data == "fine-foods":
        import fine_foods

        got = fine_foods.fetch()
        return str(got["train"]), str(got["test"])
    return str(DATA / "sst2" / "train.tsv"), str(DATA / "sst2" / "dev.tsv")


def _recipe(name, steps, quick, selection_fraction=None, seed=SEED, data="sst2"):
    common = {"batch_size": 128, **({"max_steps": 20} if quick else {})}
    out = []
    for step in steps:
        (key, args), = step.items()
        if key in ("train", "prune", "quantize"):
            args = {**common, **args}
        if key == "auto":
            # A row without teacher_weight trains on the labels alone, as every row did before the
            # auto step's default became 0.5 (2026-12-05): it measures today what it measured then.
            args = {"teacher_weight": 0, **args, "batch_size": 128, **({"max_steps": 20} if quick else {})}
        out.append({key: args})
    return {
        "name": name,
        "seed": seed,
        "data": dict(zip(("train", "dev"), _paths(data)), **({"selection_fraction": selection_fraction} if selection_fraction else {})),
        "text": {"max_len": DATASETS[data][2]},
        "steps": out,
    }


def _tfidf(train, dev, quick, seed=SEED):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from tfcompress import text

    t0 = time.perf_counter()
    groups = text.containment_groups(text.word_sequences(train.texts), seed=seed)
    kept, held = text.grouped_split(groups, 0.1, seed=[seed, 17])
    texts = [train.texts[i] for i in kept]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = vec.fit_transform(texts)
    xs = vec.transform([train.texts[i] for i in held])
    scores = {}
    for c in (0.5, 1, 2, 4, 8, 16) if not quick else (1,):
        lr = LogisticRegression(C=c, max_iter=2000).fit(x, train.labels[kept])
        scores[c] = (lr.predict(xs) == train.labels[held]).mean()
    best = max(scores, key=scores.get)
    # C chosen, the selection split goes back into training, as the recipes' refit does
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    lr = LogisticRegression(C=best, max_iter=2000).fit(vec.fit_transform(train.texts), train.labels)
    seconds = time.perf_counter() - t0
    accuracy = float((lr.predict(vec.transform(dev.texts)) == dev.labels).mean())
    blob = pickle.dumps({"vocabulary": vec.vocabulary_, "idf": vec.idf_.astype(np.float32), "coef": lr.coef_.astype(np.float32), "intercept": lr.intercept_})
    times = []
    for t in dev.texts[:300]:
        s = time.perf_counter()
        lr.predict_proba(vec.transform([t]))
        times.append((time.perf_counter() - s) * 1000)
    return {"accuracy": accuracy, "gzip": len(gzip.compress(blob, 9)), "latency": statistics.median(times), "seconds": seconds, "note": f"C={best} (selection accuracy {scores[best]:.4f}), then fit on every phrase"}


def main():
    p = parser(__doc__)
    p.add_argument("--rows", type=row_names(ROWS), default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)} (dense and the fixed recipe always run)".replace("%", "%%"))
    p.add_argument("--data", choices=DATASETS, default="sst2", help="sst2 (../shared/data), or fine-foods (fetched once from the Debian archive; see fine_foods.py)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1, each its own models and selection split; above 1, the table gives mean ± sd and the worst seed")
    p.add_argument("--first-seed", type=int, default=SEED, help="the first seed: seeds K..K+N-1 (more seeds for an earlier run, in a second process)")
    args = p.parse_args()
    title = TITLE + ("" if args.data == "sst2" else ", Amazon fine-food reviews") + ("" if args.rows == list(ROWS) else f", rows {', '.join(args.rows)}") + ("" if args.seeds == 1 else f", {args.seeds} seeds") + (f" from seed {args.first_seed}" if args.first_seed else "")
    require_shared()
    from tfcompress import recipe as recipes

    train, dev = labelled(*_paths(args.data))
    runs = {
        "dense": [{"train": {"epochs": 2}}, {"export": {"modes": ["float32"], "latency_runs": 100}}],
        "fixed recipe (80% + QAT)": [{"train": {"epochs": 2}}, {"prune": {"target_sparsity": 0.8, "epochs": 2}}, {"quantize": {"epochs": 1}}, {"export": {"modes": ["dynamic", "float32"], "latency_runs": 100}}],
        "compress's default today (train on auto)": [
            {"train": {"epochs": "auto", "min_epochs": 2}}, {"prune": {"target_sparsity": 0.8, "epochs": 2}}, {"quantize": {"epochs": 1}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "compress's default, watching accuracy (train on auto, monitor: accuracy)": [
            {"train": {"epochs": "auto", "min_epochs": 2, "monitor": "accuracy"}}, {"prune": {"target_sparsity": 0.8, "epochs": 2}}, {"quantize": {"epochs": 1}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 0.5": [{"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}}],
        "--max-loss 1.0": [{"train": {"epochs": 2}}, {"auto": {"max_loss": 1.0}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}}],
        "--max-loss 0.5, the verified model (refit: false)": [{"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "refit": False}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}}],
        "--max-loss 1.0, the verified model (refit: false)": [{"train": {"epochs": 2}}, {"auto": {"max_loss": 1.0, "refit": False}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}}],
        "--max-loss 0.5, selection split 25%": [{"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}}],
        "--max-loss 1.0, selection split 25%": [{"train": {"epochs": 2}}, {"auto": {"max_loss": 1.0}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}}],
        "--max-loss 0.5, selection split 25%, dense model trained on auto": [
            {"train": {"epochs": "auto", "min_epochs": 2}}, {"auto": {"max_loss": 0.5}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 1.0, selection split 25%, dense model trained on auto": [
            {"train": {"epochs": "auto", "min_epochs": 2}}, {"auto": {"max_loss": 1.0}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 0.5, refit from the dense model as given (refit_dense: false)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "refit_dense": False}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 0.5, selection split 25%, refit from the dense model as given (refit_dense: false)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "refit_dense": False}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 0.5, sentences alone (phrases: false)": [{"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "phrases": False}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}}],
        "--max-loss 0.5, nothing shrunk first (shrink_first: null)": [{"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "shrink_first": None}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}}],
        "--max-loss 0.5, the loss alone (margin: 0)": [{"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "margin": 0}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}}],
        "--max-loss 0.5, round 1 every layer 80% + 8 clusters (start: uniform, shrink_first: null, rounds: 3)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "start": "uniform", "shrink_first": None, "rounds": 3}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 0.5, selection split 25%, the verified model trained 1 more epoch on train + selection (refit_from: verified)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "refit_from": "verified"}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 1.0, selection split 25%, the verified model trained 1 more epoch on train + selection (refit_from: verified)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 1.0, "refit_from": "verified"}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 0.5, selection split 25%, the verified model (refit: false)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "refit": False}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 0.5, selection split 25%, fine-tuned towards the dense model's outputs (teacher_weight: 0.5)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "teacher_weight": 0.5}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 1.0, selection split 25%, fine-tuned towards the dense model's outputs (teacher_weight: 0.5)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 1.0, "teacher_weight": 0.5}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 0.5, selection split 25%, teacher_weight: 0.5, round 1 every layer 80% + 8 clusters (start: uniform, shrink_first: null, rounds: 3)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "teacher_weight": 0.5, "start": "uniform", "shrink_first": None, "rounds": 3}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 0.5, selection split 25%, teacher_weight: 0.5, the plans may keep 75% or 50% of the embedding's rows (rows)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 0.5, "teacher_weight": 0.5, "rows": ROW_FRACTIONS}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
        "--max-loss 1.0, selection split 25%, teacher_weight: 0.5, the plans may keep 75% or 50% of the embedding's rows (rows)": [
            {"train": {"epochs": 2}}, {"auto": {"max_loss": 1.0, "teacher_weight": 0.5, "rows": ROW_FRACTIONS}}, {"export": {"modes": ["dynamic"], "latency_runs": 100}},
        ],
    }
    for steps in runs.values():  # these rows were measured when every row stayed by default (before rows: auto)
        for step in steps:
            if "auto" in step:
                step["auto"].setdefault("rows", [])
    keys = dict(zip(ROWS, list(runs)[2:] + ["tfidf"]))
    runs = {name: steps for i, (name, steps) in enumerate(runs.items()) if i < 2 or name in [keys[r] for r in args.rows]}
    # Each row's selection split is given: 10%, or 25% where its name says so (the recipe's default with an
    # auto step since 2026-12-04, 10% before), so that a row measures today what it measured when it ran.
    fractions = {name: 0.25 if "25%" in name else 0.1 for name, steps in runs.items() if any("auto" in step for step in steps)}
    if args.seeds > 1:
        return emit(args, title, _seeds(runs, fractions, args, recipes, (train, dev) if "tfidf" in args.rows else None))
    with tempfile.TemporaryDirectory() as tmp:
        results = _run_all(runs, fractions, args, recipes, tmp, args.first_seed)
    _, fixed_s = results["fixed recipe (80% + QAT)"]
    dense_report, _ = results.pop("dense")
    dense_records = _records(dense_report, "float32")
    dense, reference = dense_records["train"], dense_records["file"]  # the dense model's float32 file is the 1× size
    rows = [["dense (train 2 epochs), float32 `.tflite`", f"{dense.value:.4f}", "—", f"{reference.gzip_bytes / 1024:,.1f}", "1.0×", f"{reference.latency_ms:.3f}", "—", "the 1× size"]]
    summaries = []
    for name, (report, seconds) in results.items():
        got = _records(report)
        final, train_row, auto = got["file"], got["train"], got["auto"]
        note = auto.notes if auto else _fixed_what([train_row])
        rows.append([
            name, f"{final.value:.4f}", f"{(final.value - dense.value) * 100:+.2f}", f"{final.gzip_bytes / 1024:,.1f}",
            f"{reference.gzip_bytes / final.gzip_bytes:.1f}×", f"{final.latency_ms:.3f}", f"{seconds / 60:.1f} ({seconds / fixed_s:.2f}×)", note,
        ])
        if auto:
            summaries.append(f"**{name}**: its own dense model scored {train_row.value:.4f} on dev (trained on {report.meta['train examples']:,} phrases; "
                             f"{report.meta['selection examples']:,} selection sentences set aside). {report.meta['budget']}.\n\n"
                             + _budget_section(report).split("\n\n", 1)[1])
    if "tfidf" not in args.rows:
        return emit(args, title, body_of(rows, summaries, args.data))
    lr = _tfidf(train, dev, args.quick, args.first_seed)
    rows.append(["TF-IDF 1-2-grams + logistic regression", f"{lr['accuracy']:.4f}", f"{(lr['accuracy'] - dense.value) * 100:+.2f}", f"{lr['gzip'] / 1024:,.1f}",
                 f"{reference.gzip_bytes / lr['gzip']:.1f}×", f"{lr['latency']:.3f}", f"{lr['seconds'] / 60:.1f}", lr["note"]])
    emit(args, title, body_of(rows, summaries, args.data))


def _run_all(runs, fractions, args, recipes, tmp, seed):
    """`{name: (report, wall seconds)}`: every recipe of `runs` run with `seed`, in order, in one process."""
    results = {}
    for name, steps in runs.items():
        t0 = time.perf_counter()
        out = os.path.join(tmp, f"{seed}-{len(results)}")
        report = recipes.run(_recipe(name, steps, args.quick, fractions.get(name), seed, args.data), out, log=lambda line: print(line, flush=True), verbose=0)
        results[name] = (report, time.perf_counter() - t0)
    return results


def _records(report, mode="dynamic"):
    """A run's records: its dense model after training, its `.tflite` file of `mode`, and its auto step (None without one)."""
    return {
        "train": next(r for r in report.records if r.step == "train"),
        "file": next(r for r in report.records if r.kind == "tflite" and mode in r.step),
        "auto": next((r for r in report.records if r.step.startswith("auto")), None),
    }


def kept_epochs(notes):
    """The epoch count an `epochs: auto` train row kept (its report notes), or None for fixed epochs."""
    found = re.search(r"kept (\d+)", notes) or re.search(r"best (\d+)", notes)
    return found.group(1) if found else None


def _fixed_what(trains):
    """The what column of a row without an auto step: its train step's epochs (each seed's, when it chose them)."""
    notes = [t.notes or "" for t in trains]
    if not all("stopped:" in n for n in notes):
        return "train 2, prune 80% 2, QAT 1 epochs"
    run = [re.match(r"(\d+) epochs", n) for n in notes]
    return (f"train on auto: kept {', '.join(kept_epochs(n) for n in notes)} of {', '.join(r.group(1) for r in run)} epochs run"
            f"{' (per seed)' if len(notes) > 1 else ''}, then refit; prune 80% 2, QAT 1 epochs")


def _budget_section(report):
    """The report's accuracy-budget section, without its plot."""
    return report.sections[next(k for k in report.sections if k.startswith("Accuracy budget"))].split("![")[0]


@dataclasses.dataclass
class _Seed:
    """One run of one seed, against that seed's dense model and fixed recipe."""

    accuracy: float
    delta: float  # points against the seed's dense model
    gzip: int
    smaller: float
    wall: float  # × the seed's fixed recipe (None for the dense model)
    latency: float  # ms per example, one at a time, median (the file's)
    report: object
    own_dense: float
    train: object  # the train step's record
    auto: object  # the auto step's record, None without one


def _seeds(runs, fractions, args, recipes, tfidf_data=None):
    """Every run once per seed: mean ± sd of the dev accuracy, Δ against the same seed's dense model
    (mean and worst), the size, the wall time against the same seed's fixed recipe, and how often
    the budget was met; then each seed's rounds. With `tfidf_data` (train, dev), the TF-IDF baseline
    too, its C chosen on each seed's own selection split."""
    per = {name: [] for name in runs}  # name -> [_Seed], one per seed
    tfidf = []  # (result, Δ points, smaller, wall × fixed), one per seed
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            reports = _run_all(runs, fractions, args, recipes, tmp, seed)
            dense_records = _records(reports["dense"][0], "float32")
            dense, reference = dense_records["train"].value, dense_records["file"]
            fixed_s = reports["fixed recipe (80% + QAT)"][1]
            for name, (report, seconds) in reports.items():
                got = _records(report, "float32" if name == "dense" else "dynamic")
                final = got["file"]
                per[name].append(_Seed(
                    dense if name == "dense" else final.value, (final.value - dense) * 100 if name != "dense" else 0.0, final.gzip_bytes,
                    reference.gzip_bytes / final.gzip_bytes, None if name == "dense" else seconds / fixed_s, final.latency_ms, report, got["train"].value, got["train"], got["auto"],
                ))
            if tfidf_data:
                lr = _tfidf(*tfidf_data, args.quick, seed)
                tfidf.append((lr, (lr["accuracy"] - dense) * 100, reference.gzip_bytes / lr["gzip"], lr["seconds"] / fixed_s))
    rows, details = [], []
    for name, got in per.items():
        acc = [g.accuracy for g in got]
        delta = [g.delta for g in got]
        met = [g.report.meta.get("budget met") for g in got if g.auto is not None]
        what = "the 1× size" if name == "dense" else (f"budget met on {sum(met)} of {len(met)} seeds" if met else _fixed_what([g.train for g in got]))
        rows.append([
            name, f"{np.mean(acc):.4f} ± {np.std(acc):.4f}", "—" if name == "dense" else f"{np.mean(delta):+.2f} (worst {min(delta):+.2f})",
            f"{np.mean([g.gzip for g in got]) / 1024:,.1f}", f"{np.mean([g.smaller for g in got]):.1f}× (least {min(g.smaller for g in got):.1f}×)",
            f"{np.mean([g.latency for g in got]):.3f} (most {max(g.latency for g in got):.3f})",
            "—" if got[0].wall is None else f"{np.mean([g.wall for g in got]):.2f}× (most {max(g.wall for g in got):.2f}×)", what,
        ])
        for seed, g in enumerate(got, start=args.first_seed):
            if g.auto is not None:
                details.append(f"**{name}, seed {seed}**: dev {g.accuracy:.4f} ({g.delta:+.2f} against this seed's dense model; its own dense model, trained without the "
                               f"selection split, scored {g.own_dense:.4f}), {g.smaller:.1f}× smaller. {_budget_section(g.report)}")
    if tfidf:
        acc = [lr["accuracy"] for lr, *_ in tfidf]
        rows.append([
            "TF-IDF 1-2-grams + logistic regression", f"{np.mean(acc):.4f} ± {np.std(acc):.4f}",
            f"{np.mean([d for _, d, _, _ in tfidf]):+.2f} (worst {min(d for _, d, _, _ in tfidf):+.2f})",
            f"{np.mean([lr['gzip'] for lr, *_ in tfidf]) / 1024:,.1f}", f"{np.mean([s for *_, s, _ in tfidf]):.1f}× (least {min(s for *_, s, _ in tfidf):.1f}×)",
            f"{np.mean([lr['latency'] for lr, *_ in tfidf]):.3f} (most {max(lr['latency'] for lr, *_ in tfidf):.3f})",
            f"{np.mean([w for *_, w in tfidf]):.2f}× (most {max(w for *_, w in tfidf):.2f}×)",
            "; ".join(f"seed {i}: {lr['note']}" for i, (lr, *_) in enumerate(tfidf, start=args.first_seed)),
        ])
    label, held_out, _ = DATASETS[args.data]
    return (
        table(["model", f"{label} accuracy (mean ± sd)", "Δ vs same seed's dense (points)", "gzip KiB (mean)", "smaller", "latency ms (mean)", "wall (× same seed's fixed)", "what"], rows)
        + "\n\nPer seed, dev accuracy (file; the dense model it pruned in parentheses): "
        + "; ".join(f"{name}: " + ", ".join(f"{g.accuracy:.4f}" + ("" if name == "dense" else f" ({g.train.value:.4f})") for g in got) for name, got in per.items())
        + f"\n\nSeeds {args.first_seed}–{args.first_seed + args.seeds - 1}: each seed trains its own models and carves its own selection split (10% of the training sentences; 25% in the rows that say so). "
        "Δ is against the same seed's dense model (trained on every phrase, as in the fixed recipe); the budget is checked on the selection "
        f"split against the run's own dense model. {held_out}\n\n"
        + "\n\n".join(details)
    )


def body_of(rows, summaries, data="sst2"):
    label, held_out, _ = DATASETS[data]
    return (
        table(["model", f"{label} accuracy", "Δ vs dense (points)", "gzip KiB", "smaller", "latency ms", "wall min (× fixed)", "what"], rows)
        + "\n\nΔ is against the dense model (trained on every phrase, as in the fixed recipe); the budget itself is checked on "
        f"the selection split against the run's own dense model, which trained on the phrases outside it (90%, or 75%). {held_out}\n\n"
        + "\n\n".join(summaries)
    )


if __name__ == "__main__":
    main()
