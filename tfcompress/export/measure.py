"""Measuring a `.tflite` file: accuracy, agreement with Keras, latency (`evaluate`)."""

import gzip
import os
import time

import numpy as np
import tensorflow as tf

from tfcompress import metrics
from tfcompress._keras import ensure_tf_keras
from tfcompress._keras import predict as keras_predict
from tfcompress.export.runtime import TFLiteModel, runtime_name


def _as_arrays(data):
    if isinstance(data, tf.data.Dataset):
        xs, ys = [], []
        for element in data:
            if isinstance(element, (tuple, list)) and len(element) >= 2:
                x, y = element[0], element[1]
                ys.append(np.asarray(y))
            else:
                x = element
            xs.append(np.asarray(x))
        x = np.concatenate(xs) if xs[0].ndim > 1 else np.stack(xs)
        y = (np.concatenate(ys) if ys[0].ndim else np.stack(ys)) if ys else None
        return x, y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return np.asarray(data[0]), (None if data[1] is None else np.asarray(data[1]))
    return np.asarray(data), None


def _percentile_ms(times, q):
    return float(np.percentile(times, q) * 1e3)


def evaluate(
    tflite_path,
    data,
    reference=None,
    latency_runs=200,
    warmup=20,
    num_threads=None,
    verbose=True,
    return_outputs=False,
):
    """Measures a `.tflite` file against data and, optionally, its Keras model.

    Every example is run with the interpreter state reset first, so the
    figures do not depend on the order of the examples.

    Args:
        tflite_path: the file.
        data: an `(x, y)` pair (y may be None), or a `tf.data.Dataset` of
            `(x, y)` or `x`, batched or not.
        reference: the Keras model the file was exported from (any form:
            pruned, QAT, Keras 3, with a TextVectorization layer).
        latency_runs: single-example invokes timed after `warmup` (>= 200
            recommended; 0 skips timing).
        num_threads: interpreter threads.
        verbose: print a summary.
        return_outputs: also return the file's outputs on `x` (`outputs`),
            to compute another metric without running the file again.

    Returns:
        A dict: `accuracy` (if labels), `agreement` and `max_abs_diff` /
        `mean_abs_diff` (if a reference), `latency_ms_median`,
        `latency_ms_p90`, `throughput_per_s`, `bytes`, `gzip_bytes`,
        `examples`, `ops`, `interpreter`.
    """
    x, y = _as_arrays(data)
    runtime = TFLiteModel(tflite_path, num_threads=num_threads)
    start = time.perf_counter()
    outputs = runtime.predict(x)
    elapsed = time.perf_counter() - start
    if isinstance(outputs, list):
        outputs = outputs[0]
    result = {"examples": int(len(x)), "throughput_per_s": len(x) / elapsed if elapsed else float("inf")}
    if y is not None:
        result["accuracy"] = metrics.accuracy(outputs, y)
    if reference is not None:
        from tfcompress.text.keras_compat import find_vectorizer, split_vectorizer

        if find_vectorizer(reference) is not None:  # the file reads ids: compare with the model after the vectorizer
            reference = split_vectorizer(reference, max_len=x.shape[1] if x.ndim == 2 else None)[1]
        reference = ensure_tf_keras(reference, caller="evaluate")
        expected = keras_predict(reference, x, batch_size=256)
        expected = expected[0] if isinstance(expected, list) else expected
        diff = np.abs(outputs.astype(np.float64) - expected.astype(np.float64))
        result["max_abs_diff"] = float(diff.max())
        result["mean_abs_diff"] = float(diff.mean())
        result["agreement"] = metrics.agreement(outputs, expected)
    # Latency: one example (one batch of the file's size), state reset included.
    b = runtime.batch_size
    if latency_runs:
        times = []
        for i in range(warmup + latency_runs):
            sample = x[i % len(x) : i % len(x) + 1]
            batch = np.repeat(sample, b, axis=0) if b > 1 else sample
            t0 = time.perf_counter()
            runtime.invoke(batch)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        result["latency_ms_median"] = _percentile_ms(times, 50)
        result["latency_ms_p90"] = _percentile_ms(times, 90)
    with open(tflite_path, "rb") as f:
        flat = f.read()
    result["bytes"] = len(flat)
    result["gzip_bytes"] = len(gzip.compress(flat, 9))
    result["ops"] = runtime.ops
    result["batch_size"] = b
    result["interpreter"] = runtime_name()
    if return_outputs:
        result["outputs"] = outputs
    if verbose:
        print(_summary(tflite_path, result))
    return result


def _summary(path, r):
    lines = [f"{os.path.basename(path)}: {r['bytes'] / 1024:,.1f} KiB ({r['gzip_bytes'] / 1024:,.1f} KiB gzipped)"]
    if "accuracy" in r:
        lines.append(f"  accuracy           {r['accuracy']:.4f} on {r['examples']} examples")
    if "agreement" in r:
        lines.append(
            f"  agrees with Keras  {r['agreement']:.2%} of predictions; output difference max "
            f"{r['max_abs_diff']:.2e}, mean {r['mean_abs_diff']:.2e}"
        )
    if "latency_ms_median" in r:
        lines.append(
            f"  latency            {r['latency_ms_median']:.3f} ms median, {r['latency_ms_p90']:.3f} ms p90 "
            f"(batch {r['batch_size']}, state reset included)"
        )
    lines.append(f"  throughput         {r['throughput_per_s']:,.0f} examples/s")
    return "\n".join(lines)
