"""8-bit quantization-aware training (QAT) for text models.

TFMOT's QAT refuses the layers text models are made of (LSTM, GRU,
SimpleRNN, Embedding, Conv1D, LayerNormalization), and its experimental RNN
configuration, which also fake-quantizes the gate activations inside the
cell, pushes tf_keras' LSTM off its fused code path, so the converter emits a
slow unfused `WHILE` loop. `quantize(model)` instead gives every weight-bearing
layer a `TextQuantizeConfig`:

- **weights** (kernels, recurrent kernels, embedding tables) are fake-quantized
  to 8 bits, symmetric, per tensor (per output channel for Conv1D), the way
  TFLite stores them;
- the **layer output** is fake-quantized (8 bits, moving-average range), as
  TFMOT does for Dense;
- nothing inside an RNN cell is touched, so the layer keeps the implementation
  that converts to TFLite's fused `UNIDIRECTIONAL_SEQUENCE_LSTM`;
- integer token-id inputs get no quantize layer (a fake-quant op on int32 ids
  fails), and layers you name in `skip` stay in float.

With `preserve_sparsity` (the default for models that have many exact zeros,
e.g. after `tfcompress.pruning.strip`), each weight quantizer multiplies the
weight by `stop_gradient(weight != 0)`: zeros receive exactly zero gradient, so
they stay zero through QAT, with no mask to store (`TextWeightQuantizer`).

`strip(model)` returns the float model with the QAT-trained weights (each
weight replaced by its 8-bit fake-quantized value, so 8-bit export reproduces
it); `tfcompress.export` converts either form.
"""

import functools
import logging

import tensorflow as tf

from tfcompress import metrics
from tfcompress._keras import (
    clone_with,
    ensure_tf_keras,
    float32_policy,
    is_mixed_precision,
    keras,
    layer_selector,
    rebuild_float32,
    require_graph_model,
    tfmot,
    warn_mixed_once,
)
from tfcompress.models import CapVocabulary

__all__ = [
    "quantize",
    "quantize_model",
    "strip",
    "is_quantized",
    "TextQuantizeConfig",
    "TextWeightQuantizer",
    "quantize_scope",
    "custom_objects",
]

log = logging.getLogger("tfcompress")

_q = tfmot.quantization.keras
from tensorflow_model_optimization.python.core.quantization.keras import (  # noqa: E402
    quant_ops,
    quantize_annotate as _annotate_mod,
    quantize_wrapper as _wrapper_mod,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_layout_transform as _layout_mod,
    default_8bit_quantize_registry as _registry_mod,
    default_8bit_quantize_scheme as _scheme_mod,
)

_RNN = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)


# --------------------------------------------------------------------------
# Quantizers and configs
# --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcompress")
class TextWeightQuantizer(_q.quantizers.LastValueQuantizer):
    """TFMOT's 8-bit weight quantizer, for any weight rank, optionally sparsity-preserving.

    Args:
        num_bits, per_axis, symmetric, narrow_range: as
            `tfmot.quantization.keras.quantizers.LastValueQuantizer`. With
            `per_axis`, the last axis is the channel axis for weights of any
            rank (TFMOT's own handles only rank 2 and 4, so Conv1D's rank-3
            kernel failed).
        preserve_sparsity: multiply the weight by `stop_gradient(weight != 0)`
            first: the forward pass is unchanged for non-zero weights, and the
            zeros get a zero gradient, so no optimizer moves them.
    """

    def __init__(self, num_bits=8, per_axis=False, symmetric=True, narrow_range=True, preserve_sparsity=False):
        super().__init__(num_bits=num_bits, per_axis=per_axis, symmetric=symmetric, narrow_range=narrow_range)
        self.preserve_sparsity = bool(preserve_sparsity)

    def build(self, tensor_shape, name, layer):
        # TFMOT names the range variables after the weight's last name part, so
        # a Bidirectional layer's two "kernel"s collide (and .h5 saving fails).
        taken = {w.name.split(":")[0].split("/")[-1] for w in layer.weights}
        unique, i = name, 1
        while f"{unique}_min" in taken:
            unique, i = f"{name}_{i}", i + 1
        return super().build(tensor_shape, unique, layer)

    def __call__(self, inputs, training, weights, **kwargs):
        if self.preserve_sparsity:
            inputs = inputs * tf.stop_gradient(tf.cast(tf.not_equal(inputs, 0), inputs.dtype))
        rank = inputs.shape.rank
        if self.per_axis and rank not in (2, 4):
            flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
            out = super().__call__(flat, training, weights, **kwargs)
            return tf.reshape(out, tf.shape(inputs))
        return super().__call__(inputs, training, weights, **kwargs)

    def get_config(self):
        return {**super().get_config(), "preserve_sparsity": self.preserve_sparsity}

    def __eq__(self, other):
        return isinstance(other, TextWeightQuantizer) and self.get_config() == other.get_config()


