"""The tokenizer a Keras model was trained with, as a `TextEncoder`.

A trained text model knows one mapping from words to ids: the one of the
tokenizer it was trained with. Feeding it ids from a newly fitted vocabulary
gives it other words under the same numbers. This module takes over the
user's own tokenizer instead:

- `from_keras(obj)`: a `keras.preprocessing.text.Tokenizer` (the object, its
  `to_json()` text, or that JSON saved to a file) or a `TextVectorization`
  layer (tf_keras or Keras 3) -> a `TextEncoder` giving exactly the same ids;
- `load_tokenizer(path)`: the same from a file or folder: a `TextEncoder`
  folder, a Tokenizer JSON file, or a vocabulary file in `TextVectorization`
  order (`layer.get_vocabulary()`, one token per line);
- `check_encoder(encoder, model)`: refuses an encoder whose ids or length do
  not fit the model, naming both numbers;
- `split_vectorizer(model)`: a model that starts with a `TextVectorization`
  layer (string input, which TFLite cannot run without TensorFlow ops) ->
  `(encoder, id_model)`, the rest of the model reading token ids, with the
  same weights.
"""

import json
import logging
import os

from tfcompress.text.keras_rules import KERAS_FILTERS, KerasTokenizerRules, VectorizerRules
from tfcompress.text.vocab import TextEncoder, Vocabulary

__all__ = [
    "from_keras",
    "load_tokenizer",
    "check_encoder",
    "split_vectorizer",
    "find_vectorizer",
    "with_int_ids",
    "TokenizerError",
]

log = logging.getLogger("tfcompress")


class TokenizerError(ValueError):
    """A tokenizer that cannot be reproduced, or does not fit the model."""


_TV_OOV, _TV_MASK = "[UNK]", ""


# --------------------------------------------------------------------------
# Keras Tokenizer
# --------------------------------------------------------------------------


def _tokenizer_config(obj, where):
    """A Tokenizer object / to_json() dict / get_config() dict -> its config."""
    if isinstance(obj, dict):
        config = obj.get("config", obj) if obj.get("class_name") == "Tokenizer" or "config" in obj else obj
    else:
        if getattr(obj, "analyzer", None) is not None:
            raise TokenizerError(
                f"{where}: this Tokenizer splits text with a custom `analyzer` function, which is "
                "Python code tfcompress cannot reproduce outside your program. Fix: tokenize with "
                "filters/lower/split/char_level, or give tfcompress a TextEncoder."
            )
        config = obj.get_config()
    if not isinstance(config, dict) or "word_index" not in config:
        raise TokenizerError(
            f"{where}: not a Keras Tokenizer configuration (no word_index). Expected what "
            "tokenizer.to_json() writes: {\"class_name\": \"Tokenizer\", \"config\": {...}}."
        )
    return config


def _from_tokenizer(config, where, max_len, padding, truncating):
    word_index = config["word_index"]
    if isinstance(word_index, str):
        word_index = json.loads(word_index)
    if not word_index:
        raise TokenizerError(f"{where}: the Tokenizer has no words (fit_on_texts was never called).")
    ranked = sorted(word_index.items(), key=lambda item: item[1])
    ids = [i for _, i in ranked]
    if ids != list(range(1, len(ids) + 1)):
        gap = next(n for n, i in enumerate(ids, start=1) if i != n)
        raise TokenizerError(
            f"{where}: the Tokenizer's word_index does not number its words 1..{len(ids)} (id {gap} is "
            "missing or repeated; this happens when oov_token is also a word of the texts). tfcompress "
            "cannot reproduce it exactly. Fix: refit the Tokenizer with an oov_token that is not a word."
        )
    oov = config.get("oov_token")
    if oov is not None and word_index.get(oov) != 1:
        raise TokenizerError(f"{where}: oov_token {oov!r} is not id 1 of word_index, as Keras puts it.")
    tokens = [""] + [w for w, _ in ranked]
    num_words = config.get("num_words") or None  # Keras: `if num_words and i >= num_words`
    if num_words is not None:
        tokens = tokens[: max(int(num_words), 2 if oov is not None else 1)]
    try:
        vocabulary = Vocabulary(tokens, pad_token="", oov_token=oov)
    except ValueError as err:
        raise TokenizerError(f"{where}: {err}") from None
    rules = KerasTokenizerRules(
        filters=config.get("filters", KERAS_FILTERS),
        lower=config.get("lower", True),
        split=config.get("split", " "),
        char_level=config.get("char_level", False),
    )
    if max_len is None:
        raise TokenizerError(
            f"{where}: a Keras Tokenizer does not know the sequence length its ids were padded to. "
            "Fix: pass max_len= (the maxlen you gave pad_sequences), or model= to read it from the "
            "model's input."
        )
    return TextEncoder(rules, vocabulary, max_len, padding or "pre", truncating or "pre")


