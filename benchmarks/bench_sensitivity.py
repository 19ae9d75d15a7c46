"""SST-2: the cost of `sensitivity` against one training epoch, and its table.

One process, one seed: a recipe trains the default classifier (as `compress`
builds it, max_len 64) for one epoch, timing the epoch with a Keras callback,
then runs the `sensitivity` step with its defaults (prune 50/80/90/95%, 8 and
4 bits, 16 and 8 clusters, every layer) on the selection split carved from
the training data (whole sentences, their phrases out of training). The
issue's bound: the analysis costs less than one training epoch.
"""

import os
import tempfile
import time

from common import DATA, emit, parser, require_shared


def main():
    p = parser(__doc__)
    args = p.parse_args()
    require_shared()
    from tfcompress import keras, recipe as recipes, sensitivity

    class EpochTimer(keras.callbacks.Callback):
        seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t0)

    config = {
        "name": "sst2-sensitivity",
        "seed": 0,
        "data": {"train": str(DATA / "sst2" / "train.tsv"), "dev": str(DATA / "sst2" / "dev.tsv")},
        "text": {"max_len": 64},
        "steps": [{"train": {"epochs": 1, "batch_size": 128, **({"max_steps": 20} if args.quick else {})}}, "sensitivity"],
    }
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as tmp:
        report = recipes.run(config, tmp, callbacks=[timer], log=lambda line: print(line, flush=True), verbose=0)
        table = sensitivity.SensitivityTable.load(os.path.join(tmp, ".run", "02-sensitivity", "sensitivity.json"))
    epoch = timer.seconds[0]
    body = (
        f"One training epoch of the default classifier on {report.meta['train examples']:,} SST-2 phrases: "
        f"**{epoch:.1f} s**. The analysis ({table.evaluations} evaluations of the {table.examples:,} selection "
        f"sentences): **{table.seconds:.1f} s**, {table.seconds / epoch:.2f}× one epoch.\n\n"
        + table.to_markdown()
        + "\nEvery figure is one layer changed alone and not fine-tuned: an upper bound on what training "
        "afterwards leaves. The selection split is carved from the training data; dev is not used."
    )
    emit(args, "Sensitivity, one layer at a time (issue 17)", body)


if __name__ == "__main__":
    main()
