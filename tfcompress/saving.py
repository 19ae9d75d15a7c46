"""Saving and loading compressed models without naming custom objects.

Importing tfcompress registers, in tf_keras' global custom objects, every class
a pruned or quantization-aware model is made of (TFMOT's wrappers, schedules,
quantizers and configs, and tfcompress's own). After `import tfcompress`,
plain `tfcompress.keras.models.load_model(path)` loads them in `.keras`, `.h5`
and SavedModel formats.

`tfcompress.load_model(path)` does the same and more: it re-attaches the
pruning step hook to pruned models, and loads a `.keras` file written by
Keras 3 by converting it to tf_keras.
"""

import json
import os
import zipfile

from tfcompress._keras import as_tf_keras, keras, tfmot

__all__ = ["load_model", "custom_objects"]


def custom_objects():
    """Every class needed to deserialize tfcompress and TFMOT models, by name."""
    from tfcompress import models, pruning, quantization

    objects = {}
    for mapping in tfmot.quantization.keras.quantize_scope().custom_objects:
        objects.update(mapping)
    objects.update(quantization._custom_objects())
    objects.update(
        {
            "PruneLowMagnitude": pruning._TFMOTWrapper,
            "ConstantSparsity": tfmot.sparsity.keras.ConstantSparsity,
            "PolynomialDecay": tfmot.sparsity.keras.PolynomialDecay,
            "PrunableBidirectional": pruning.PrunableBidirectional,
            "tfcompress>PrunableBidirectional": pruning.PrunableBidirectional,
            "tfcompress>PruneLowMagnitude": pruning.PruneLowMagnitude,
            "CapVocabulary": models.CapVocabulary,
        }
    )
    return objects


def register():
    """Adds `custom_objects()` to tf_keras' global custom objects (idempotent)."""
    registry = keras.utils.get_custom_objects()
    for name, obj in custom_objects().items():
        registry.setdefault(name, obj)


def _keras3_archive(path):
    """True if `path` is a `.keras` zip written by Keras 3."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError):
        return False
    return str(meta.get("keras_version", "")).startswith("3.")


def load_model(path, compile=True):
    """Loads a model saved as `.keras`, `.h5` or a SavedModel folder.

    Pruned and quantization-aware models need no custom objects; pruned
    models get their `fit` hook back (`UpdatePruningStep` added when left
    out). A `.keras` file written by Keras 3 is loaded with Keras 3 and
    converted to tf_keras (`tfcompress.as_tf_keras`).

    Args:
        path: the file or SavedModel folder.
        compile: restore the training configuration too.

    Returns:
        A tf_keras model.

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: the file is not a Keras model (the message says which
            formats are read).
    """
    from tfcompress import pruning

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_model: no file or folder at {path!r}.")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ValueError(
            f"load_model: {path!r} is a folder but not a SavedModel (no saved_model.pb). "
            "tfcompress reads .keras and .h5 files and SavedModel folders."
        )
    if path.endswith(".keras") and _keras3_archive(path):
        import keras as keras3

        return as_tf_keras(keras3.saving.load_model(path, compile=False))
    register()
    try:
        model = keras.models.load_model(path, compile=compile)
    except (OSError, ValueError) as err:
        if os.path.isfile(path) and not (zipfile.is_zipfile(path) or _is_hdf5(path)):
            raise ValueError(
                f"load_model: {path!r} is neither a .keras archive nor an HDF5 file; "
                "tfcompress reads .keras and .h5 files and SavedModel folders."
            ) from err
        raise
    if pruning.is_pruned(model):
        pruning._install_fit_hook(model)
    return model


def _is_hdf5(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"
