"""Keras model -> `.tflite` file and its deployment files (`to_tflite`)."""

import contextlib
import dataclasses
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from tfcompress import _io, metrics
from tfcompress._keras import ensure_tf_keras, is_mixed_precision, rebuild_float32
from tfcompress._keras import predict as keras_predict
from tfcompress.export import forms
from tfcompress.export.errors import ConversionCrashed, TFLiteConversionError, VerificationError, check_layers, explain
from tfcompress.export.options import MODES, configure
from tfcompress.export.runtime import TFLiteModel

DEFAULT_MODE = "dynamic"

# With sparse="auto", a model with at least this fraction of zero weights is
# also converted with TFLite's sparse weight encoding.
SPARSE_AUTO_ZEROS = 0.3

# The share of verification examples on which the file must give the Keras
# model's class, per mode, unless verify_threshold= says otherwise.
VERIFY_THRESHOLDS = {"float32": 0.99, "float16": 0.99, "dynamic": 0.99, "int8": 0.98}
# An example on which the Keras model's own top two classes are this close
# in probability (a near-tie: 0.505 vs 0.495) counts as agreeing whichever
# of them the file picks; `exact_agreement` counts it as it falls.
VERIFY_TIE = 0.01


@dataclasses.dataclass
class ExportResult:
    """What `to_tflite` wrote.

    Attributes:
        path: the `.tflite` file.
        mode: the export mode.
        bytes, gzip_bytes: file size, raw and gzip -9.
        ops: the TFLite operators in the file.
        files: every file written (the .tflite, its JSON, vocabulary, ...).
        sparse_encoding: whether TFLite's sparse weight encoding was used.
        notes: what was done to the model on the way (stripping, rebuild...).
        encoder: the `TextEncoder` written beside the file (the one passed
            in, or the one taken out of a model's TextVectorization layer),
            or None.
        recurrent_form: how the recurrent layers went in ("unrolled", "loop",
            "fused"), None without recurrent layers.
        stateful: whether the file answers an input differently after
            another one (measured on a raw interpreter, no reset).
        verification: `{"examples", "agreement", "exact_agreement",
            "threshold", "max_abs_diff"}` from comparing the file with the
            Keras model (`agreement` counts Keras near-ties as agreeing), or
            None when it was not verified.
    """

    path: str
    mode: str
    bytes: int
    gzip_bytes: int
    ops: list
    files: list
    sparse_encoding: bool
    notes: list
    encoder: object = None
    recurrent_form: str = None
    stateful: bool = False
    verification: dict = None