# --------------------------------------------------------------------------
# TextVectorization
# --------------------------------------------------------------------------


def _is_vectorizer(obj):
    return type(obj).__name__ == "TextVectorization" and hasattr(obj, "get_vocabulary")


def _from_vectorizer(layer, max_len, padding, truncating):
    config = layer.get_config()
    where = f"TextVectorization layer {layer.name!r}"
    if config.get("output_mode", "int") != "int":
        raise TokenizerError(
            f"{where} has output_mode={config['output_mode']!r}: it outputs one vector per text, "
            "not token ids, so there is no sequence for an LSTM. tfcompress takes over "
            "output_mode='int' vectorizers."
        )
    for key in ("standardize", "split"):
        value = config.get(key)
        if value is not None and not isinstance(value, str):
            raise TokenizerError(
                f"{where} uses a custom {key} function ({value!r}): Python code that tfcompress "
                f"cannot reproduce outside Keras. Fix: use one of Keras' built-in {key} options, "
                "or preprocess outside the model and give tfcompress a TextEncoder."
            )
    if config.get("encoding", "utf-8").lower().replace("-", "") != "utf8":
        raise TokenizerError(f"{where} decodes {config['encoding']!r}; tfcompress reproduces UTF-8 only.")
    vocab = [str(t) for t in layer.get_vocabulary()]
    if vocab[:2] != [_TV_MASK, _TV_OOV]:
        raise TokenizerError(
            f"{where}: its vocabulary starts {vocab[:2]}, not the mask and OOV tokens "
            f"{[_TV_MASK, _TV_OOV]} of output_mode='int'."
        )
    if len(vocab) == 2:
        raise TokenizerError(f"{where} has an empty vocabulary: adapt() was never run and no vocabulary was given.")
    try:
        rules = VectorizerRules(config.get("standardize"), config.get("split"), config.get("ngrams"))
    except ValueError as err:
        raise TokenizerError(f"{where}: {err}") from None
    length = config.get("output_sequence_length")
    if max_len is not None and length is not None and max_len != length:
        raise TokenizerError(
            f"{where} pads to output_sequence_length={length}, but max_len={max_len} was given. "
            "Fix: leave max_len out, or pass the layer's length."
        )
    max_len = max_len or length
    if max_len is None:
        raise TokenizerError(
            f"{where} has no output_sequence_length: it pads each batch to its longest text, so the "
            "model reads any length. A .tflite file needs one length. Fix: pass max_len= "
            "(command line: --max-len), e.g. the 99th percentile of your texts' token counts."
        )
    # TextVectorization pads and cuts at the end (RaggedTensor.to_tensor).
    return TextEncoder(rules, Vocabulary(vocab, _TV_MASK, _TV_OOV), max_len, padding or "post", truncating or "post")


def _vocabulary_file(path, max_len, padding, truncating):
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as err:
        raise TokenizerError(f"{path}: a vocabulary file must be UTF-8 text; byte {err.start} is not.") from None
    if lines and lines[-1] == "":
        lines.pop()
    return _vocabulary_tokens(lines, path, max_len, padding, truncating)


def _vocabulary_tokens(lines, path, max_len, padding, truncating):
    if lines[:2] == [_TV_MASK, _TV_OOV]:
        tokens = lines
    elif lines[:1] == [_TV_OOV]:
        tokens = [_TV_MASK] + lines
    else:
        tokens = [_TV_MASK, _TV_OOV] + lines  # as TextVectorization(vocabulary=path) reads it
    if len(tokens) == 2:
        raise TokenizerError(f"{path}: the vocabulary file holds no tokens.")
    try:
        vocabulary = Vocabulary(tokens, _TV_MASK, _TV_OOV)
    except ValueError as err:
        raise TokenizerError(f"{path}: {err}") from None
    if max_len is None:
        raise TokenizerError(
            f"{path}: a vocabulary file does not say the sequence length. Fix: pass max_len= "
            "(command line: --max-len), or give the model so it is read from its input."
        )
    return TextEncoder(VectorizerRules(), vocabulary, max_len, padding or "post", truncating or "post")


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


def _model_length(model):
    if model is None:
        return None
    shape = tuple(model.inputs[0].shape)
    return int(shape[1]) if len(shape) == 2 and shape[1] is not None else None


