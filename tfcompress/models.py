"""LSTM models for text: a classifier and the character-level language model.

Both are plain tf_keras functional models, compiled by default (sparse
categorical cross-entropy, Adam, accuracy) so they train with `model.fit`,
and both convert to TFLite's fused LSTM op (`UNIDIRECTIONAL_SEQUENCE_LSTM`);
`tfcompress.export` turns it into a stateless form by default.

Their output ends in a float32 softmax layer named `"probabilities"` after a
`"logits"` Dense layer: under a `mixed_float16` policy the softmax and the loss
stay in float32, and distillation can read the logits.
"""

import tensorflow as tf

from tfcompress._keras import keras

__all__ = ["lstm_classifier", "char_lstm_lm", "CapVocabulary"]


def _positive_int(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {name}={value!r}.")


def _rate(name, value):
    if not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1). Received: {name}={value!r}.")


@keras.saving.register_keras_serializable(package="tfcompress")
class CapVocabulary(keras.layers.Layer):
    """Keeps token ids below `size - 1`; every larger id becomes `size - 1`.

    `tfcompress.text` vocabularies are ordered by frequency, so the ids below
    `size - 1` are padding (0), out-of-vocabulary (1) and the `size - 3` most
    frequent tokens; the rarer tokens share the last id, one "rare token" row
    of the `Embedding(size, ...)` after this layer. The model still reads every
    id of the full encoder (so a small student can share a large teacher's
    inputs) while its embedding table, usually most of a small text model,
    shrinks. It has no weights and converts to one TFLite `MINIMUM` op, which
    full-integer (int8) conversion accepts; it stays integer under QAT.

    Args:
        size: the number of distinct ids out (rows of the next Embedding);
            at least 3.
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        _positive_int("size", size, 3)
        self.size = size

    def call(self, inputs):
        if not inputs.dtype.is_integer:
            raise TypeError(
                f"CapVocabulary {self.name!r} expects integer token ids; received {inputs.dtype.name}. "
                "Fix: feed the int32 ids from tfcompress.text.TextEncoder."
            )
        return tf.minimum(inputs, tf.cast(self.size - 1, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def _compile(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def lstm_classifier(
    vocab_size,
    num_classes=2,
    max_len=None,
    embedding_dim=64,
    units=64,
    num_layers=1,
    bidirectional=False,
    dropout=0.3,
    mask_zero=False,
    embedding_vocab_size=None,
    learning_rate=2e-3,
    compile=True,
    name="lstm_classifier",
    embedding_rank=None,
):
    """Embedding -> LSTM (stacked, optionally bidirectional) -> softmax.

    With the defaults, trained from scratch on SST-2 train for two epochs with
    pre-padded input (`tfcompress.text` defaults), it reaches about 0.84
    dev accuracy (BENCHMARKS.md).

    Args:
        vocab_size: the Embedding's input dimension (`len(vocabulary)`).
        num_classes: output classes (>= 2).
        max_len: fixed input length, or `None` for any length.
        embedding_dim: embedding size.
        units: LSTM units per layer (per direction if bidirectional).
        num_layers: stacked LSTM layers.
        bidirectional: wrap each LSTM in `Bidirectional`.
        dropout: dropout rate after the embedding and after the last LSTM.
        mask_zero: mask padding id 0. Not needed with pre-padding, and a masked
            LSTM does not convert to the fused TFLite op, so it is off.
        embedding_vocab_size: give the Embedding N rows only: one per id
            below N - 1 (padding, OOV and the N - 3 most frequent tokens of a
            `tfcompress.text` vocabulary) and one shared by every rarer token,
            through a `CapVocabulary` layer. The model still accepts every id
            below `vocab_size`. For small models and distillation students,
            where the embedding table is most of the parameters: it buys a
            wider embedding for the frequent tokens at the same size.
        learning_rate: Adam learning rate, when `compile=True`.
        compile: compile the model.
        name: model name.
        embedding_rank: a low-rank factorised embedding: `Embedding(rows,
            embedding_rank)` followed by `Dense(embedding_dim, use_bias=False)`
            named `embedding_projection` (`tfcompress.embeddings.factorize`
            turns a trained model's table into one).

    Returns:
        A tf_keras functional model: int32 ids `(batch, max_len)` ->
        probabilities `(batch, num_classes)`.
    """
    _positive_int("vocab_size", vocab_size, 3)
    _positive_int("num_classes", num_classes, 2)
    if max_len is not None:
        _positive_int("max_len", max_len)
    _positive_int("embedding_dim", embedding_dim)
    _positive_int("units", units)
    _positive_int("num_layers", num_layers)
    _rate("dropout", dropout)
    if embedding_rank is not None:
        _positive_int("embedding_rank", embedding_rank)
        if embedding_rank >= embedding_dim:
            raise ValueError(
                f"embedding_rank ({embedding_rank}) must be smaller than embedding_dim ({embedding_dim}): "
                "a factorised table of full rank only adds parameters. Fix: a smaller embedding_rank, or None."
            )
    layers = keras.layers
    rows = vocab_size
    if embedding_vocab_size is not None:
        _positive_int("embedding_vocab_size", embedding_vocab_size, 3)
        if embedding_vocab_size > vocab_size:
            raise ValueError(
                f"embedding_vocab_size ({embedding_vocab_size}) cannot exceed vocab_size ({vocab_size}). "
                "Fix: pass a smaller embedding_vocab_size, or None to keep every id."
            )
        rows = embedding_vocab_size
    inputs = keras.Input((max_len,), dtype="int32", name="token_ids")
    ids = inputs if rows == vocab_size else CapVocabulary(rows, name="cap_vocabulary")(inputs)
    if embedding_rank is None:
        x = layers.Embedding(rows, embedding_dim, mask_zero=mask_zero, name="embedding")(ids)
    else:
        x = layers.Embedding(rows, embedding_rank, mask_zero=mask_zero, name="embedding")(ids)
        x = layers.Dense(embedding_dim, use_bias=False, name="embedding_projection")(x)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(num_layers):
        lstm = layers.LSTM(units, return_sequences=i < num_layers - 1, name=f"lstm_{i}")
        if bidirectional:
            lstm = layers.Bidirectional(lstm, name=f"bidirectional_{i}")
        x = lstm(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=name)
    if compile:
        _compile(model, learning_rate)
    return model


def char_lstm_lm(
    vocab_size,
    window=100,
    embedding_dim=32,
    units=512,
    num_layers=3,
    dropout=0.2,
    learning_rate=2e-3,
    compile=True,
    name="char_lstm_lm",
):
    """The character-level language model: stacked LSTMs with dropout.

    The classic architecture is three LSTM(512) layers with dropout and a
    softmax over the characters; the defaults reproduce it, and the arguments
    scale it down (the demo uses far fewer units to train in minutes on a CPU).
    It reads `window` character ids and predicts the next character.

    Args:
        vocab_size: number of characters in the vocabulary (with the two
            reserved ids).
        window: characters of context (the input length; `None` for any).
        embedding_dim: character embedding size.
        units: LSTM units per layer.
        num_layers: stacked LSTM layers.
        dropout: dropout after each LSTM layer.
        learning_rate: Adam learning rate, when `compile=True`.
        compile: compile the model.
        name: model name.

    Returns:
        A tf_keras functional model: int32 ids `(batch, window)` ->
        next-character probabilities `(batch, vocab_size)`.
    """
    _positive_int("vocab_size", vocab_size, 3)
    if window is not None:
        _positive_int("window", window)
    _positive_int("embedding_dim", embedding_dim)
    _positive_int("units", units)
    _positive_int("num_layers", num_layers)
    _rate("dropout", dropout)
    layers = keras.layers
    inputs = keras.Input((window,), dtype="int32", name="char_ids")
    x = layers.Embedding(vocab_size, embedding_dim, name="embedding")(inputs)
    for i in range(num_layers):
        x = layers.LSTM(units, return_sequences=i < num_layers - 1, name=f"lstm_{i}")(x)
        x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    x = layers.Dense(vocab_size, name="logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=name)
    if compile:
        _compile(model, learning_rate)
    return model