@keras.saving.register_keras_serializable(package="tfcompress")
class PassThroughQuantizer(_q.quantizers.Quantizer):
    """Leaves a weight as it is (keeps a layer's variable order; see
    `TextQuantizeConfig`)."""

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        return inputs

    def get_config(self):
        return {}

    def __eq__(self, other):
        return isinstance(other, PassThroughQuantizer)


def _weight_quantizer(per_axis, preserve_sparsity, bits):
    return TextWeightQuantizer(
        num_bits=bits, per_axis=per_axis, symmetric=True, narrow_range=True, preserve_sparsity=preserve_sparsity
    )


def _get_path(obj, path):
    return functools.reduce(getattr, path.split("."), obj)


def _set_path(obj, path, value):
    *parents, last = path.split(".")
    setattr(functools.reduce(getattr, parents, obj), last, value)


@keras.saving.register_keras_serializable(package="tfcompress")
class TextQuantizeConfig(_q.QuantizeConfig):
    """Fake-quantizes the named weights of a layer and, optionally, its output.

    Args:
        weight_paths: attribute paths of the weights, e.g. `["embeddings"]`,
            `["cell.kernel", "cell.recurrent_kernel"]`,
            `["forward_layer.cell.kernel", ...]`.
        passthrough: paths among `weight_paths` that are not quantized. TFMOT's
            wrapper lists its quantized weights first when it builds the layer
            itself (on loading) but keeps the layer's own order when the layer
            was built before (in `quantize()`); passing through the weights in
            between keeps the two orders equal, so saved weights load back.
        per_axis: quantize weights per output channel (last axis).
        quantize_output: fake-quantize the layer's output.
        preserve_sparsity: keep exact zeros of the weights at zero.
        weight_bits, activation_bits: bit widths (8 for TFLite int8).
    """

    def __init__(
        self,
        weight_paths=(),
        passthrough=(),
        per_axis=False,
        quantize_output=True,
        preserve_sparsity=False,
        weight_bits=8,
        activation_bits=8,
    ):
        self.weight_paths = list(weight_paths)
        self.passthrough = [p for p in passthrough]
        unknown = set(self.passthrough) - set(self.weight_paths)
        if unknown:
            raise ValueError(f"passthrough paths {sorted(unknown)} are not among weight_paths {self.weight_paths}.")
        self.per_axis = bool(per_axis)
        self.quantize_output = bool(quantize_output)
        self.preserve_sparsity = bool(preserve_sparsity)
        self.weight_bits = int(weight_bits)
        self.activation_bits = int(activation_bits)

    def get_weights_and_quantizers(self, layer):
        # Called once, when the wrapper builds. The wrapper re-points these
        # attributes at fake-quantized tensors on every call, so the layer and
        # its sublayers (cells, Bidirectional's directions) must not be traced
        # on their own when saving a SavedModel: they would capture a tensor of
        # another graph. They are rebuilt from their configuration instead.
        for sub in [layer] + list(layer._flatten_layers(include_self=False)):  # noqa: SLF001
            sub._must_restore_from_config = True  # noqa: SLF001
        return [
            (
                _get_path(layer, p),
                PassThroughQuantizer()
                if p in self.passthrough
                else _weight_quantizer(self.per_axis, self.preserve_sparsity, self.weight_bits),
            )
            for p in self.weight_paths
        ]

    def get_activations_and_quantizers(self, layer):
        return []  # never inside an RNN cell: see the module docstring

    def set_quantize_weights(self, layer, quantize_weights):
        if len(quantize_weights) != len(self.weight_paths):
            raise ValueError(
                f"layer {layer.name!r}: {len(quantize_weights)} quantized weights for "
                f"{len(self.weight_paths)} weight paths {self.weight_paths}."
            )
        for path, value in zip(self.weight_paths, quantize_weights):
            _set_path(layer, path, value)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        if not self.quantize_output:
            return []
        return [
            _q.quantizers.MovingAverageQuantizer(
                num_bits=self.activation_bits, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {
            "weight_paths": list(self.weight_paths),
            "passthrough": list(self.passthrough),
            "per_axis": self.per_axis,
            "quantize_output": self.quantize_output,
            "preserve_sparsity": self.preserve_sparsity,
            "weight_bits": self.weight_bits,
            "activation_bits": self.activation_bits,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, TextQuantizeConfig) and self.get_config() == other.get_config()


def _weight_paths(layer):
    if isinstance(layer, keras.layers.Bidirectional):
        forward = ["forward_layer.cell.kernel", "forward_layer.cell.recurrent_kernel"]
        if getattr(layer.forward_layer, "use_bias", False):
            forward.append("forward_layer.cell.bias")  # passed through: see TextQuantizeConfig
        return forward + ["backward_layer.cell.kernel", "backward_layer.cell.recurrent_kernel"]
    if isinstance(layer, _RNN):
        return ["cell.kernel", "cell.recurrent_kernel"]
    if isinstance(layer, keras.layers.Embedding):
        return ["embeddings"]
    if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D)):
        return ["kernel"]
    return None