def from_keras(obj, max_len=None, padding=None, truncating=None, model=None):
    """A `TextEncoder` that gives exactly the ids of a Keras tokenizer.

    Args:
        obj: a `keras.preprocessing.text.Tokenizer` (tf_keras or the
            standalone `keras_preprocessing`), its `to_json()` string (or
            the parsed dict), a path to that JSON, or a `TextVectorization`
            layer (tf_keras or Keras 3, `output_mode="int"`).
        max_len: the sequence length. Default: a TextVectorization's
            `output_sequence_length`, else the model's input length.
        padding, truncating: `"pre"` or `"post"`. Default: what the
            tokenizer's usual pipeline does: `pad_sequences`' `"pre"`/`"pre"`
            for a Tokenizer, `"post"`/`"post"` for TextVectorization. Give
            them if you padded otherwise (e.g. `pad_sequences(...,
            padding="post")`).
        model: the model the ids are for: its input length is used when
            `max_len` is not given, and the encoder is checked against it
            (`check_encoder`).

    Returns:
        A `TextEncoder`; `encoder(texts)` returns the padded int32 ids.

    Raises:
        TokenizerError: the tokenizer uses Python code (a custom `analyzer`,
            `standardize` or `split`), cannot be reproduced exactly, or does
            not fit `model`.
    """
    if model is not None and find_vectorizer(model) is not None:
        model = None  # the vectorizer inside the model is its tokenizer; nothing to check
    if model is not None:
        from tfcompress._keras import ensure_tf_keras

        model = ensure_tf_keras(model, caller="from_keras")
        _require_id_input(model)
    explicit_len = max_len
    max_len = max_len or _model_length(model)
    if isinstance(obj, TextEncoder):
        encoder = TextEncoder(
            obj.preprocessor, obj.vocabulary, explicit_len or obj.max_len, padding or obj.padding, truncating or obj.truncating
        )
    elif _is_vectorizer(obj):
        encoder = _from_vectorizer(obj, explicit_len, padding, truncating)
    elif isinstance(obj, (str, os.PathLike)) and not str(obj).lstrip().startswith("{"):
        encoder = load_tokenizer(obj, max_len=max_len, padding=padding, truncating=truncating)
    elif isinstance(obj, str):
        try:
            parsed = json.loads(obj)
        except json.JSONDecodeError as err:
            raise TokenizerError(f"from_keras: the text is not valid JSON (line {err.lineno}: {err.msg}).") from None
        encoder = _from_tokenizer(_tokenizer_config(parsed, "Tokenizer JSON"), "Tokenizer JSON", max_len, padding, truncating)
    elif isinstance(obj, dict) or hasattr(obj, "word_index"):
        encoder = _from_tokenizer(_tokenizer_config(obj, "Tokenizer"), "Tokenizer", max_len, padding, truncating)
    else:
        raise TypeError(
            "from_keras() expects a Keras Tokenizer (object, to_json() text or its file) or a "
            f"TextVectorization layer. Received: {type(obj).__name__}."
        )
    if model is not None:
        encoder = check_encoder(encoder, model, explicit_len=explicit_len is not None)
    return encoder


