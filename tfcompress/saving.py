"""Loading models from files, safely, whichever Keras wrote them.

Importing tfcompress registers, in tf_keras' global custom objects, every class
a pruned or quantization-aware model is made of (TFMOT's wrappers, schedules,
quantizers and configs, and tfcompress's own). After `import tfcompress`,
plain `tfcompress.keras.models.load_model(path)` loads them in `.keras`, `.h5`
and SavedModel formats.

`tfcompress.load_model(path)` does more:

- it reads files written by **Keras 3** (`.keras` and `.h5`) and converts the
  model to tf_keras (`tfcompress.as_tf_keras`);
- it treats the file as **untrusted input**: before anything is deserialized,
  the stored configuration is read as plain JSON and a model that holds code
  (a `Lambda` layer's bytecode, a Keras 3 serialized lambda, a custom class or
  function nobody registered, a module outside Keras, a TensorFlow op that
  reaches outside the model) is refused, naming the layer. tf_keras' own
  `.h5` and SavedModel loaders have no safe mode (they run a `Lambda`'s code
  while loading), and its `.keras` loader imports any module a configuration
  names. `safe_mode=False` is the opt-in for files you trust;
- pruned models get their `fit` hook back.
"""

import builtins
import contextlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile

from tfcompress._keras import as_tf_keras, keras, tfmot

__all__ = ["load_model", "custom_objects", "UnsafeModelError", "inspect_model_file"]


class UnsafeModelError(ValueError):
    """A model file holds code, and the caller has not said it trusts it."""


def custom_objects():
    """Every class needed to deserialize tfcompress and TFMOT models, by name."""
    from tfcompress import clustering, models, pruning, quantization

    objects = {}
    for mapping in tfmot.quantization.keras.quantize_scope().custom_objects:
        objects.update(mapping)
    objects.update(quantization.custom_objects())
    objects.update(pruning.custom_objects())
    objects.update(clustering.custom_objects())
    objects["CapVocabulary"] = models.CapVocabulary
    return objects


def register():
    """Adds `custom_objects()` to tf_keras' global custom objects (idempotent)."""
    registry = keras.utils.get_custom_objects()
    for name, obj in custom_objects().items():
        registry.setdefault(name, obj)


# --------------------------------------------------------------------------
# What a file is, read without deserializing anything
# --------------------------------------------------------------------------