def _single_output(layer):
    if isinstance(layer, _RNN) and layer.return_state:
        return False
    if isinstance(layer, keras.layers.Bidirectional) and (layer.return_state or layer.merge_mode is None):
        return False
    return True


def config_for(layer, preserve_sparsity=False, bits=8, activation_bits=8):
    """The `QuantizeConfig` tfcompress uses for `layer`, or None if it has none.

    Layers TFMOT handles without weights (pooling, dropout, activations, ...)
    return None and keep TFMOT's own configuration.
    """
    paths = _weight_paths(layer)
    if paths is not None:
        if isinstance(layer, keras.layers.Bidirectional) and not isinstance(layer.forward_layer, _RNN):
            return None
        return TextQuantizeConfig(
            paths,
            passthrough=[p for p in paths if p.endswith(".bias")],
            per_axis=isinstance(layer, keras.layers.Conv1D),
            quantize_output=_single_output(layer) and not isinstance(layer, keras.layers.Embedding),
            preserve_sparsity=preserve_sparsity,
            weight_bits=bits,
            activation_bits=activation_bits,
        )
    if isinstance(layer, (keras.layers.LayerNormalization, keras.layers.BatchNormalization)):
        return TextQuantizeConfig([], quantize_output=True, activation_bits=activation_bits)
    if isinstance(layer, (keras.layers.MaxPooling1D, keras.layers.Masking, CapVocabulary)):
        return TextQuantizeConfig([], quantize_output=False)
    return None


def _weightless_config(layer, registry, activation_bits):
    """TFMOT's rule for a layer without weights (Dropout, Activation, pooling
    ...), at another activation bit width: the same decision whether to
    quantize the output. None if the rule quantizes weights or activations."""
    tfmot_config = registry.get_quantize_config(layer)
    if tfmot_config.get_weights_and_quantizers(layer) or tfmot_config.get_activations_and_quantizers(layer):
        return None
    return TextQuantizeConfig(
        [], quantize_output=bool(tfmot_config.get_output_quantizers(layer)), activation_bits=activation_bits
    )