def to_tflite(
    model,
    path,
    mode=DEFAULT_MODE,
    *,
    representative_data=None,
    calibration_samples=300,
    int8_io=False,
    sparse="auto",
    batch_size=1,
    seq_len=None,
    encoder=None,
    labels=None,
    vocabulary=None,
    keep_qat=False,
    qat_ranges="auto",
    select_tf_ops=False,
    quantizer="legacy",
    isolate="auto",
    timeout=900,
    recurrent="auto",
    verify="auto",
    verify_threshold=None,
    verify_samples=256,
    seed=0,
):
    """Converts a Keras model to a `.tflite` file, with its deployment files.

    Args:
        model: a tf_keras or Keras 3 model; pruned, QAT or mixed-precision
            models are handled (see the module docstring). A model that
            starts with a `TextVectorization` layer is split
            (`tfcompress.text.split_vectorizer`): the file reads token ids and
            the layer's vocabulary and rules are written beside it
            (`result.encoder`).
        path: the `.tflite` file to write (its folder is created).
        mode: one of `MODES`; default `DEFAULT_MODE`.
        representative_data: for `mode="int8"`: inputs to calibrate on
            (token-id array, list of arrays, `(x, y)` pair or dataset);
            `calibration_samples` examples are drawn from it at random.
        int8_io: with `mode="int8"`, make the output int8 (and float inputs
            int8); token-id inputs stay int32. Default: float outputs.
        sparse: TFLite's sparse weight encoding: `"auto"` tries it for models
            with at least 30% zero weights and keeps it only if the file is
            smaller; `True`/`False` force it.
        batch_size: the fixed batch size of the file (1 for phones).
        seq_len: input length when the model accepts any length; default the
            encoder's `max_len`.
        encoder: a `tfcompress.text.TextEncoder`; written beside the file
            as `NAME.vocab.txt` and `NAME.preprocessing.json`.
        labels: class names in the model's output order, stored in the JSON.
            Default: the class ids as names ("0", "1", ...), marked so in
            `labels_source`, unless `vocabulary` is given.
        vocabulary: for a model without an encoder whose outputs are a
            vocabulary's tokens (a character language model): a
            `tfcompress.text.Vocabulary`, written as `NAME.vocab.txt`.
        keep_qat: convert a QAT model with its fake-quant graph instead of
            stripping it (not recommended: its LSTM does not fuse).
        qat_ranges: for a QAT model in `mode="int8"`, whose activation
            ranges to write into the file (`tfcompress.export.ranges`):
            `True` the ranges the QAT model learned for its layers' outputs,
            `False` the converter's calibration on `representative_data`,
            `"auto"` (default) both, keeping the file that gives the QAT
            model's class on more of the verification sample (the
            calibrated one on a tie); the notes give both figures.
        select_tf_ops: allow TensorFlow ops TFLite lacks (needs the Flex
            delegate in the app).
        quantizer: for `mode="int8"`, `"legacy"` (default) or `"mlir"`, TF's
            default, which corrupts fused LSTMs in full int8 (BENCHMARKS.md).
            A stateless-form file the legacy quantizer leaves with a
            non-finite weight scale (the runtime refuses it) is converted
            again with `"mlir"`, and the notes say so.
        isolate: convert in a child process, which survives converter crashes
            and costs a few seconds. `"auto"` (default) isolates the
            conversions seen to crash (`mode="int8"`, `keep_qat=True`) and
            runs float32, float16 and dynamic conversions in this process.
        timeout: seconds an isolated conversion may take before it is
            stopped (`ConversionCrashed`, nothing written).
        recurrent: how LSTM/GRU/SimpleRNN layers go into the file
            (`tfcompress.export.forms`): `"auto"` (default) the stateless form
            measured best for the mode (a loop; unrolled for int8); `"unrolled"` or
            `"loop"` (stateless: the same input always gives the same output,
            with no reset); `"fused"`, TFLite's fused LSTM op, whose state
            carries over between invokes (for streaming; the app must reset
            the interpreter's variables between independent inputs). A
            stateless form that comes out stateful is an error.
        verify: compare the file with the Keras model before writing it:
            `"auto"` (default) on `representative_data` when given; inputs
            in any form `representative_data` takes, to verify on those;
            `False` to skip. Up to `verify_samples` examples are drawn.
        verify_threshold: the share of examples on which the file must give
            the Keras model's class (default `VERIFY_THRESHOLDS[mode]`: 0.99,
            0.98 for int8); an example the Keras model itself calls a tie
            (top two classes within `VERIFY_TIE` = 0.01 of probability)
            counts as agreeing. Below the threshold `VerificationError` lists
            the disagreeing examples and nothing is written.
        seed: for the calibration and verification samples.

    Returns:
        An `ExportResult`.

    Raises:
        TFLiteConversionError: a layer TFLite cannot represent (named, with the
            nearest supported alternative), or bad representative data.
        ConversionCrashed: the converter process died, or an isolated conversion
            ran past `timeout`; nothing was written.
        VerificationError: the file disagrees with the Keras model on more
            examples than `verify_threshold` allows; nothing was written.
        OSError: `path` cannot be written (checked before converting).
    """
    path = _check_arguments(path, mode, sparse, batch_size, quantizer, int8_io)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0. Received: timeout={timeout!r}.")
    threshold = _check_verify(verify, verify_threshold, verify_samples, recurrent, mode)
    if qat_ranges not in (True, False, "auto"):
        raise ValueError(f"qat_ranges must be True, False or 'auto'. Received: qat_ranges={qat_ranges!r}.")
    if isolate == "auto":
        isolate = mode == "int8" or keep_qat
    model, encoder, notes = _take_vectorizer(model, encoder, seq_len)
    reference = model  # what the file must answer like: the caller's model (its vectorizer split off)
    model = _prepare(model, keep_qat, notes)
    if mode != "int8" and not keep_qat and _is_qat(reference):
        # Only an int8 file computes the 8-bit activations a QAT model simulates; a
        # float32/float16/dynamic file computes the stripped model (weights baked).
        reference = model
    grid = _weight_grid(model, mode, notes)
    if seq_len is None and encoder is not None:
        seq_len = encoder.max_len
    specs = _input_specs(model, batch_size, seq_len)
    form = None
    if forms.recurrent_layers(model):
        form = forms.choose(recurrent, mode)
        model, note = forms.apply(model, form, specs)
        if note:
            notes.append(note)
    concrete = _concrete_function(model, specs)
    calibration = (
        _calibration_inputs(representative_data, specs, calibration_samples, seed) if mode == "int8" else None
    )
    if verify is False or (isinstance(verify, str) and representative_data is None):
        sample = None
    else:
        data = representative_data if isinstance(verify, str) or verify is True else verify
        if data is None:
            raise ValueError(
                "to_tflite: verify=True compares the file with the Keras model on data, and none was given. "
                "Fix: pass verify=your inputs (token ids, a list of arrays, an (x, y) pair or a dataset)."
            )
        sample = _sample_inputs(data, specs, verify_samples, seed + 1, "verify")
    options = {
        "mode": mode,
        "sparse": False,
        "int8_input": bool(int8_io and all(s.dtype.is_floating for s in specs)),
        "int8_output": bool(int8_io),
        "select_tf_ops": bool(select_tf_ops),
        "quantizer": quantizer,
    }

    def convert(opts):
        if isolate:
            return _convert_isolated(model, concrete, opts, calibration, timeout)
        return _convert_in_process(model, concrete, opts, calibration)

    with _empty_channels_filled(model, mode, notes):
        flat, used_sparse = _convert_smallest(model, convert, options, sparse, notes, fallback=form != "fused")
    stateful = forms.keeps_state(TFLiteModel(flat), flat)
    if stateful and form != "fused":
        raise TFLiteConversionError(
            f"to_tflite: the {mode} file of model {model.name!r} (recurrent form {form!r}) answers the same input "
            "differently after another input: it keeps state between invokes, which a stateless form must "
            "not. Nothing was written. Fix: pass recurrent='fused' and reset the interpreter's variables "
            "before each invoke, or report the model's layers."
        )
    expected = None  # the Keras model's outputs on the verification sample, once computed
    if mode == "int8" and not keep_qat and _is_qat(reference):
        choice = sample if sample is not None else _sample_inputs(representative_data, specs, verify_samples, seed + 1, "representative_data")
        if qat_ranges == "auto" and sample is not None:
            expected = _keras_outputs(reference, sample[0])
        flat = _with_qat_ranges(flat, reference, model.name, qat_ranges, choice, notes, expected)
    verification = None
    if sample is not None:
        verification = _verify(flat, reference, sample, threshold, mode, model.name, expected)
        notes.append(
            f"verified: the file gives the Keras model's class on {verification['agreement']:.2%} of "
            f"{verification['examples']} examples (threshold {threshold:.0%})"
        )
    meta = _metadata(model, path, flat, mode, used_sparse, labels, vocabulary, grid, notes, form, stateful, verification)
    return ExportResult(
        path=path,
        mode=mode,
        bytes=len(flat),
        gzip_bytes=len(gzip.compress(flat, 9)),
        ops=meta["ops"],
        files=_write(path, flat, meta, encoder, vocabulary),
        sparse_encoding=used_sparse,
        notes=notes,
        encoder=encoder,
        recurrent_form=form,
        stateful=stateful,
        verification=verification,
    )