def load_tokenizer(path, max_len=None, padding=None, truncating=None):
    """A `TextEncoder` from a file or folder.

    Args:
        path: a `TextEncoder` folder (`preprocessing.json` + `vocab.txt`), a
            Keras Tokenizer JSON file (`tokenizer.to_json()`), or a
            vocabulary in `TextVectorization` order: one token per line, or a
            JSON list (`json.dump(layer.get_vocabulary())`), with or without
            the leading `""` and `"[UNK]"`; the text is then split the way
            `TextVectorization`'s defaults do.
        max_len, padding, truncating: as for `from_keras` (a TextEncoder
            folder has its own; given values replace them).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"tokenizer: no file or folder at {path!r}.")
    if os.path.isdir(path):
        encoder = TextEncoder.load(path)
        if max_len or padding or truncating:
            encoder = TextEncoder(
                encoder.preprocessor,
                encoder.vocabulary,
                max_len or encoder.max_len,
                padding or encoder.padding,
                truncating or encoder.truncating,
            )
        return encoder
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not a character cut at the buffer's end
            raise TokenizerError(
                f"{path}: not UTF-8 text (byte {err.start}): a tokenizer is a Tokenizer JSON file, a "
                "vocabulary file or a TextEncoder folder."
            ) from None
    if head.lstrip().startswith(b"["):  # json.dump(layer.get_vocabulary()), or a plain file starting "[UNK]"
        tokens = None
        with open(path, encoding="utf-8") as f:
            try:
                tokens = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError):
                pass
        if isinstance(tokens, list):
            if not all(isinstance(t, str) for t in tokens):
                raise TokenizerError(f"{path}: a JSON vocabulary is a list of strings (tokens in id order).")
            return _vocabulary_tokens(tokens, path, max_len, padding, truncating)
    if head.lstrip().startswith(b"{"):
        with open(path, encoding="utf-8") as f:
            try:
                parsed = json.load(f)
            except json.JSONDecodeError as err:
                raise TokenizerError(f"{path}, line {err.lineno}: invalid JSON ({err.msg}).") from None
        if parsed.get("class_name") == "TextEncoder":
            raise TokenizerError(
                f"{path} is a TextEncoder's preprocessing.json: pass its folder, which also holds vocab.txt."
            )
        return _from_tokenizer(_tokenizer_config(parsed, path), path, max_len, padding, truncating)
    return _vocabulary_file(path, max_len, padding, truncating)


def _embedding_rows(model):
    """(layer name, input_dim) of the Embedding reading the token ids, or None
    when ids pass a CapVocabulary first (any id is then accepted)."""
    from tfcompress._keras import keras
    from tfcompress.models import CapVocabulary

    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, CapVocabulary):
            return None
        if isinstance(inner, keras.layers.Embedding):
            return layer.name, int(inner.input_dim)
    return None


def _id_readers(model):
    """The layers reading the model's (only) input, if all are id readers."""
    from tfcompress._keras import keras
    from tfcompress.models import CapVocabulary

    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 2:
        return None
    text_input = model.inputs[0]
    readers = [
        node.layer
        for depth in model._nodes_by_depth.values()  # noqa: SLF001
        for node in depth
        if not node.is_input and any(t is text_input for t in node.keras_inputs)
    ]
    inner = [getattr(r, "layer", r) for r in readers]
    if readers and all(isinstance(r, (keras.layers.Embedding, CapVocabulary)) for r in inner):
        return readers
    return None


def with_int_ids(model):
    """`model` with an int32 input, if it reads token ids through a float input.

    `keras.Input((40,))` is float32 by default, and an Embedding casts what it
    receives, so many id models are declared with a float input. The model
    returned has the same layers and weights and an int32 input (what an app
    feeds a `.tflite` file); any other model is returned unchanged. The new
    model is not compiled.
    """
    from tfcompress._keras import clone_with, copy_weights, ensure_tf_keras, keras

    model = ensure_tf_keras(model, caller="with_int_ids")
    if len(model.inputs) != 1 or model.inputs[0].dtype.is_integer or _id_readers(model) is None:
        return model
    length = model.inputs[0].shape[1]
    name = model._input_layers[0].name  # noqa: SLF001
    clone = lambda l: l.__class__.from_config(l.get_config())  # noqa: E731
    if isinstance(model, keras.Sequential):
        layer = keras.layers.InputLayer(batch_input_shape=(None, length), dtype="int32", name=name)
        new = keras.Sequential([layer] + [clone(l) for l in model.layers], name=model.name)
    else:
        return clone_with(model, clone, cut=(name, keras.Input((length,), dtype="int32", name=name)))
    copy_weights(model, new)
    return new


def _require_id_input(model):
    inputs = model.inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 2 or not (inputs[0].dtype.is_integer or _id_readers(model)):
        raise TokenizerError(
            f"model {model.name!r} takes input {[tuple(t.shape) for t in inputs]} "
            f"({', '.join(t.dtype.name for t in inputs)}), not one (batch, length) array of integer token "
            "ids, so a tokenizer cannot feed it. (A model on one-hot or feature vectors is compressed "
            "through the Python API with your own arrays.)"
        )