class _TextRegistry(_registry_mod.Default8BitQuantizeRegistry):
    def supports(self, layer):
        return config_for(layer) is not None or super().supports(layer)

    def get_quantize_config(self, layer):
        config = config_for(layer)
        return config if config is not None else super().get_quantize_config(layer)


class _TextLayoutTransform(_layout_mod.Default8BitQuantizeLayoutTransform):
    """TFMOT's layout transforms, without a quantize layer on integer inputs."""

    def apply(self, model, layer_quantize_map):
        # Sequential models do not list their InputLayer in `layers`.
        for layer in list(model.layers) + list(getattr(model, "_input_layers", [])):
            if isinstance(layer, keras.layers.InputLayer) and tf.as_dtype(layer.dtype).is_integer:
                layer_quantize_map.pop(layer.name, None)
        return super().apply(model, layer_quantize_map)


class _TextScheme(_scheme_mod.Default8BitQuantizeScheme):
    def get_layout_transformer(self):
        return _TextLayoutTransform()

    def get_quantize_registry(self):
        return _TextRegistry()


def quantize_scope():
    """A custom-object scope for loading QAT models (also registered globally)."""
    return _q.quantize_scope(custom_objects())


def custom_objects():
    """The classes a saved QAT model names besides TFMOT's, for
    `keras.models.load_model` inside `quantize_scope()` (`tfcompress.load_model`
    needs none of this)."""
    return {
        "TextQuantizeConfig": TextQuantizeConfig,
        "TextWeightQuantizer": TextWeightQuantizer,
        "PassThroughQuantizer": PassThroughQuantizer,
        "tfcompress>PassThroughQuantizer": PassThroughQuantizer,
        "tfcompress>TextQuantizeConfig": TextQuantizeConfig,
        "tfcompress>TextWeightQuantizer": TextWeightQuantizer,
    }


# --------------------------------------------------------------------------
# quantize / strip
# --------------------------------------------------------------------------


def is_quantized(model):
    """True if `model` has QAT wrappers."""
    return any(isinstance(layer, _wrapper_mod.QuantizeWrapper) for layer in model.layers)


def _quantizable_weights(model):
    """The values of the weights the text configs quantize."""
    for layer in model.layers:
        for path in _weight_paths(layer) or []:
            try:
                yield _get_path(layer, path).numpy()
            except AttributeError:
                continue