def _with_qat_ranges(calibrated, qat_model, name, qat_ranges, sample, notes, expected=None):
    """The int8 file with the QAT model's learned output ranges, or the
    calibrated one, as `qat_ranges` asks (see `to_tflite`); says which in
    `notes`. `expected`: the QAT model's outputs on the sample, when known."""
    from tfcompress.export import ranges

    if qat_ranges is False:
        notes.append("activation ranges calibrated by the converter (qat_ranges=False)")
        return calibrated
    learned, used, skipped = ranges.apply(calibrated, qat_model, name)
    left = "; ".join(f"{layer}: {why}" for layer, why in skipped.items())
    if not used:
        notes.append("activation ranges calibrated by the converter" + (f" (QAT ranges not written: {left})" if left else ""))
        return calibrated
    problem = _runtime_problem(learned)
    if problem is not None:
        notes.append(f"activation ranges calibrated by the converter (with the QAT-learned ranges of {used} the runtime refuses the file: {problem})")
        return calibrated
    if qat_ranges is True:
        notes.append(f"QAT-learned output ranges of {used} written into the file" + (f"; left calibrated: {left}" if left else ""))
        return learned
    inputs, _ = sample
    if expected is None:
        expected = _keras_outputs(qat_model, inputs)
    theirs = metrics.predicted_classes(expected)
    agreement = [
        float((metrics.predicted_classes(_file_outputs(flat, inputs, expected.shape)) == theirs).mean())
        for flat in (calibrated, learned)
    ]
    keep = learned if agreement[1] > agreement[0] else calibrated
    notes.append(
        f"activation ranges: the QAT model's class on {agreement[1]:.2%} of {len(theirs)} examples with its learned "
        f"output ranges of {used}, {agreement[0]:.2%} calibrated by the converter; kept "
        + ("the learned ranges" if keep is learned else "the calibrated ones")
        + (f" (not written: {left})" if left else "")
    )
    return keep


def _is_qat(model):
    from tfcompress import quantization

    return quantization.is_quantized(model)


def _keras_margin(expected, theirs, mine):
    """Per example, how much more probable the Keras model finds its own
    class than the file's class (0 where they agree)."""
    if expected.ndim == 2 and expected.shape[1] > 1:
        rows = np.arange(len(expected))
        return expected[rows, theirs] - expected[rows, mine]
    return np.where(mine == theirs, 0.0, 2 * np.abs(expected.reshape(len(expected), -1)[:, 0] - 0.5))


def _check_verify(verify, threshold, samples, recurrent, mode):
    """Checks the recurrent= and verify*= arguments; returns the threshold."""
    if recurrent not in forms.FORMS:
        raise ValueError(f"recurrent must be one of {forms.FORMS}. Received: recurrent={recurrent!r}.")
    if isinstance(verify, str) and verify != "auto":
        raise ValueError(
            f"verify must be 'auto', True, False or data to verify on. Received: verify={verify!r}."
        )
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1
    ):
        raise ValueError(
            f"verify_threshold is a share of examples in (0, 1], e.g. 0.99. Received: verify_threshold={threshold!r}."
        )
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"verify_samples must be a positive integer. Received: verify_samples={samples!r}.")
    return VERIFY_THRESHOLDS[mode] if threshold is None and mode in VERIFY_THRESHOLDS else threshold


