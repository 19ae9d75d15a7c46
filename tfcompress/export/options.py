"""Converter settings per export mode, shared by in-process and isolated conversion."""

import tensorflow as tf

MODES = ("float32", "float16", "dynamic", "int8")


def configure(converter, options, inputs=None):
    """Sets up a `tf.lite.TFLiteConverter` for one export mode.

    Args:
        converter: the converter.
        options: {"mode", "sparse", "int8_input", "int8_output", "select_tf_ops",
            "quantizer" ("legacy" or "mlir", for mode "int8")}.
        inputs: for mode "int8", one array per model input, each holding the
            calibration samples along axis 0 (each sample shaped like the
            model input, batch included).
    """
    mode = options["mode"]
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    optimizations = []
    if mode == "float16":
        optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        optimizations = [tf.lite.Optimize.DEFAULT]
        count = len(inputs[0])

        def representative():
            for i in range(count):
                yield [inp[i] for inp in inputs]

        converter.representative_dataset = representative
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if options.get("int8_input"):
            converter.inference_input_type = tf.int8
        if options.get("int8_output"):
            converter.inference_output_type = tf.int8
        # TF's default (MLIR) quantizer corrupts fused LSTMs in full int8 (58%
        # agreement with Keras on a Bidirectional LSTM here); the legacy one
        # does not. See BENCHMARKS.md.
        converter.experimental_new_quantizer = options.get("quantizer", "legacy") == "mlir"
    elif mode != "float32":
        raise ValueError(f"unknown mode {mode!r}")
    if options.get("sparse"):
        optimizations = optimizations + [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if options.get("select_tf_ops"):
        ops = ops + [tf.lite.OpsSet.SELECT_TF_OPS]
    converter.optimizations = optimizations
    converter.target_spec.supported_ops = ops
    return converter