def quantize(model, skip=None, preserve_sparsity="auto", bits=8, activation_bits=8):
    """Returns a quantization-aware-training copy of a text model.

    Compile and `fit` the result as usual (it is not compiled); it computes
    with 8-bit fake-quantized weights and activations, so its accuracy is what
    an 8-bit TFLite export will have.

    Args:
        model: a tf_keras or Keras 3 Sequential/Functional model (built):
            Embedding, LSTM, GRU, SimpleRNN, Bidirectional, Conv1D, Dense,
            LayerNormalization and the usual weightless layers. A model with
            pruning wrappers is stripped first.
        skip: layers whose weights and computation stay in float: a list of
            layer classes and/or names, or a function `layer -> bool`. Where a
            skipped layer feeds a quantized one, its output is still
            fake-quantized, as the 8-bit layer after it will receive it.
        preserve_sparsity: keep exact zeros at zero through QAT. `"auto"`:
            when at least 10% of the quantized weights are exactly zero (a
            pruned model).
        bits: weight bit width, 2..8. Below 8, each quantized weight tensor
            (kernel, recurrent kernel, embedding table; per output channel
            for Conv1D) takes at most 2^bits - 1 distinct values, so the
            stripped model compresses better; a `.tflite` file still stores
            them in 8-bit integers (`tfcompress.export` says so).
        activation_bits: bit width of the fake-quantized layer outputs
            (8: what TFLite's integer kernels compute with).

    Returns:
        A new tf_keras model with `QuantizeWrapperV2` layers; its
        `tfcompress_quantization_report` attribute lists what was quantized,
        left in float, and the sparsity setting.

    Raises:
        ValueError: a subclassed model, a layer with no quantization rule that
            is not in `skip` (the message names it and how to skip it), or an
            invalid argument.
    """
    from tfcompress import pruning

    model = ensure_tf_keras(model, caller="quantize")
    require_graph_model(model, "quantize")
    if is_quantized(model):
        raise ValueError(
            f"model {model.name!r} is already quantization-aware. Fix: keep training it, "
            "or call tfcompress.quantization.strip(model) first."
        )
    for name, value in (("bits", bits), ("activation_bits", activation_bits)):
        if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 8:
            raise ValueError(f"{name} must be an integer in [2, 8]. Received: {name}={value!r}.")
    if preserve_sparsity not in ("auto", True, False):
        raise ValueError(
            f"preserve_sparsity must be 'auto', True or False. Received: preserve_sparsity={preserve_sparsity!r}."
        )
    if pruning.is_pruned(model):
        model = pruning.strip(model)
    if is_mixed_precision(model):
        warn_mixed_once()
        model = rebuild_float32(model)
    zero_fraction = metrics.zero_fraction(_quantizable_weights(model))
    if preserve_sparsity == "auto":
        preserve_sparsity = zero_fraction >= 0.10
    skipped = layer_selector(skip, "skip", lambda layer: False)
    registry = _TextRegistry()
    report = {
        "quantized": [],
        "float": [],
        "preserve_sparsity": preserve_sparsity,
        "zero_fraction": zero_fraction,
        "bits": bits,
        "activation_bits": activation_bits,
    }

    def annotate(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.InputLayer):
            return fresh
        if skipped(layer):
            report["float"].append(layer.name)
            return fresh
        config = config_for(layer, preserve_sparsity, bits, activation_bits)
        if config is None and not registry.supports(layer):
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no 8-bit quantization "
                "rule in tfcompress or TFMOT. Fix: leave it in float with "
                f"quantize(model, skip=[{layer.name!r}]), or pass your own QuantizeConfig "
                "through tfmot.quantization.keras.quantize_annotate_layer."
            )
        if config is None and (bits != 8 or activation_bits != 8):
            config = _weightless_config(fresh, registry, activation_bits)
            if config is None:
                raise ValueError(
                    f"layer {layer.name!r} ({type(layer).__name__}) has weights that only TFMOT's "
                    f"8-bit rule quantizes, which cannot do bits={bits}, activation_bits={activation_bits}. "
                    f"Fix: use 8 bits, or leave it in float with skip=[{layer.name!r}]."
                )
        report["quantized"].append(layer.name)
        return _annotate_mod.QuantizeAnnotate(fresh, quantize_config=config)

    annotated = clone_with(model, annotate)
    with float32_policy():
        if not report["quantized"]:
            raise ValueError(f"quantize(): every layer of model {model.name!r} is in skip; nothing to quantize.")
        with quantize_scope():
            quantized = _q.quantize_apply(annotated, scheme=_TextScheme())
    for layer in quantized.layers:
        if isinstance(layer, _wrapper_mod.QuantizeWrapper):
            _normalize_tracking(layer)
            _init_weight_ranges(layer)
    quantized.tfcompress_quantization_report = report
    log.info(
        "quantization-aware %s: %d layers quantized, float: %s, preserve_sparsity=%s",
        model.name,
        len(report["quantized"]),
        report["float"] or "none",
        preserve_sparsity,
    )
    return quantized


def quantize_model(model, **kwargs):
    """`quantize` under TFMOT's name: code written for
    `tfmot.quantization.keras.quantize_model(model)` works with
    `from tfcompress.quantization import quantize_model`, and its LSTM, GRU
    and Embedding layers are quantized instead of refused. Keyword arguments
    are `quantize`'s."""
    return quantize(model, **kwargs)


def _init_weight_ranges(wrapper):
    """Sets each weight quantizer's range from the weight itself.

    TFMOT starts every range at [-6, 6] and moves a weight's range only in a
    training call, so until the first `fit` step the QAT model (and
    `strip()`, and an export) computes with weights rounded on a grid far too
    coarse for them: at 4 bits almost all of them round to zero. One call in
    training mode sets the range exactly as that first step would.
    """
    for weight, quantizer, qvars in wrapper._weight_vars:  # noqa: SLF001
        if qvars:
            quantizer(weight, True, weights=qvars)


