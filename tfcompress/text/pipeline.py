"""tf.data pipelines for LSTM text models.

NLTK runs in Python, so text is preprocessed and encoded before it enters
tf.data (in parallel and cached for large corpora; see `TextPreprocessor`).
`tf_encoder` does the same inside a `Dataset.map` for streams of strings, and
gives the same ids as a direct call, element by element or batch by batch.
"""

import numpy as np
import tensorflow as tf

from tfcompress.text.vocab import TextEncoder, Vocabulary

__all__ = ["text_dataset", "tf_encoder", "char_windows", "CharWindows", "char_dataset"]


def _check_batch(batch_size):
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}.")


def text_dataset(
    texts, labels, encoder, batch_size=64, shuffle=True, seed=None, drop_remainder=False, **kwargs
):
    """Texts and labels -> a batched, shuffled, prefetched `tf.data.Dataset`.

    Args:
        texts: list of strings.
        labels: integer class ids, one per text.
        encoder: a `TextEncoder`.
        batch_size: examples per batch.
        shuffle: reshuffle every epoch (`seed` makes the order repeatable).
        drop_remainder: drop the last short batch (needed by a fixed-batch
            model, e.g. for TFLite).
        **kwargs: passed to the preprocessor (`n_jobs`, `cache`, `progress`).

    Returns:
        A dataset of `(ids, label)` batches: int32 `(batch, max_len)` and
        int32 `(batch,)`.
    """
    if not isinstance(encoder, TextEncoder):
        raise TypeError(f"text_dataset(encoder=...) expects a TextEncoder. Received: {type(encoder).__name__}.")
    _check_batch(batch_size)
    labels = np.asarray(labels)
    if len(labels) != len(texts):
        raise ValueError(
            f"text_dataset: {len(texts)} texts but {len(labels)} labels; they must pair up."
        )
    ids = encoder(texts, **kwargs)
    ds = tf.data.Dataset.from_tensor_slices((ids, labels.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def tf_encoder(encoder):
    """A function for `Dataset.map` that encodes string tensors.

    It takes a scalar string (giving `(max_len,)` ids) or a batch of strings
    (giving `(batch, max_len)`), and runs the encoder's NLTK preprocessing in
    Python through `tf.py_function`.

    Example:

    >>> ds = tf.data.Dataset.from_tensor_slices(["a good film", "bad"])
    >>> ds = ds.batch(2).map(tf_encoder(encoder))  # doctest: +SKIP
    """
    if not isinstance(encoder, TextEncoder):
        raise TypeError(f"tf_encoder expects a TextEncoder. Received: {type(encoder).__name__}.")

    def _py(texts):
        arr = texts.numpy()
        if isinstance(arr, bytes):  # a scalar string tensor
            return encoder([arr.decode("utf-8")], n_jobs=1, cache=False)[0]
        return encoder([t.decode("utf-8") for t in arr], n_jobs=1, cache=False)

    def encode(texts):
        ids = tf.py_function(_py, [texts], tf.int32)
        ids.set_shape(texts.shape.concatenate([encoder.max_len]))
        return ids

    return encode


def _window_count(length, window, step):
    """How many (window, next) pairs a sequence of `length` ids gives; checks the arguments."""
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer. Received: window={window!r}.")
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be a positive integer. Received: step={step!r}.")
    if length <= window:
        raise ValueError(
            f"The text has {length} characters, too few for window={window}: it needs "
            f"at least window + 1 = {window + 1}. Fix: use a longer text or a smaller window."
        )
    return len(range(0, length - window, step))


def char_windows(ids, window, step=1):
    """(inputs, next) pairs from a 1-D id sequence, computed directly.

    `inputs[i] = ids[i*step : i*step + window]`, `next[i] = ids[i*step + window]`.
    """
    ids = np.asarray(ids, dtype=np.int32)
    _window_count(len(ids), window, step)
    starts = np.arange(0, len(ids) - window, step)
    x = np.lib.stride_tricks.sliding_window_view(ids, window)[starts]
    return np.ascontiguousarray(x), ids[starts + window]


class CharWindows:
    """The `(window ids, next id)` examples of a 1-D id sequence, made as they are read.

    `char_windows` builds every window at once: for a 100 MB corpus at
    window 40 and step 3 that is 33 M x 40 int32, 5 GB. This holds only the
    ids (4 bytes a character) and makes windows for the indices asked for.

    `take(index)` gives the same arrays as `char_windows(ids, window,
    step)` indexed with `index`.
    """

    def __init__(self, ids, window, step=1):
        self.ids = np.ascontiguousarray(ids, dtype=np.int32)
        if self.ids.ndim != 1:
            raise ValueError(f"CharWindows expects a 1-D id sequence. Received shape {self.ids.shape}.")
        self._count = _window_count(len(self.ids), window, step)
        self.window, self.step = int(window), int(step)

    def __len__(self):
        return self._count

    @property
    def nbytes(self):
        """The bytes `char_windows` would take for all of them."""
        return self._count * (self.window + 1) * 4

    def take(self, index):
        """`(inputs, next)` arrays of the windows at `index` (ints)."""
        starts = np.asarray(index, dtype=np.int64).reshape(-1) * self.step
        if len(starts) and (starts.min() < 0 or starts.max() >= self._count * self.step):
            raise IndexError(f"window index out of range [0, {self._count}).")
        return self.ids[starts[:, None] + np.arange(self.window)], self.ids[starts + self.window]

    def arrays(self):
        """All windows as arrays (what `char_windows` returns)."""
        return char_windows(self.ids, self.window, self.step)

    def dataset(self, batch_size, epochs=1, seed=None):
        """Batches of every window, in a new order each epoch, made by tf.data
        as they are read: memory stays the ids, whatever the corpus size.

        The order of epoch `e` is a fixed permutation of `(seed, e)`
        (`tf.random.experimental.index_shuffle`, no shuffle buffer); `seed=None`
        keeps corpus order. The dataset holds `epochs` epochs back to back, so
        pass `steps_per_epoch=ceil(len / batch_size)` to `fit`.
        """
        _check_batch(batch_size)
        ids = tf.constant(self.ids)
        count, window, step = self._count, self.window, self.step

        def windows(index):
            starts = index * step
            x = tf.gather(ids, starts[:, None] + tf.range(window, dtype=tf.int64))
            return x, tf.gather(ids, starts + window)

        def epoch(e):
            order = tf.data.Dataset.range(count)
            if seed is not None:
                key = tf.stack([tf.constant(int(seed), tf.int64), e])
                order = order.map(lambda i: tf.random.experimental.index_shuffle(i, key, count - 1))
            return order.batch(batch_size).map(windows)

        ds = tf.data.Dataset.range(epochs).flat_map(epoch)
        return ds.prefetch(tf.data.AUTOTUNE)


def char_dataset(text, vocabulary, window=100, step=1, batch_size=128, shuffle=True, seed=None):
    """A character language-model dataset of `(window ids, next char id)`.

    Args:
        text: the corpus (one string) or its character list.
        vocabulary: a character `Vocabulary` (e.g. `Vocabulary.build([list(text)])`).
        window: characters of context.
        step: distance between window starts.
        batch_size: examples per batch.
        shuffle: shuffle windows every epoch.
    """
    if not isinstance(vocabulary, Vocabulary):
        raise TypeError(f"char_dataset(vocabulary=...) expects a Vocabulary. Received: {type(vocabulary).__name__}.")
    _check_batch(batch_size)
    ids = vocabulary.char_ids(text) if isinstance(text, str) else np.asarray(vocabulary.ids(list(text)), dtype=np.int32)
    count = _window_count(len(ids), window, step)  # the windows themselves are made by tf.data, as they are read
    ds = tf.data.Dataset.from_tensor_slices(ids)
    ds = ds.window(window + 1, shift=step, drop_remainder=True)
    ds = ds.flat_map(lambda w: w.batch(window + 1, drop_remainder=True))
    ds = ds.map(lambda s: (s[:-1], s[-1]), num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(min(count, 100_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