def _keras3_archive(path):
    """True if `path` is a `.keras` zip written by Keras 3."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError):
        return False
    return str(meta.get("keras_version", "")).startswith("3.")


def _is_hdf5(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _h5_attrs(path):
    import h5py

    with h5py.File(path, "r") as f:
        attrs = {}
        for key in ("keras_version", "backend", "model_config", "training_config"):
            value = f.attrs.get(key)
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            attrs[key] = value
        return attrs


def _format_of(path):
    """("savedmodel" | "keras" | "h5", keras major version "2" | "3")."""
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ValueError(
                f"load_model: {path!r} is a folder but not a SavedModel (no saved_model.pb). "
                "tfcompress reads .keras and .h5 files and SavedModel folders."
            )
        return "savedmodel", "2"
    if zipfile.is_zipfile(path):
        return "keras", "3" if _keras3_archive(path) else "2"
    if _is_hdf5(path):
        version = str(_h5_attrs(path).get("keras_version") or "")
        return "h5", "3" if version.startswith("3.") else "2"
    raise ValueError(
        f"load_model: {path!r} is neither a .keras archive nor an HDF5 file; "
        "tfcompress reads .keras and .h5 files and SavedModel folders."
    )


def _stored_configs(path, fmt):
    """[(label, JSON object)] of the configuration(s) a model file stores."""
    if fmt == "keras":
        with zipfile.ZipFile(path) as z:
            try:
                return [("config.json", json.loads(z.read("config.json")))]
            except KeyError:
                raise ValueError(
                    f"load_model: {path!r} is a zip archive without config.json, not a Keras "
                    "model. tfcompress reads .keras and .h5 files and SavedModel folders."
                ) from None
    if fmt == "h5":
        attrs = _h5_attrs(path)
        if not attrs.get("model_config"):
            raise ValueError(
                f"load_model: {path!r} is an HDF5 file without a model configuration: it holds "
                "weights only (model.save_weights). Fix: build the model in code and call "
                "model.load_weights(path), or save the whole model with model.save()."
            )
        out = [("model_config", json.loads(attrs["model_config"]))]
        if attrs.get("training_config"):
            out.append(("training_config", json.loads(attrs["training_config"])))
        return out
    metadata_path = os.path.join(path, "keras_metadata.pb")
    if not os.path.exists(metadata_path):
        raise ValueError(
            f"load_model: the SavedModel {path!r} has no keras_metadata.pb, so it is not a "
            "Keras model (it was written by tf.saved_model.save or Keras 3's model.export, "
            "which keep only the serving function). Fix: load the .keras or .h5 file the "
            "model was saved to with model.save()."
        )
    from tf_keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    with open(metadata_path, "rb") as f:
        metadata.ParseFromString(f.read())
    out = []
    for node in metadata.nodes:
        if node.identifier.startswith("_tf_keras_metric"):
            continue  # metrics are revived without their code
        try:
            out.append((f"keras_metadata.pb node {node.node_path}", json.loads(node.metadata)))
        except ValueError:
            continue
    return out


# tf ops a TFOpLambda layer may name: array and math functions. A TFOpLambda
# stores the *name* of a TensorFlow function (written by `x + 1`, `tf.reshape`
# ... in a functional tf_keras model), not code, but names such as
# `io.write_file` or `py_function` would still reach outside the model.
_TF_OP_PREFIXES = ("math.", "nn.", "__operators__.", "linalg.", "signal.", "random.")
_TF_OP_DENIED = {"print", "py_function", "numpy_function", "py_func", "load_op_library", "load_library"}

_SPECIAL_CLASS_NAMES = {
    "__tuple__", "__keras_tensor__", "__tensor__", "__numpy__", "__typespec__", "__bytes__",
    "__ellipsis__", "__slice__", "__list__", "function", "Functional", "Sequential", "Model",
    "DTypePolicy", "FloatDTypePolicy", "Policy", "DTypePolicyMap", "TensorShape", "TensorSpec",
}

# Packages whose classes a file may name. tf_keras' `.keras` loader imports
# whatever module a configuration names and takes the attribute it names, so
# anything else (`os`, `builtins`, `tensorflow.io` ...) is refused: a file
# could otherwise make `os.system` an activation function.
_TRUSTED_MODULES = ("keras", "tf_keras", "tensorflow_model_optimization", "tfcompress")


def _known_class_names():
    import keras as keras3

    names = set(_SPECIAL_CLASS_NAMES)
    for module in (
        keras.layers, keras.initializers, keras.regularizers, keras.constraints, keras.optimizers,
        keras.losses, keras.metrics, keras.activations, keras.mixed_precision, keras.models,
        keras3.layers, keras3.initializers, keras3.regularizers, keras3.constraints, keras3.optimizers,
        keras3.losses, keras3.metrics, keras3.activations, keras3.dtype_policies, keras3.models,
    ):
        names.update(n for n in dir(module) if not n.startswith("_"))
    for legacy in ("legacy", "experimental", "schedules"):
        sub = getattr(keras.optimizers, legacy, None)
        if sub is not None:
            names.update(n for n in dir(sub) if not n.startswith("_"))
    names.update(n for n in dir(keras3.optimizers.schedules) if not n.startswith("_"))
    names.update(custom_objects())
    names.update(keras.utils.get_custom_objects())
    names.update(keras3.saving.get_custom_objects())
    for mapping in tfmot.quantization.keras.quantize_scope().custom_objects:
        names.update(mapping)
    names.update(("PruneLowMagnitude", "QuantizeWrapperV2", "QuantizeWrapper", "QuantizeLayer", "QuantizeAnnotate"))
    # registered names may carry a package prefix ("tfcompress>CapVocabulary")
    names.update(n.split(">", 1)[-1] for n in list(names) if ">" in n)
    # Keras 3 writes mask propagation (and other keras.ops calls) into a
    # functional model's configuration as Operation classes.
    import importlib
    import pkgutil

    from keras.src import ops as ops_package
    from keras.src.ops.operation import Operation

    for info in pkgutil.iter_modules(ops_package.__path__):
        if info.name.endswith("_test") or info.ispkg:
            continue
        try:
            module = importlib.import_module(f"keras.src.ops.{info.name}")
        except ImportError:  # pragma: no cover - optional backends
            continue
        names.update(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Operation))
    return names


def inspect_model_file(path):
    """Reads what a model file says about itself, without running anything.

    Returns:
        A dict: `format` (`"keras"`, `"h5"`, `"savedmodel"`), `keras` (`"2"`
        for tf_keras / Keras 2, `"3"` for Keras 3) and `code`: a list of
        `(layer name, class name, what)` for each place that would run code
        from the file (empty for a file that is only configuration and
        weights).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_model: no file or folder at {path!r}.")
    fmt, major = _format_of(path)
    known = _known_class_names()
    found = []

    def note(owner, class_name, what):
        entry = (owner or "?", class_name, what)
        if entry not in found:
            found.append(entry)

    def walk(node, owner, in_model):
        if isinstance(node, list):
            for item in node:
                walk(item, owner, in_model)
            return
        if not isinstance(node, dict):
            return
        class_name = node.get("class_name")
        config = node.get("config") if isinstance(node.get("config"), dict) else {}
        name = config.get("name") if isinstance(config.get("name"), str) else None
        if isinstance(class_name, str):
            here = name or owner
            module = node.get("module")
            registered = node.get("registered_name")
            if class_name == "Lambda":
                note(here, "Lambda", "its function is stored as Python code")
            elif class_name == "__lambda__":
                note(owner, "lambda", "a Python lambda is stored as bytecode")
            elif class_name in ("TFOpLambda", "SlicingOpLambda"):
                fn = str(config.get("function", ""))
                top_level = "." not in fn
                if (top_level and fn in _TF_OP_DENIED) or (not top_level and not fn.startswith(_TF_OP_PREFIXES)):
                    note(here, class_name, f"it calls tf.{fn}, which reaches outside the model")
            elif module == "builtins":
                # tf_keras writes Keras' built-in functions (and a user's own, by name) as module
                # "builtins" and looks the name up in Python's builtins module last: a Keras
                # function or an unknown name is harmless, a Python built-in (exec, open) is not.
                fn = node.get("config")
                if not isinstance(fn, str) or (fn not in known and hasattr(builtins, fn)):
                    note(here, class_name, f"it names the Python built-in {fn!r}, not a Keras function")
            elif in_model or (isinstance(module, str) and module.split(".")[0] not in _TRUSTED_MODULES):
                # A class found in Keras', TFMOT's or our own package is their code, not the file's.
                in_trusted_package = isinstance(module, str) and module.split(".")[0] in _TRUSTED_MODULES
                unregistered = isinstance(registered, str) and registered and registered != class_name
                if unregistered and registered in known:
                    pass
                elif unregistered or not (in_trusted_package or (module is None and class_name in known)):
                    where = f" from module {module!r}" if isinstance(module, str) else ""
                    note(here, class_name, f"it is a custom object{where} that is not registered with Keras")
            owner = here
        if node.get("function_type") == "lambda":
            note(owner, "Lambda", "its function is stored as Python code")
        for key, value in node.items():
            if key == "inbound_nodes":
                continue
            # compile and build settings are not layers; with compile=False
            # (Keras 3 files) they are not deserialized at all.
            walk(value, owner, in_model and key not in ("compile_config", "build_config"))

    for label, config in _stored_configs(path, fmt):
        if label.startswith("keras_metadata.pb"):
            # SavedModel metadata: class names are checked in the layer's
            # own configuration only (the rest holds TypeSpecs, shapes ...);
            # code is looked for everywhere.
            walk({k: v for k, v in config.items() if k in ("class_name", "config", "name")}, None, True)
            walk(config, None, False)
        else:
            walk(config, None, in_model=label != "training_config")
    return {"format": fmt, "keras": major, "code": found}