def _keras_outputs(reference, inputs):
    """The Keras model's (first) output on the sample's inputs, float64."""
    expected = keras_predict(reference, inputs if len(inputs) > 1 else inputs[0], batch_size=256)
    return np.asarray(expected[0] if isinstance(expected, (list, tuple)) else expected, np.float64)


def _file_outputs(flat, inputs, shape):
    """The file's (first) output on the sample's inputs, float64, shaped like the Keras one."""
    got = TFLiteModel(flat).predict(*inputs)
    return np.asarray(got[0] if isinstance(got, list) else got, np.float64).reshape(shape)


def _verify(flat, reference, sample, threshold, mode, name, expected=None):
    """Runs the file and the Keras model on the sample (`expected`: the Keras
    outputs, when already computed); raises `VerificationError` below the
    threshold, else returns the figures."""
    inputs, index = sample
    if expected is None:
        expected = _keras_outputs(reference, inputs)
    got = _file_outputs(flat, inputs, expected.shape)
    mine, theirs = metrics.predicted_classes(got), metrics.predicted_classes(expected)
    tie = _keras_margin(expected, theirs, mine) <= VERIFY_TIE  # the Keras model itself is undecided
    agreement = float(((mine == theirs) | tie).mean())
    result = {
        "examples": len(index),
        "agreement": agreement,
        "exact_agreement": float((mine == theirs).mean()),
        "threshold": float(threshold),
        "max_abs_diff": float(np.abs(got - expected).max()),
    }
    if agreement >= threshold:
        return result
    wrong = np.flatnonzero((mine != theirs) & ~tie)
    listed = []
    for i in wrong:
        entry = {"index": int(index[i]), "keras_class": int(theirs[i]), "file_class": int(mine[i])}
        if expected.ndim == 2 and expected.shape[1] > 1:
            entry["keras_probabilities"] = [float(expected[i, theirs[i]]), float(expected[i, mine[i]])]
            entry["file_probabilities"] = [float(got[i, theirs[i]]), float(got[i, mine[i]])]
        else:
            entry["keras_output"], entry["file_output"] = float(expected[i].ravel()[0]), float(got[i].ravel()[0])
        listed.append(entry)
    shown = "; ".join(
        f"#{e['index']}: Keras {e['keras_class']}, file {e['file_class']}"
        + (
            f" (Keras p={e['keras_probabilities'][0]:.3f} vs {e['keras_probabilities'][1]:.3f}, file "
            f"{e['file_probabilities'][0]:.3f} vs {e['file_probabilities'][1]:.3f})"
            if "keras_probabilities" in e
            else f" (outputs {e['keras_output']:.3f} vs {e['file_output']:.3f})"
        )
        for e in listed[:10]
    )
    more = f" and {len(listed) - 10} more" if len(listed) > 10 else ""
    hint = (
        "more calibration_samples=, a QAT model, or mode='dynamic'"
        if mode == "int8"
        else "mode='float16' or 'float32'"
    )
    raise VerificationError(
        f"to_tflite: the {mode} file of model {name!r} gives the Keras model's class on {agreement:.2%} of "
        f"{len(index)} verification examples, below the threshold of {threshold:.2%}. Disagreeing examples "
        f"(index in the data passed): {shown}{more}. Nothing was written. Fix: {hint}; or, if these "
        "examples are near-ties you accept, a lower verify_threshold= (verify=False skips the check).",
        agreement,
        float(threshold),
        listed,
    )


