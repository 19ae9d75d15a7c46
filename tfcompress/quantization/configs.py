"""The quantization rules for text layers: weight quantizers, `TextQuantizeConfig`,
and the registry and scheme that give every text layer its config."""

import functools

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_layout_transform,
    default_8bit_quantize_registry,
    default_8bit_quantize_scheme,
)

from tfcompress._keras import keras, tfmot
from tfcompress.models import CapVocabulary

tfmot_quant = tfmot.quantization.keras


RNN_TYPES = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)

# Most clusters a cluster-preserving weight quantizer keeps (8 bits' worth).
MAX_CLUSTERS = 256


# --------------------------------------------------------------------------
# Quantizers and configs
# --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcompress")
class TextWeightQuantizer(tfmot_quant.quantizers.LastValueQuantizer):
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
        preserve_clusters: replace each weight by the mean of its cluster
            (weights that were equal when QAT started share a cluster id,
            stored in a `*_cluster_ids` variable; in the same channel only,
            when the weight was clustered per channel), with a straight-through
            gradient: the weight takes at most as many distinct values as it
            had, each moving with the mean gradient of its members, and so
            does its quantized value. `init_clusters()` sets the ids.
    """

    def __init__(
        self,
        num_bits=8,
        per_axis=False,
        symmetric=True,
        narrow_range=True,
        preserve_sparsity=False,
        preserve_clusters=False,
    ):
        super().__init__(num_bits=num_bits, per_axis=per_axis, symmetric=symmetric, narrow_range=narrow_range)
        self.preserve_sparsity = bool(preserve_sparsity)
        self.preserve_clusters = bool(preserve_clusters)

    def build(self, tensor_shape, name, layer):
        # TFMOT names the range variables after the weight's last name part, so
        # a Bidirectional layer's two "kernel"s collide (and .h5 saving fails).
        taken = {w.name.split(":")[0].split("/")[-1] for w in layer.weights}
        unique, i = name, 1
        while f"{unique}_min" in taken:
            unique, i = f"{name}_{i}", i + 1
        variables = super().build(tensor_shape, unique, layer)
        if self.preserve_clusters:
            variables["cluster_ids"] = layer.add_weight(
                f"{unique}_cluster_ids",
                shape=tensor_shape,
                initializer=keras.initializers.Zeros(),
                dtype=tf.int32,
                trainable=False,
            )
        return variables

    def init_clusters(self, weight, variables):
        """Sets the cluster ids from the weight's current values (equal values,
        one cluster; per channel when it was clustered per channel). Raises if
        it has more distinct values than a cluster id can name."""
        value = weight.numpy()
        if self.preserve_sparsity:
            value = value * (value != 0)
        ids, reason = cluster_ids(value)
        if ids is None:
            raise ValueError(
                f"preserve_clusters: weight {weight.name!r} {reason}. Fix: cluster it first "
                "(tfcompress.clustering), or preserve_clusters=False."
            )
        variables["cluster_ids"].assign(ids)

    def __call__(self, inputs, training, weights, **kwargs):
        if self.preserve_sparsity:
            inputs = inputs * tf.stop_gradient(tf.cast(tf.not_equal(inputs, 0), inputs.dtype))
        if self.preserve_clusters:
            ids = weights["cluster_ids"]
            means = tf.math.unsorted_segment_mean(inputs, ids, MAX_CLUSTERS * inputs.shape[-1])
            inputs = inputs + tf.stop_gradient(tf.gather(means, ids) - inputs)
        rank = inputs.shape.rank
        if self.per_axis and rank not in (2, 4):
            flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
            out = super().__call__(flat, training, weights, **kwargs)
            return tf.reshape(out, tf.shape(inputs))
        return super().__call__(inputs, training, weights, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "preserve_sparsity": self.preserve_sparsity,
            "preserve_clusters": self.preserve_clusters,
        }

    def __eq__(self, other):
        return isinstance(other, TextWeightQuantizer) and self.get_config() == other.get_config()


def cluster_ids(value):
    """Cluster ids for a clustered weight: equal values share an id.

    A weight with at most `MAX_CLUSTERS` distinct values gets one id per
    value. One clustered per channel (each channel, the last axis, has at most
    `MAX_CLUSTERS` values and some non-zero value shared by several entries)
    gets `channel * MAX_CLUSTERS + ` its value's rank in the channel, so
    equal values of two channels stay two clusters.

    Returns:
        `(ids, None)`: int32 ids in `value`'s shape, below `MAX_CLUSTERS *
        channels`; or `(None, reason)` when the weight is not clustered
        either way.
    """
    value = np.asarray(value)
    distinct, ids = np.unique(value, return_inverse=True)
    if len(distinct) <= MAX_CLUSTERS:
        return ids.reshape(value.shape).astype(np.int32), None
    flat = value.reshape(-1, value.shape[-1]) if value.ndim else value.reshape(1, 1)
    ids = np.empty(flat.shape, np.int32)
    shared = False
    for channel in range(flat.shape[1]):
        column = flat[:, channel]
        values, ids[:, channel] = np.unique(column, return_inverse=True)
        if len(values) > MAX_CLUSTERS:
            return None, (
                f"has {len(distinct)} distinct values, more than {MAX_CLUSTERS} clusters, "
                f"and channel {channel} alone has {len(values)}"
            )
        nonzero = column[column != 0]
        shared = shared or len(np.unique(nonzero)) < nonzero.size
        ids[:, channel] += channel * MAX_CLUSTERS
    if not shared:
        return None, (
            f"has {len(distinct)} distinct values, more than {MAX_CLUSTERS} clusters, and no channel "
            "shares a value between entries (it is not clustered per channel either)"
        )
    return ids.reshape(value.shape), None


@keras.saving.register_keras_serializable(package="tfcompress")
class PassThroughQuantizer(tfmot_quant.quantizers.Quantizer):
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


def _weight_quantizer(per_axis, preserve_sparsity, bits, preserve_clusters=False):
    return TextWeightQuantizer(
        num_bits=bits,
        per_axis=per_axis,
        symmetric=True,
        narrow_range=True,
        preserve_sparsity=preserve_sparsity,
        preserve_clusters=preserve_clusters,
    )


def get_path(obj, path):
    return functools.reduce(getattr, path.split("."), obj)


def set_path(obj, path, value):
    *parents, last = path.split(".")
    setattr(functools.reduce(getattr, parents, obj), last, value)


@keras.saving.register_keras_serializable(package="tfcompress")
class TextQuantizeConfig(tfmot_quant.QuantizeConfig):
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
        preserve_clusters: keep each weight's clusters (equal values stay
            equal; see `TextWeightQuantizer`).
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
        preserve_clusters=False,
    ):
        self.weight_paths = list(weight_paths)
        self.passthrough = [p for p in passthrough]
        unknown = set(self.passthrough) - set(self.weight_paths)
        if unknown:
            raise ValueError(f"passthrough paths {sorted(unknown)} are not among weight_paths {self.weight_paths}.")
        self.per_axis = bool(per_axis)
        self.quantize_output = bool(quantize_output)
        self.preserve_sparsity = bool(preserve_sparsity)
        self.preserve_clusters = bool(preserve_clusters)
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
                get_path(layer, p),
                PassThroughQuantizer()
                if p in self.passthrough
                else _weight_quantizer(self.per_axis, self.preserve_sparsity, self.weight_bits, self.preserve_clusters),
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
            set_path(layer, path, value)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        if not self.quantize_output:
            return []
        return [
            tfmot_quant.quantizers.MovingAverageQuantizer(
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
            "preserve_clusters": self.preserve_clusters,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, TextQuantizeConfig) and self.get_config() == other.get_config()


def weight_paths(layer):
    if isinstance(layer, keras.layers.Bidirectional):
        forward = ["forward_layer.cell.kernel", "forward_layer.cell.recurrent_kernel"]
        if getattr(layer.forward_layer, "use_bias", False):
            forward.append("forward_layer.cell.bias")  # passed through: see TextQuantizeConfig
        return forward + ["backward_layer.cell.kernel", "backward_layer.cell.recurrent_kernel"]
    if isinstance(layer, RNN_TYPES):
        return ["cell.kernel", "cell.recurrent_kernel"]
    if isinstance(layer, keras.layers.Embedding):
        return ["embeddings"]
    if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D)):
        return ["kernel"]
    return None


def _single_output(layer):
    if isinstance(layer, RNN_TYPES) and layer.return_state:
        return False
    if isinstance(layer, keras.layers.Bidirectional) and (layer.return_state or layer.merge_mode is None):
        return False
    return True


def config_for(layer, preserve_sparsity=False, bits=8, activation_bits=8, preserve_clusters=False):
    """The `QuantizeConfig` tfcompress uses for `layer`, or None if it has none.

    Layers TFMOT handles without weights (pooling, dropout, activations, ...)
    return None and keep TFMOT's own configuration.
    """
    paths = weight_paths(layer)
    if paths is not None:
        if isinstance(layer, keras.layers.Bidirectional) and not isinstance(layer.forward_layer, RNN_TYPES):
            return None
        return TextQuantizeConfig(
            paths,
            passthrough=[p for p in paths if p.endswith(".bias")],
            per_axis=isinstance(layer, keras.layers.Conv1D),
            quantize_output=_single_output(layer) and not isinstance(layer, keras.layers.Embedding),
            preserve_sparsity=preserve_sparsity,
            weight_bits=bits,
            activation_bits=activation_bits,
            preserve_clusters=preserve_clusters,
        )
    if isinstance(layer, (keras.layers.LayerNormalization, keras.layers.BatchNormalization)):
        return TextQuantizeConfig([], quantize_output=True, activation_bits=activation_bits)
    if isinstance(layer, (keras.layers.MaxPooling1D, keras.layers.Masking, CapVocabulary)):
        return TextQuantizeConfig([], quantize_output=False)
    return None


def weightless_config(layer, registry, activation_bits):
    """TFMOT's rule for a layer without weights (Dropout, Activation, pooling
    ...), at another activation bit width: the same decision whether to
    quantize the output. None if the rule quantizes weights or activations."""
    tfmot_config = registry.get_quantize_config(layer)
    if tfmot_config.get_weights_and_quantizers(layer) or tfmot_config.get_activations_and_quantizers(layer):
        return None
    return TextQuantizeConfig(
        [], quantize_output=bool(tfmot_config.get_output_quantizers(layer)), activation_bits=activation_bits
    )


class TextRegistry(default_8bit_quantize_registry.Default8BitQuantizeRegistry):
    def supports(self, layer):
        return config_for(layer) is not None or super().supports(layer)

    def get_quantize_config(self, layer):
        config = config_for(layer)
        return config if config is not None else super().get_quantize_config(layer)


class TextLayoutTransform(default_8bit_quantize_layout_transform.Default8BitQuantizeLayoutTransform):
    """TFMOT's layout transforms, without a quantize layer on integer inputs."""

    def apply(self, model, layer_quantize_map):
        # Sequential models do not list their InputLayer in `layers`.
        for layer in list(model.layers) + list(getattr(model, "_input_layers", [])):
            if isinstance(layer, keras.layers.InputLayer) and tf.as_dtype(layer.dtype).is_integer:
                layer_quantize_map.pop(layer.name, None)
        return super().apply(model, layer_quantize_map)


class TextScheme(default_8bit_quantize_scheme.Default8BitQuantizeScheme):
    def get_layout_transformer(self):
        return TextLayoutTransform()

    def get_quantize_registry(self):
        return TextRegistry()


def quantize_scope():
    """A custom-object scope for loading QAT models (also registered globally)."""
    return tfmot_quant.quantize_scope(custom_objects())


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
