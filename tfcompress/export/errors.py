"""What export raises, and the layers TFLite's built-in op set cannot hold."""

import re


class TFLiteConversionError(ValueError):
    """The TFLite converter refused the model; the message names the layer."""


class VerificationError(TFLiteConversionError):
    """The converted file does not answer like the Keras model on the
    verification sample; nothing was written.

    Attributes:
        agreement: the fraction of sample examples given the Keras class.
        threshold: the fraction asked for.
        disagreements: one dict per disagreeing example (`index` into the
            data passed, `keras_class`, `file_class`, and both outputs'
            probability of each class).
    """

    def __init__(self, message, agreement, threshold, disagreements):
        super().__init__(message)
        self.agreement = agreement
        self.threshold = threshold
        self.disagreements = disagreements


class ConversionCrashed(RuntimeError):
    """The converter process died (e.g. a segmentation fault)."""


# Layers whose TensorFlow ops TFLite's built-in op set lacks, and what to use.
UNSUPPORTED_LAYERS = {
    "TextVectorization": "preprocess outside the model with tfcompress.text.TextEncoder (exported "
    "beside the .tflite as NAME.vocab.txt + NAME.preprocessing.json) and feed int32 token ids",
    "StringLookup": "look tokens up outside the model (tfcompress.text.Vocabulary) and feed int32 ids",
    "IntegerLookup": "map ids outside the model and feed the mapped int32 ids",
    "Hashing": "hash outside the model and feed int32 ids",
}


def check_layers(model):
    """Refuses a model holding a layer of `UNSUPPORTED_LAYERS`, naming it."""
    for layer in model.layers:
        name = type(layer).__name__
        if name in UNSUPPORTED_LAYERS:
            raise TFLiteConversionError(
                f"layer {layer.name!r} ({name}) cannot go into a TFLite file: its string "
                f"operations are not TFLite built-in ops. Nearest supported alternative: "
                f"{UNSUPPORTED_LAYERS[name]}."
            )


def explain(model, text, options):
    """A TFLiteConversionError naming the layer(s) the converter choked on.

    Args:
        model: the model being converted.
        text: the converter's error message and captured log.
        options: the conversion options (for the mode).
    """
    ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)' op is neither a custom op nor a flex op", text)))
    layers = [l for l in model.layers if re.search(rf"[/\"']{re.escape(l.name)}/", text)]
    culprits = [l for l in layers if type(l).__name__ not in ("InputLayer",)] or layers
    if ops:
        where = ", ".join(f"{l.name!r} ({type(l).__name__})" for l in culprits[-2:]) or "a layer"
        suggestion = next(
            (UNSUPPORTED_LAYERS[type(l).__name__] for l in culprits if type(l).__name__ in UNSUPPORTED_LAYERS),
            "rebuild it from Dense, Conv1D, LSTM, GRU or Embedding layers, whose ops TFLite has",
        )
        return TFLiteConversionError(
            f"TFLite cannot convert layer {where}: it uses {', '.join(ops)}, which TFLite's "
            f"built-in op set lacks. Nearest supported alternative: {suggestion}. Or pass "
            "select_tf_ops=True to bundle TensorFlow ops (the app then needs the Flex delegate, "
            "several MB)."
        )
    first = next((line for line in text.splitlines() if "error" in line.lower()), text.strip()[:500])
    return TFLiteConversionError(
        f"The TFLite converter failed on model {model.name!r} in mode {options['mode']!r}: {first[:800]}"
    )