def _check_arguments(path, mode, sparse, batch_size, quantizer, int8_io):
    """Refuses bad arguments before any work; returns `path` as a string."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}.")
    if sparse not in ("auto", True, False):
        raise ValueError(f"sparse must be 'auto', True or False. Received: sparse={sparse!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}.")
    if quantizer not in ("legacy", "mlir"):
        raise ValueError(f"quantizer must be 'legacy' or 'mlir'. Received: quantizer={quantizer!r}.")
    if int8_io and mode != "int8":
        raise ValueError(f"int8_io=True needs mode='int8'. Received: mode={mode!r}.")
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"to_tflite writes a .tflite file; the path must end in .tflite. Received: {path!r}.")
    _io.check_writable_dir(path, "TFLite")
    return path


def _take_vectorizer(model, encoder, seq_len):
    """Splits off a leading TextVectorization layer: (model, encoder, notes)."""
    from tfcompress.text.keras_compat import find_vectorizer, split_vectorizer

    vectorizer = find_vectorizer(model)
    if vectorizer is None:
        return model, encoder, []
    inner, model = split_vectorizer(model, max_len=seq_len or (encoder.max_len if encoder is not None else None))
    if encoder is not None and encoder != inner:
        raise ValueError(
            f"to_tflite: the model has its own TextVectorization layer {vectorizer.name!r}, and a different "
            "encoder was passed. Fix: leave encoder= out; the layer's vocabulary and rules are written "
            "beside the file."
        )
    note = (
        f"TextVectorization {vectorizer.name!r} taken out of the model (its string ops are not TFLite "
        "built-ins): the file reads int32 token ids; NAME.vocab.txt + NAME.preprocessing.json give the same ids"
    )
    return model, inner, [note]


def _prepare(model, keep_qat, notes):
    """The plain float tf_keras model to convert; says what was done in `notes`."""
    from tfcompress import pruning, quantization

    model = ensure_tf_keras(model, caller="to_tflite")
    if pruning.is_pruned(model):
        model = pruning.strip(model)
        notes.append("pruning wrappers stripped, masks applied")
    if quantization.is_quantized(model) and not keep_qat:
        model = quantization.strip(model)
        notes.append(
            "QAT wrappers stripped: weights baked to their quantized values (a QAT graph converts to an "
            "unfused LSTM loop)"
        )
    if is_mixed_precision(model):
        model = rebuild_float32(model)
        notes.append("rebuilt in float32 from a mixed-precision model")
    check_layers(model)
    return model


def _weight_grid(model, mode, notes):
    """The metadata entry (and a note) for a model whose weights sit on a grid
    of fewer than 128 values (QAT with bits < 8); None otherwise."""
    most = 0
    for w in model.weights:
        if len(w.shape) >= 2:
            most = max(most, len(np.unique(w.numpy())))
            if most > 255:
                return None
    if not most or most > 127:
        return None
    bits = max(1, int(np.ceil(np.log2(most + 1))))
    stored = {"float32": "32-bit floats", "float16": "16-bit floats"}.get(mode, "8-bit integers")
    notes.append(
        f"weights take at most {most} distinct values per tensor (a {bits}-bit grid); the file stores "
        f"them as {stored}, since TFLite has no lower-bit storage for these ops: the raw size is that "
        "of the mode, and the fewer values show in the gzip size"
    )
    return {"max_distinct_values": most, "bits": bits, "stored_as": stored}


def _input_specs(model, batch_size, seq_len):
    specs = []
    for tensor, layer in zip(model.inputs, model._input_layers):  # noqa: SLF001
        shape = list(tensor.shape)
        shape[0] = batch_size
        if None in shape[1:]:
            if seq_len is None or len(shape) < 2:
                raise ValueError(
                    f"to_tflite: input {layer.name!r} of model {model.name!r} has shape "
                    f"{tuple(tensor.shape)}; TFLite needs fixed sizes (a dynamic length "
                    "stops LSTMs converting). Fix: pass seq_len=... (e.g. encoder=your "
                    "TextEncoder, whose max_len is used), or build the model with a fixed length."
                )
            shape[1] = seq_len
            if None in shape[2:]:
                raise ValueError(
                    f"to_tflite: input {layer.name!r} has unknown inner dimensions {tuple(tensor.shape)}."
                )
        specs.append(tf.TensorSpec(shape, tensor.dtype, name=layer.name))
    return specs


def _concrete_function(model, specs):
    names = [l.name for l in model.output_layers] if hasattr(model, "output_layers") else None

    @tf.function(autograph=False)
    def serve(*args):
        outputs = model(list(args) if len(args) > 1 else args[0], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        keys = names if names and len(names) == len(outputs) else [f"output_{i}" for i in range(len(outputs))]
        return dict(zip(keys, outputs))

    return serve.get_concrete_function(*specs)


def _calibration_inputs(data, specs, count, seed):
    """Representative data -> one array per input, shaped (samples, *spec.shape)."""
    if data is None:
        raise ValueError(
            "mode='int8' calibrates activation ranges on a sample of real inputs. Fix: pass "
            "representative_data= your training inputs (an array of token ids, a list of "
            "arrays for several inputs, an (x, y) pair, or a tf.data.Dataset)."
        )
    chosen, _ = _sample_inputs(data, specs, count, seed, "representative_data")
    batch = specs[0].shape[0]
    out = []
    for array, spec in zip(chosen, specs):
        usable = (len(array) // batch) * batch or batch
        if len(array) < batch:
            array = np.concatenate([array] * (-(-batch // len(array))))[:batch]
        out.append(array[:usable].reshape((-1,) + tuple(spec.shape)))
    return out


def _sample_inputs(data, specs, count, seed, argument):
    """Inputs in any accepted form -> (one array of up to `count` examples per
    input, each example shaped like the spec without its batch axis; the
    indices of the chosen examples in the data)."""
    if isinstance(data, tf.data.Dataset):
        xs = []
        for element in data:
            element = element[0] if isinstance(element, (tuple, list)) and len(element) == 2 and len(specs) == 1 else element
            arrays = [np.asarray(e) for e in (element if isinstance(element, (tuple, list)) else [element])]
            if arrays[0].ndim == len(specs[0].shape) - 1:  # unbatched element
                arrays = [a[None] for a in arrays]
            xs.append(arrays)
            if sum(len(x[0]) for x in xs) >= 10 * count:
                break
        if not xs:
            raise ValueError(f"{argument} is an empty dataset.")
        data = [np.concatenate([x[i] for x in xs]) for i in range(len(xs[0]))]
    elif isinstance(data, tuple) and len(data) == 2 and len(specs) == 1:
        data = [np.asarray(data[0])]
    elif isinstance(data, np.ndarray) or not isinstance(data, (list, tuple)):
        data = [np.asarray(data)]
    else:
        data = [np.asarray(d) for d in data]
    if len(data) != len(specs):
        raise ValueError(
            f"{argument} has {len(data)} input array(s); the model has {len(specs)} input(s)."
        )
    n = len(data[0])
    if n == 0 or any(len(array) != n for array in data):
        raise ValueError(
            f"{argument} has {[len(a) for a in data]} example(s) per input; it needs the same number (at "
            "least one, a few hundred recommended) for every input. Fix: pass real inputs."
        )
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(count, n), replace=False))
    out = []
    for array, spec in zip(data, specs):
        want = tuple(spec.shape[1:])
        if tuple(array.shape[1:]) != want:
            raise ValueError(
                f"{argument} for input {spec.name!r} has examples of shape "
                f"{tuple(array.shape[1:])}, but the model takes {want} (full shape "
                f"{tuple(spec.shape)}, dtype {spec.dtype.name}). Fix: encode with the same "
                "max_len as the model, or pass seq_len= to match your data."
            )
        if spec.dtype.is_integer and array.dtype.kind not in "iu":
            raise ValueError(
                f"{argument} for input {spec.name!r} is {array.dtype}, but the model "
                f"takes {spec.dtype.name} token ids. Fix: pass the encoded integer ids "
                "(TextEncoder output), not text or floats."
            )
        if spec.dtype.is_floating and array.dtype.kind != "f":
            raise ValueError(
                f"{argument} for input {spec.name!r} is {array.dtype}; the model takes "
                f"{spec.dtype.name}."
            )
        out.append(array[idx].astype(spec.dtype.as_numpy_dtype))
    return out, idx


def _convert_in_process(model, concrete, options, calibration):
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], _variables_of(model))
    configure(converter, options, calibration)
    with _captured_stderr() as captured:
        try:
            return converter.convert()
        except Exception as err:  # noqa: BLE001 - explained below
            raise explain(model, f"{err}\n{captured.read()}", options) from None


class _captured_stderr:
    """Captures file descriptor 2 (the converter's C++ chatter) into a temp file."""

    def __enter__(self):
        self.file = tempfile.TemporaryFile(mode="w+b")
        sys.stderr.flush()
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def read(self):
        os.dup2(self.saved, 2)
        self.file.seek(0)
        return self.file.read().decode("utf-8", "replace")

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.close()


def _variables_of(model):
    """A `tf.Module` holding only the model's variables, for the converter to
    save the serving function with.

    The converter writes its input to a SavedModel first; given the Keras
    model itself, it saves it the Keras way, tracing every layer's call
    functions: 12 s of a 13 s conversion of a two-layer LSTM here, for the
    same file (the serving function alone needs the variables).
    """
    holder = tf.Module()
    holder.variables_of_model = list(model.variables)
    return holder


def _convert_isolated(model, concrete, options, calibration, timeout):
    with tempfile.TemporaryDirectory(prefix="tfcompress-convert-") as tmp:
        module = _variables_of(model)
        saved = os.path.join(tmp, "saved_model")
        with _captured_stderr():
            tf.saved_model.save(module, saved, signatures={"serving_default": concrete})
        request = {
            "saved_model": saved,
            "output": os.path.join(tmp, "model.tflite"),
            "error": os.path.join(tmp, "error.json"),
            "options": options,
            "representative": None,
        }
        if calibration is not None:
            request["representative"] = os.path.join(tmp, "calibration.npz")
            np.savez(request["representative"], **{f"input_{i}": a for i, a in enumerate(calibration)})
        with open(os.path.join(tmp, "request.json"), "w") as f:
            json.dump(request, f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "tfcompress.export.worker", os.path.join(tmp, "request.json")],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ConversionCrashed(
                f"The TFLite converter did not finish converting model {model.name!r} in mode "
                f"{options['mode']!r} within {timeout:g} s; it was stopped and no file was written. Fix: "
                "pass a longer timeout= (large models convert slowly on small machines), or try "
                "mode='dynamic'."
            ) from None
        if proc.returncode < 0:
            try:
                name = signal.Signals(-proc.returncode).name
            except ValueError:
                name = str(-proc.returncode)
            loops = [
                f"{l.name!r} ({type(l).__name__})"
                for l in model.layers
                if type(l).__name__ in ("GRU", "SimpleRNN", "RNN", "Bidirectional", "QuantizeWrapperV2", "QuantizeWrapper")
            ]
            likely = (
                f" Layers that convert to TFLite WHILE loops, which full-int8 conversion crashes on "
                f"here: {', '.join(loops)}."
                if loops and options["mode"] == "int8"
                else ""
            )
            fix = (
                "Fix: recurrent='unrolled' (or 'auto'), which full int8 converts; or mode='dynamic' (int8 "
                "weights, float activations)"
                if likely
                else "Fix: use mode='dynamic' (int8 weights, float activations) or 'float16'"
            )
            raise ConversionCrashed(
                f"The TFLite converter crashed ({name}) converting model {model.name!r} in mode "
                f"{options['mode']!r}. It ran in a separate process, so yours is unaffected and no "
                f"file was written.{likely} {fix}; for a QAT model, keep keep_qat=False (the default)."
            )
        if proc.returncode != 0:
            message = proc.stderr[-4000:]
            if os.path.exists(request["error"]):
                with open(request["error"]) as f:
                    message = json.load(f)["message"] + "\n" + message
            raise explain(model, message, options)
        with open(request["output"], "rb") as f:
            return f.read()


def _convert_smallest(model, convert, options, sparse, notes, fallback=False):
    """Converts dense and/or with the sparse weight encoding, as `sparse`
    asks, and keeps the smaller file that runs: (flat, used_sparse).

    With `fallback`, a full-int8 file from the legacy quantizer that the
    runtime refuses because a weight got a non-finite scale is converted
    again with the MLIR quantizer (not for the fused LSTM, which MLIR
    corrupts). The legacy quantizer gives a weight an infinite scale when it
    widens the weight's scale to fit a bias into int32 for an input it
    calibrated to a zero range: an LSTM's hidden state over padding steps
    is exactly zero when the padding id's embedding row is zero (pruned)
    and the cell input's bias is zero."""
    flat = convert(options) if sparse is not True else None
    used_sparse = False
    zeros = metrics.zero_fraction(w.numpy() for w in model.weights if len(w.shape) >= 2)
    if sparse is True or (sparse == "auto" and zeros >= SPARSE_AUTO_ZEROS):
        sparse_flat = convert({**options, "sparse": True})
        problem = _runtime_problem(sparse_flat)
        if problem and sparse is True:
            raise TFLiteConversionError(
                f"to_tflite: with sparse=True the file of model {model.name!r} does not run on the LiteRT "
                f"runtime with its default delegate (XNNPACK, what apps use): {problem}. Fix: sparse='auto' "
                "or False (dense weights; gzip still shrinks the zeros)."
            )
        if problem:
            notes.append(f"sparse encoding tried and dropped: the runtime's default delegate cannot run it ({problem})")
        elif flat is None or len(sparse_flat) < len(flat):
            flat, used_sparse = sparse_flat, True
        else:
            notes.append(f"sparse encoding tried and dropped: {len(sparse_flat):,} bytes vs {len(flat):,} dense")
    problem = _runtime_problem(flat)
    if problem and fallback and options["mode"] == "int8" and options.get("quantizer", "legacy") == "legacy":
        bad = _nonfinite_scales(flat)
        if bad:
            notes.append(
                f"int8: the legacy quantizer gave {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} a non-finite scale, "
                f"which the runtime refuses ({problem[:120]}); converted again with the MLIR quantizer"
            )
            return _convert_smallest(model, convert, {**options, "quantizer": "mlir"}, sparse, notes)
    if problem:
        raise TFLiteConversionError(
            f"to_tflite: the converted file of model {model.name!r} (mode {options['mode']!r}) does not run on "
            f"the LiteRT runtime: {problem}. Nothing was written. Fix: try another mode, or report the model's "
            "layers."
        )
    return flat, used_sparse


def _nonfinite_scales(flat):
    """Names of the tensors of `flat` whose quantization scales are not all finite."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    bad = []
    for tensor in (t for graph in model.subgraphs for t in graph.tensors):
        q = tensor.quantization
        if q is not None and q.scale is not None and not np.isfinite(np.asarray(q.scale, np.float64)).all():
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            bad.append(name)
    return bad


def _metadata(model, path, flat, mode, used_sparse, labels, vocabulary, grid, notes, form, stateful, verification):
    """The `<name>.json` an app reads beside the file."""
    runtime = TFLiteModel(flat)
    ops = runtime.ops
    source = "given"
    if labels is None and vocabulary is None:
        width = int(runtime.outputs[0]["shape"][-1]) if len(runtime.outputs[0]["shape"]) > 1 else 1
        labels, source = [str(i) for i in range(max(width, 2))], "class ids (no labels= given)"
    elif labels is None:
        source = "the vocabulary (outputs are its tokens)"
    return {
        "format": "tfcompress.tflite/1",
        "file": os.path.basename(path),
        "model": model.name,
        "mode": mode,
        "bytes": len(flat),
        "sparse_encoding": used_sparse,
        "inputs": [_io_detail(d) for d in runtime.inputs],
        "outputs": [_io_detail(d) for d in runtime.outputs],
        "labels": list(labels) if labels is not None else None,
        "labels_source": source,
        "ops": ops,
        "recurrent_form": form,
        "stateful": bool(stateful),
        "reset_variables_before_invoke": bool(stateful),
        "note": (
            "The fused LSTM keeps its state between invokes (recurrent_form 'fused', for streaming): reset the interpreter's "
            "variable tensors before each one (Python: interpreter.reset_all_variables(); "
            "Android: Interpreter.resetVariableTensors(); C++: ResetVariableTensors()). LiteRT's CompiledModel API "
            "does not load it (variable tensors); export with recurrent='auto' for that."
            if stateful
            else None
        ),
        "preprocessing": None,  # set by _write
        "vocabulary": None,
        "weight_grid": grid,
        "verification": verification,
        "steps": notes,
        "tfcompress": _version(),
        "tensorflow": tf.__version__,
    }


def _write(path, flat, meta, encoder, vocabulary):
    """Writes the set of deployment files as a unit; returns their paths.

    `NAME.tflite`, `NAME.json` and, with an encoder, `NAME.vocab.txt` and
    `NAME.preprocessing.json` (a vocabulary alone: `NAME.vocab.txt`) are
    written into a staging folder beside them, then a journal naming them,
    then each is renamed into place, `NAME.json` last, and the journal is
    removed. A run killed before the journal leaves the old set; one killed
    after it is completed by the next `_io.recover_set` (every tfcompress reader and
    writer of the set calls it first), so a reader sees the old set or the
    new one. `NAME.json` holds the SHA-256 of each file of its set.
    """
    folder = os.path.dirname(os.path.abspath(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    _io.recover_set(folder, stem, clean_staging=True)
    names = [os.path.basename(path)]
    if encoder is not None:
        names += list(encoder.file_names(stem))
    elif vocabulary is not None:
        names.append(f"{stem}.vocab.txt")
    staging = tempfile.mkdtemp(prefix=f".{stem}.export-", dir=folder)
    try:
        with open(os.path.join(staging, names[0]), "wb") as f:
            f.write(flat)
        if encoder is not None:
            encoder.save(staging, name=stem)
        elif vocabulary is not None:
            vocabulary.save(os.path.join(staging, names[1]))
        meta["vocabulary"] = names[1] if len(names) > 1 else None
        meta["preprocessing"] = names[2] if len(names) > 2 else None
        meta["sha256"] = {name: _io.file_sha256(os.path.join(staging, name)) for name in names}
        names.append(f"{stem}.json")
        with open(os.path.join(staging, names[-1]), "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        for name in names:  # on disk before the journal says the set is complete
            with open(os.path.join(staging, name), "rb+") as f:
                os.fsync(f.fileno())
        stale = [n for n in (f"{stem}.vocab.txt", f"{stem}.preprocessing.json") if n not in names]
        journal = {"staging": os.path.basename(staging), "files": names[1:-1] + [names[0], names[-1]], "remove": stale}
        _io.atomic_write_text(_io.set_journal(folder, stem), json.dumps(journal), "export journal")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _io.recover_set(folder, stem)
    return [os.path.join(folder, name) for name in [names[0], names[-1]] + names[1:-1]]


@contextlib.contextmanager
def _empty_channels_filled(model, mode, notes):
    """While converting to int8: every all-zero output channel of a kernel
    gets one weight of 1e-6 × the kernel's largest magnitude; the original
    values are back when the block ends, also on error.

    Full int8 quantizes FULLY_CONNECTED and CONV weights per output channel
    with scale max|w| / 127. A channel pruned to all zeros gets scale 0, which
    XNNPACK, the runtime's default CPU delegate, refuses ("unsupported scale
    value (0.000000) in channel N"): 80% magnitude pruning of an unrolled
    LSTM leaves such channels. The filled weight changes that unit's
    pre-activation by at most 1e-6 of the kernel's scale times one input.
    """
    filled = []
    if mode == "int8":
        for variable in model.weights:
            leaf = variable.name.split("/")[-1].split(":")[0]
            if len(variable.shape) < 2 or leaf not in ("kernel", "recurrent_kernel"):
                continue
            value = variable.numpy()
            flat = value.reshape(-1, value.shape[-1])
            empty = np.flatnonzero(~flat.any(axis=0))
            if empty.size == 0 or not flat.any():
                continue  # nothing empty, or a kernel zero as a whole (left to the runtime check)
            patched = flat.copy()
            patched[0, empty] = 1e-6 * np.abs(flat).max()
            variable.assign(patched.reshape(value.shape))
            filled.append((variable, value, empty.size))
    if filled:
        notes.append(
            "int8: " + ", ".join(f"{v.name.split(':')[0]} ({n} all-zero output channel{'s' * (n > 1)})" for v, _, n in filled)
            + " given one weight of 1e-6 x the kernel's largest, as XNNPACK refuses a per-channel scale of 0"
        )
    try:
        yield
    finally:
        for variable, value, _ in filled:
            variable.assign(value)


def _runtime_problem(flat):
    """Why the runtime cannot prepare and invoke `flat` (None if it can).

    A file can convert and still not run: a pruned LSTM whose sparse-encoded
    weights sit in a WHILE loop is refused by XNNPACK, the default delegate.
    """
    try:
        runtime = TFLiteModel(flat)
        runtime.invoke(*[np.zeros(d["shape"], d["dtype"]) for d in runtime.inputs])
    except (RuntimeError, ValueError) as err:
        message = re.sub(r"(XNNPACK delegate)(?=\S)", r"\1; ", " ".join(str(err).split()))
        return message[:300].rstrip(".")
    return None


def _io_detail(detail):
    q = detail.get("quantization_parameters", {})
    scales = [float(s) for s in np.asarray(q.get("scales", []))]
    zeros = [int(z) for z in np.asarray(q.get("zero_points", []))]
    return {
        "name": detail["name"],
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "quantization": {"scales": scales, "zero_points": zeros} if scales else None,
    }


def _version():
    import importlib.metadata

    try:
        return importlib.metadata.version("tfcompress")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"
