"""Worker for bench_acceleration.py: trains `steps` steps, prints examples/s (JSON)."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from common import sst2  # noqa: E402


def main(steps, batch):
    import tensorflow as tf

    from tfcompress import devices, keras, models, text

    strategy = devices.strategy()
    train, _ = sst2(limit=(steps + 10) * batch)
    _, x = text.TextEncoder.fit_transform(train.texts, max_len=64, cache=False)
    y = train.labels
    vocab = 14786  # the full SST-2 vocabulary size, so the model matches part 1
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    with strategy.scope():
        model = models.lstm_classifier(vocab, max_len=64)
    times, t0 = [], [0.0]

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, b, logs=None):
            t0[0] = time.perf_counter()

        def on_train_batch_end(self, b, logs=None):
            if b >= 10:
                times.append(time.perf_counter() - t0[0])

    model.fit(ds, epochs=1, verbose=0, callbacks=[Timer()])
    print(json.dumps({"examples_per_s": batch / float(np.median(times)), "replicas": strategy.num_replicas_in_sync}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
