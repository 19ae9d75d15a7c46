"""Runs one TFLite conversion in a separate process (see `export.to_tflite`).

The converter can crash the interpreter (a segmentation fault converting some
quantized LSTMs to full int8 was seen here), so `to_tflite` saves the model as
a SavedModel and converts it in this child process: a crash ends the child, and
the caller gets an exception instead of losing its own process.

Usage: python -m tfcompress.export.worker REQUEST.json
REQUEST.json: {"saved_model": dir, "output": file, "error": file,
               "options": {...}, "representative": npz file or null}
Exit status: 0 converted; 1 the converter raised (message in "error").
"""

import json
import os
import sys
import traceback


def main(request_path):
    with open(request_path) as f:
        request = json.load(f)
    import numpy as np
    import tensorflow as tf

    from tfcompress.export.options import configure

    converter = tf.lite.TFLiteConverter.from_saved_model(request["saved_model"], signature_keys=["serving_default"])
    inputs = None
    if request.get("representative"):
        with np.load(request["representative"], allow_pickle=False) as data:
            inputs = [data[f"input_{i}"] for i in range(len(data.files))]
    configure(converter, request["options"], inputs)
    try:
        flat = converter.convert()
    except Exception as err:  # the converter's own error, reported to the parent
        with open(request["error"], "w") as f:
            json.dump({"type": type(err).__name__, "message": str(err), "traceback": traceback.format_exc()}, f)
        return 1
    with open(request["output"], "wb") as f:
        f.write(flat)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv[1]))