def _refuse(path, code):
    places = "; ".join(f"layer {layer!r} ({cls}): {what}" for layer, cls, what in code[:5])
    more = f" (and {len(code) - 5} more)" if len(code) > 5 else ""
    advice = []
    if any("custom object" in what for _, _, what in code):
        advice.append(
            "for a custom class or function of your own, import the module that registers it "
            "(keras.saving.register_keras_serializable) before loading"
        )
    if any(cls in ("Lambda", "lambda") for _, cls, _ in code):
        advice.append("better still, replace Lambda layers with built-in layers, so the file is configuration only")
    raise UnsafeModelError(
        f"{path}: this model file holds code that would run while it loads: {places}{more}. "
        "A model file from elsewhere is untrusted input, so tfcompress does not run it. "
        "Fix: if you trust where the file comes from, opt in with "
        "tfcompress.load_model(path, safe_mode=False) (command line: --trust-model-code; "
        "recipe: model.trust_code: true)" + "".join(f"; {a}" for a in advice) + "."
    )


@contextlib.contextmanager
def _with_suffix(path, suffixes, suffix):
    """`path`, or a temporary link to it ending in `suffix` (Keras 3 picks its
    reader by the file name)."""
    if path.endswith(suffixes):
        yield path
        return
    folder = tempfile.mkdtemp(prefix="tfcompress-load-")
    try:
        link = os.path.join(folder, "model" + suffix)
        try:
            os.symlink(os.path.abspath(path), link)
        except OSError:
            shutil.copyfile(path, link)
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_model(path, compile=True, safe_mode=True):
    """Loads a model saved as `.keras`, `.h5`/`.hdf5` or a SavedModel folder,
    by tf_keras or Keras 3.

    The file is untrusted input: its stored configuration is checked before
    anything is deserialized, and a file that holds code (a `Lambda` layer,
    a serialized Python lambda, a custom class nobody registered) is refused
    with `UnsafeModelError`, naming the layer, unless `safe_mode=False`.

    Pruned and quantization-aware models need no custom objects; pruned
    models get their `fit` hook back (`UpdatePruningStep` added when left
    out). A file written by Keras 3 is loaded with Keras 3 and converted to
    tf_keras (`tfcompress.as_tf_keras`); it comes back uncompiled (compile
    it with your optimizer, as after `quantize`).

    Args:
        path: the file or SavedModel folder.
        compile: restore the training configuration too (tf_keras files).
        safe_mode: refuse files that hold code. `False` runs it: only for
            files you trust.

    Returns:
        A tf_keras model.

    Raises:
        FileNotFoundError: nothing at `path`.
        UnsafeModelError: the file holds code and `safe_mode` is on.
        ValueError: the file is not a Keras model (the message says which
            formats are read).
        tfcompress.ConversionError: a Keras 3 model with a layer tfcompress
            cannot translate to tf_keras.
    """
    from tfcompress import pruning

    path = os.fspath(path)
    info = inspect_model_file(path)
    if info["code"] and safe_mode:
        _refuse(path, info["code"])
    if info["keras"] == "3":
        import keras as keras3

        suffixes, suffix = ((".keras",), ".keras") if info["format"] == "keras" else ((".h5", ".hdf5"), ".h5")
        with _with_suffix(path, suffixes, suffix) as readable:
            k3_model = keras3.saving.load_model(readable, compile=False, safe_mode=safe_mode)
        return as_tf_keras(k3_model)
    register()
    kwargs = {"compile": compile}
    if info["format"] == "keras":
        kwargs["safe_mode"] = safe_mode
    try:
        model = keras.models.load_model(path, **kwargs)
    except (ValueError, TypeError) as err:
        # The training configuration names a loss or metric nobody registered
        # (a user's own function): the model itself is still wanted.
        if not compile or not any(s in str(err) for s in ("Unknown", "Could not locate", "could not be deserialized")):
            raise
        warnings.warn(
            f"load_model: {path} was loaded without its training configuration ({' '.join(str(err).split())[:200]}). "
            "Compile the model with your loss and optimizer before fitting it.",
            UserWarning,
            stacklevel=2,
        )
        model = keras.models.load_model(path, **{**kwargs, "compile": False})
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"load_model: {path!r} did not load as a Keras model (got {type(model).__name__})."
        )
    if pruning.is_pruned(model):
        pruning.install_fit_hook(model)
    return model