def check_encoder(encoder, model, explicit_len=True):
    """Checks that `encoder`'s ids fit `model`; returns the encoder (with the
    model's length when `explicit_len` is False and the two differ).

    Raises:
        TokenizerError: the model does not read token ids, the vocabulary
            has ids the model's Embedding has no row for, or the lengths
            differ (both numbers named).
    """
    from tfcompress._keras import ensure_tf_keras

    model = ensure_tf_keras(model, caller="check_encoder")
    _require_id_input(model)
    length = _model_length(model)
    if length is not None and length != encoder.max_len:
        if explicit_len:
            raise TokenizerError(
                f"the tokenizer pads to {encoder.max_len} tokens but model {model.name!r} reads "
                f"{length}. Fix: use max_len={length} (command line: --max-len {length})."
            )
        encoder = TextEncoder(encoder.preprocessor, encoder.vocabulary, length, encoder.padding, encoder.truncating)
    rows = _embedding_rows(model)
    if rows is not None:
        name, input_dim = rows
        size = len(encoder.vocabulary)
        if size > input_dim:
            raise TokenizerError(
                f"the tokenizer has {size} ids (0..{size - 1}) but the Embedding {name!r} of model "
                f"{model.name!r} has {input_dim} rows: ids {input_dim} and above would read outside "
                "the table. This is not the tokenizer the model was trained with (or its num_words "
                "was larger). Fix: give the tokenizer the model was trained with."
            )
        if size < input_dim:
            log.info(
                "tokenizer has %d ids, Embedding %r has %d rows: the last %d rows are never used",
                size, name, input_dim, input_dim - size,
            )
    return encoder


# --------------------------------------------------------------------------
# A TextVectorization layer inside a model
# --------------------------------------------------------------------------


def find_vectorizer(model):
    """The `TextVectorization` layer of a (tf_keras or Keras 3) model, or None."""
    found = [layer for layer in getattr(model, "layers", []) if _is_vectorizer(layer)]
    if len(found) > 1:
        raise TokenizerError(
            f"model {model.name!r} has {len(found)} TextVectorization layers "
            f"({', '.join(repr(l.name) for l in found)}); tfcompress splits a model with one."
        )
    return found[0] if found else None


def split_vectorizer(model, max_len=None):
    """Takes the `TextVectorization` layer off a string-input model.

    The vectorizer's string operations are not TFLite built-in ops; its work
    moves outside the model, into a `TextEncoder` that gives the same ids
    (saved beside the `.tflite` as `NAME.vocab.txt` + `NAME.preprocessing.json`).

    Args:
        model: a tf_keras or Keras 3 Sequential/Functional model whose only
            input is strings and whose first layer is a `TextVectorization`
            (`output_mode="int"`).
        max_len: the sequence length, needed when the layer has no
            `output_sequence_length`.

    Returns:
        `(encoder, id_model)`: `id_model` is a tf_keras model reading int32
        ids of shape `(batch, max_len)`, with the same layers and weights
        after the vectorizer; `id_model(encoder(texts))` equals
        `model(texts)`.

    Raises:
        TokenizerError: no or several vectorizers, one that is not applied
            to the model's input, or one tfcompress cannot reproduce.
    """
    from tfcompress._keras import clone_with, copy_weights, is_keras3, keras

    if find_vectorizer(model) is None:
        raise TokenizerError(f"model {model.name!r} has no TextVectorization layer to split off.")
    if is_keras3(model):
        from tfcompress._keras import as_tf_keras

        model = as_tf_keras(model)
    layer = find_vectorizer(model)
    encoder = _from_vectorizer(layer, max_len, None, None)
    if len(model.inputs) != 1:
        raise TokenizerError(
            f"model {model.name!r} has {len(model.inputs)} inputs; tfcompress splits the vectorizer off a "
            "model whose only input is the text."
        )
    clone = lambda l: l.__class__.from_config(l.get_config())  # noqa: E731
    if isinstance(model, keras.Sequential):
        if model.layers[0] is not layer:
            raise TokenizerError(f"model {model.name!r}: TextVectorization {layer.name!r} is not its first layer.")
        id_model = keras.Sequential([_id_input_layer(encoder)] + [clone(l) for l in model.layers[1:]], name=model.name)
    else:
        _check_applied_to_input(model, layer, model.inputs[0])
        ids = keras.Input((encoder.max_len,), dtype="int32", name="token_ids")
        return encoder, clone_with(model, clone, cut=(layer.name, ids))
    copy_weights(model, id_model)
    return encoder, id_model


def _id_input_layer(encoder):
    from tfcompress._keras import keras

    return keras.layers.InputLayer(batch_input_shape=(None, encoder.max_len), dtype="int32", name="token_ids")


def _check_applied_to_input(model, layer, text_input):
    """The vectorizer must read the model's input, and be its only reader."""
    readers = [
        node.layer
        for depth in model._nodes_by_depth.values()  # noqa: SLF001
        for node in depth
        if not node.is_input and any(t is text_input for t in node.keras_inputs)
    ]
    if readers != [layer]:
        names = ", ".join(repr(r.name) for r in readers) or "nothing"
        raise TokenizerError(
            f"model {model.name!r}: its text input is read by {names}; tfcompress splits a model whose "
            f"text input goes only into TextVectorization {layer.name!r}."
        )