def _normalize_tracking(wrapper):
    """Makes a wrapper's variable list what it is after loading.

    Wrapping a layer that is already built, TFMOT's `QuantizeWrapperV2` lists
    the layer's trainable variables and then each quantized one again; when it
    builds the layer itself (as on loading) it lists the quantized ones only.
    The `.keras` format saves that raw list, so the two disagree and loading
    fails ("expected 4 variables, but received 5"). The duplicates add nothing
    (the layer still trains every variable), so they are dropped here.
    """
    wrapper._trainable_weights = [w for w, _, _ in wrapper._weight_vars if w.trainable]  # noqa: SLF001


def strip(model, bake_weights=True):
    """Returns the float model inside a QAT model.

    Args:
        model: a model from `quantize()`.
        bake_weights: replace each quantized weight by its fake-quantized
            value (what the QAT model computed with), so that converting the
            float model with 8-bit weights gives back exactly those values.
            `False` keeps the raw float weights.

    Returns:
        A plain tf_keras model (no wrappers, no quantize layers).
    """
    model = ensure_tf_keras(model, caller="quantization.strip")
    if not is_quantized(model):
        return model
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

    def unwrap(layer):
        if isinstance(layer, _wrapper_mod.QuantizeWrapper):
            inner = layer.layer
            return inner.__class__.from_config(inner.get_config())
        return layer.__class__.from_config(layer.get_config())

    # Rebuild the graph without the QuantizeLayer nodes.
    drop = {l.name: l for l in model.layers if isinstance(l, quantize_layer.QuantizeLayer)}

    def weights(old, fresh):
        if not isinstance(old, _wrapper_mod.QuantizeWrapper):
            return None
        baked = {}
        if bake_weights:
            for weight, quantizer, qvars in old._weight_vars:  # noqa: SLF001
                baked[id(weight)] = quantizer(weight, False, weights=qvars).numpy()
        return [baked.get(id(source), source.numpy()) for source in _inner_variables(old, fresh)]

    with quantize_scope():
        return clone_with(model, unwrap, weights=weights, drop=drop)


def _config_paths(config):
    """Attribute paths of the weights a QuantizeConfig quantizes."""
    if isinstance(config, TextQuantizeConfig):
        return list(config.weight_paths)
    attrs = getattr(config, "weight_attrs", None)  # TFMOT's Default8BitQuantizeConfig
    if attrs and all(isinstance(a, str) for a in attrs):
        return list(attrs)
    return []


def _inner_variables(wrapper, fresh):
    """The wrapped layer's variables, in the order of `fresh.weights`.

    After the first call, a QAT wrapper points the layer's weight attributes at
    fake-quantized tensors, so the layer no longer lists those variables; they
    are in the wrapper's `_weight_vars`, in the order of the config's attribute
    paths. Every other variable is still listed by the layer itself. (Names
    cannot be used: after loading, the layer's variables live in the wrapper's
    name scope.)
    """
    paths = _config_paths(wrapper.quantize_config)
    quantized = [w for w, _, _ in wrapper._weight_vars]  # noqa: SLF001
    if len(paths) != len(quantized):
        raise RuntimeError(
            f"quantization.strip: {wrapper.name!r} quantizes {len(quantized)} weights but its "
            f"configuration names {len(paths)}; this configuration is not supported by strip()."
        )
    by_path = {id(_get_path(fresh, p)): q for p, q in zip(paths, quantized)}
    quantized_ids = {id(q) for q in quantized}
    rest = iter([w for w in wrapper.layer.weights if id(w) not in quantized_ids])
    out = []
    for target in fresh.weights:
        source = by_path.get(id(target))
        if source is None:
            source = next(rest, None)
        if source is None or tuple(source.shape) != tuple(target.shape):
            raise RuntimeError(
                f"quantization.strip: the variables of {wrapper.name!r} do not line up with "
                f"those of a fresh {type(fresh).__name__}; please report this."
            )
        out.append(source)
    return out

