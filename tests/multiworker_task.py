"""One worker of the multi-worker test (run with TF_CONFIG set by the test).

Trains, under tfcompress.devices.strategy() (MultiWorkerMirroredStrategy), a
pruned LSTM classifier and a distilled student on the same synthetic data, and
saves the resulting weights and sparsity to the file given as argv[1].
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfcompress import devices, distillation, keras, models, pruning  # noqa: E402

VOCAB, LEN, N, GLOBAL_BATCH = 50, 10, 256, 32


def dataset(x, y):
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def main(out):
    strategy = devices.strategy()
    assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), type(strategy)
    assert strategy.num_replicas_in_sync == 2
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB, (N, LEN)).astype("int32")
    y = (x[:, -1] > VOCAB // 2).astype("int32")
    steps = N // GLOBAL_BATCH
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=8, units=8, dropout=0.0, compile=False)
        pruned = pruning.prune(model, target_sparsity=0.7, epochs=2, steps_per_epoch=steps)
        pruned.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    pruned.fit(dataset(x, y), epochs=2, verbose=0)
    stripped = pruning.strip(pruned)
    sparsity = [r["sparsity"] for r in pruning.sparsity_report(stripped)]

    with strategy.scope():
        teacher = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=8, units=8, dropout=0.0)
    teacher.fit(dataset(x, y), epochs=2, verbose=0)
    with strategy.scope():
        student = models.lstm_classifier(VOCAB, max_len=LEN, embedding_dim=4, units=4, dropout=0.0, compile=False)
        distiller = distillation.Distiller(teacher, student, alpha=0.2, temperature=2.0)
        distiller.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    history = distiller.fit(dataset(x, y), epochs=2, verbose=0)

    arrays = {f"pruned_{i}": w for i, w in enumerate(stripped.get_weights())}
    arrays.update({f"student_{i}": w for i, w in enumerate(student.get_weights())})
    arrays["sparsity"] = np.array(sparsity)
    arrays["distillation_loss"] = np.array(history.history["distillation_loss"])
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
