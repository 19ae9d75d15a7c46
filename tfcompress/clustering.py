"""Weight clustering for text models, through TFMOT's Keras wrappers.

`cluster(model, clusters=16)` returns a copy of the model whose chosen weights
(embedding tables, kernels, recurrent kernels; never biases) each take at
most `clusters` distinct values, the cluster centroids, which train with
`model.fit`. `strip(model)` returns a plain Keras model holding the clustered
values, and `cluster_report(model)` counts the distinct values of every
weight. A weight with 16 distinct values needs 4 bits per entry plus a
16-entry table: the `.tflite` file still stores one byte (int8) or four
(float) per weight, but those bytes repeat, so the file compresses (gzip, or
the app store's download compression) to a fraction of its size.

What tfcompress adds to TFMOT's `cluster_weights`:

- **Bidirectional** RNNs, LSTM, GRU, SimpleRNN, Embedding, Dense and Conv1D
  are wrapped, chosen by type, name or predicate (`layers=`); a report says
  what was clustered and what was skipped and why (TFMOT raises on the first
  layer it does not know, e.g. `LayerNormalization`).
- **Sparsity kept**: `preserve_sparsity="auto"` turns on TFMOT's
  sparsity-preserving clustering when a tenth or more of the weights are
  exact zeros (a pruned model), so zeros stay zero; a model with pruning
  wrappers is stripped first.
- `strip()` builds fresh layers (TFMOT's returns the clustered model's own
  layer objects for unclustered layers, so the two models share them).
- **Saving works**: TFMOT keeps the sparsity masks in plain tensors made when
  the wrapper builds, so a loaded sparsity-preserving model lost its zeros and
  answered differently; RNN wrappers could not be saved as a SavedModel.
- Keras 3 models are converted; mixed-precision models are clustered in
  float32 (with one warning); saved clustered models load with
  `tfcompress.load_model` without custom objects.
- `tfcompress.quantization.quantize` on a clustered (stripped) model keeps the
  clusters through quantization-aware training (CQAT), and the zeros as well
  when it was pruned (PCQAT).
"""

import logging

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.clustering.keras import (
    cluster_config,
    cluster_wrapper,
    clustering_registry,
)

from tfcompress import metrics
from tfcompress._keras import (
    clone_with,
    ensure_tf_keras,
    is_mixed_precision,
    keras,
    layer_selector,
    rebuild_float32,
    require_graph_model,
    warn_mixed_once,
)

log = logging.getLogger("tfcompress")

TFMOTClusterWeights = cluster_wrapper.ClusterWeights


class _SavedSparsity:
    """TFMOT's clustering wrapper, fixed to survive saving.

    - With `preserve_sparsity`, TFMOT computes the sparsity masks and the index
      of the zero centroid once, when the wrapper builds, as plain tensors: a
      loaded model rebuilds them from its freshly initialised weights, so the
      zeros are no longer pinned and its answers change. Here they are
      variables, saved and restored with the rest.
    - The wrapper points the layer's kernel attributes at clustered tensors,
      so the layer and its cells must not be traced on their own when saving
      a SavedModel (they would capture a tensor of another graph); they are
      rebuilt from their configuration instead.
    """

    def build(self, input_shape):
        super().build(input_shape)
        for sub in [self.layer] + list(self.layer._flatten_layers(include_self=False)):  # noqa: SLF001
            sub._must_restore_from_config = True  # noqa: SLF001
        if not self.preserve_sparsity:
            return
        for name in list(self.sparsity_masks):
            mask = self.sparsity_masks[name]
            self.sparsity_masks[name] = self.add_weight(
                f"sparsity_mask_{name}",
                shape=mask.shape,
                dtype=mask.dtype,
                trainable=False,
                initializer=keras.initializers.Constant(mask.numpy()),
            )
            zero = self.zero_idx[name]
            self.zero_idx[name] = self.add_weight(
                f"zero_centroid_{name}",
                shape=zero.shape,
                dtype=zero.dtype,
                trainable=False,
                initializer=keras.initializers.Constant(zero.numpy()),
            )


@keras.saving.register_keras_serializable(package="tfcompress")
class ClusterWeights(_SavedSparsity, cluster_wrapper.ClusterWeights):
    """TFMOT's `ClusterWeights`, with its sparsity masks saved (see `cluster`)."""


@keras.saving.register_keras_serializable(package="tfcompress")
class ClusterWeightsRNN(_SavedSparsity, cluster_wrapper.ClusterWeightsRNN):
    """TFMOT's `ClusterWeightsRNN` (LSTM, GRU, SimpleRNN, Bidirectional), with
    its sparsity masks saved (see `cluster`)."""

CLUSTERABLE_TYPES = (
    keras.layers.Embedding,
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.LSTM,
    keras.layers.GRU,
    keras.layers.SimpleRNN,
    keras.layers.Bidirectional,
)

INITS = {
    "kmeans++": cluster_config.CentroidInitialization.KMEANS_PLUS_PLUS,
    "linear": cluster_config.CentroidInitialization.LINEAR,
    "density": cluster_config.CentroidInitialization.DENSITY_BASED,
    "random": cluster_config.CentroidInitialization.RANDOM,
}
AGGREGATIONS = {
    "sum": cluster_config.GradientAggregation.SUM,
    "average": cluster_config.GradientAggregation.AVG,
}

_RNN = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)


def is_clustered(model):
    """True if `model` has clustering wrappers (TFMOT's or tfcompress's)."""
    return any(isinstance(layer, TFMOTClusterWeights) for layer in model.layers)


def custom_objects():
    """The classes a saved clustered model names, for `keras.models.load_model`
    (`tfcompress.load_model` needs none of this). Files saved by TFMOT's own
    `cluster_weights` load with TFMOT's classes."""
    return {
        "ClusterWeights": cluster_wrapper.ClusterWeights,
        "ClusterWeightsRNN": cluster_wrapper.ClusterWeightsRNN,
        "tfcompress>ClusterWeights": ClusterWeights,
        "tfcompress>ClusterWeightsRNN": ClusterWeightsRNN,
    }


def clusterable_weights(layer):
    """The weights clustering applies to: embedding tables, kernels and
    recurrent kernels (both directions of a Bidirectional RNN)."""
    if isinstance(layer, keras.layers.Bidirectional):
        return [w for d in (layer.forward_layer, layer.backward_layer) for w in clusterable_weights(d)]
    if isinstance(layer, _RNN):
        return [layer.cell.kernel, layer.cell.recurrent_kernel]
    if isinstance(layer, keras.layers.Embedding):
        return [layer.embeddings]
    if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D)):
        return [layer.kernel]
    return []


def _unsupported_reason(layer, clusters):
    if isinstance(layer, keras.layers.Bidirectional) and not isinstance(layer.forward_layer, _RNN):
        return f"Bidirectional({type(layer.forward_layer).__name__}) wraps no LSTM/GRU/SimpleRNN"
    if not isinstance(layer, CLUSTERABLE_TYPES) or not clustering_registry.ClusteringRegistry.supports(layer):
        return "TFMOT has no clustering rule for it"
    small = [w for w in clusterable_weights(layer) if int(np.prod(w.shape)) <= clusters]
    if small:
        return f"a weight of shape {tuple(small[0].shape)} has no more entries than clusters={clusters}"
    return None


def _check_arguments(clusters, init, preserve_sparsity, gradient_aggregation):
    if not isinstance(clusters, int) or isinstance(clusters, bool) or not 2 <= clusters <= 256:
        raise ValueError(
            "clusters must be an integer in [2, 256] (the distinct values each weight keeps; "
            f"16 = 4 bits per weight). Received: clusters={clusters!r}."
        )
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}. Received: init={init!r}.")
    if preserve_sparsity not in ("auto", True, False):
        raise ValueError(
            f"preserve_sparsity must be 'auto', True or False. Received: preserve_sparsity={preserve_sparsity!r}."
        )
    if gradient_aggregation not in AGGREGATIONS:
        raise ValueError(
            f"gradient_aggregation must be 'sum' or 'average'. Received: gradient_aggregation={gradient_aggregation!r}."
        )


def cluster(model, clusters=16, init="kmeans++", layers=None, preserve_sparsity="auto", gradient_aggregation="sum"):
    """Returns a copy of `model` whose chosen weights are clustered.

    Compile and `fit` the result as usual (it is not compiled): each clustered
    weight is computed as `centroids[indices]`, the centroids train, and the
    indices follow the nearest centroid at every step. Fine-tune from a
    trained model: clustering a random model works but loses accuracy.

    Args:
        model: a trained tf_keras or Keras 3 Sequential/Functional model. A
            model with pruning wrappers is stripped first.
        clusters: distinct values per weight tensor, 2..256 (with sparsity
            preserved, zero is one of them). 16 means 4 bits per weight.
        init: how the centroids start: `"kmeans++"` (TFMOT's k-means++ on the
            weight's values; the most accurate start), `"linear"` (evenly
            spaced between the weight's minimum and maximum), `"density"`
            (evenly spaced on the cumulative distribution), `"random"`.
        layers: which layers to cluster: `None` (every Embedding, Dense,
            Conv1D, LSTM, GRU, SimpleRNN and Bidirectional RNN layer), a list
            of layer classes and/or names, or a function `layer -> bool`.
        preserve_sparsity: keep exact zeros at zero (a zero centroid that
            never moves, zero weights pinned to it). `"auto"`: when at least
            10% of the clusterable weights are exact zeros.
        gradient_aggregation: how a centroid's gradient is formed from its
            weights' gradients, `"sum"` (TFMOT's default) or `"average"`.

    Returns:
        A new tf_keras model with TFMOT clustering wrappers. Its
        `tfcompress_clustering_report` attribute lists the clustered and
        skipped layers and the settings used.

    Raises:
        ValueError: a bad argument, a subclassed model, a layer named in
            `layers` that cannot be clustered, or no clusterable layer; each
            message names the argument or layer and the fix.
    """
    from tfcompress import pruning

    _check_arguments(clusters, init, preserve_sparsity, gradient_aggregation)
    model = ensure_tf_keras(model, caller="cluster")
    require_graph_model(model, "cluster")
    if is_clustered(model):
        raise ValueError(
            f"model {model.name!r} is already clustered (it has clustering wrappers). Fix: call "
            "tfcompress.clustering.strip(model) first, or keep training the clustered model."
        )
    if pruning.is_pruned(model):
        model = pruning.strip(model)
    if is_mixed_precision(model):
        warn_mixed_once()
        model = rebuild_float32(model)
    chosen = layer_selector(layers, "layers", lambda layer: isinstance(layer, CLUSTERABLE_TYPES), model, "cluster")
    explicit = layers is not None
    targets = [layer for layer in model.layers if chosen(layer) and not isinstance(layer, keras.layers.InputLayer)]
    zero_fraction = metrics.zero_fraction(
        w.numpy() for layer in targets if isinstance(layer, CLUSTERABLE_TYPES) for w in clusterable_weights(layer)
    )
    if preserve_sparsity == "auto":
        preserve_sparsity = zero_fraction >= 0.10
    if preserve_sparsity and clusters < 3:
        raise ValueError(
            f"clusters={clusters} with preserve_sparsity: one cluster is the zeros, so at least 3 are "
            "needed. Fix: clusters=3 or more, or preserve_sparsity=False."
        )
    report = {
        "clustered": [],
        "skipped": [],
        "clusters": clusters,
        "init": init,
        "preserve_sparsity": bool(preserve_sparsity),
        "zero_fraction": zero_fraction,
    }

    def wrap(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.InputLayer):
            return fresh
        if not chosen(layer):
            if isinstance(layer, CLUSTERABLE_TYPES):
                report["skipped"].append((layer.name, "not chosen by layers="))
            return fresh
        reason = _unsupported_reason(layer, clusters)
        if reason is not None:
            if explicit:
                raise ValueError(
                    f"layer {layer.name!r} ({type(layer).__name__}) was chosen for clustering, but "
                    f"{reason}. Clusterable: Embedding, Dense, Conv1D, LSTM, GRU, SimpleRNN, "
                    "Bidirectional(LSTM/GRU/SimpleRNN). Fix: leave it out of layers=."
                )
            report["skipped"].append((layer.name, reason))
            return fresh
        # The wrapper sets its centroids from the weights it finds when it is
        # built, so the fresh layer gets the trained weights first. (Built
        # in its own name scope, as a call would, so that two layers' weights
        # do not share a name, which .h5 files cannot hold.)
        with tf.name_scope(fresh.name):
            fresh.build(_input_shape(layer))
        fresh.set_weights(layer.get_weights())
        cls = ClusterWeightsRNN if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)) else ClusterWeights
        report["clustered"].append(layer.name)
        layer_init = init
        if init == "kmeans++" and not _enough_for_kmeans(layer, clusters, preserve_sparsity):
            # TFMOT's k-means++ start fails ("Expected num_to_sample <=
            # points.rows()") when a weight (or, with sparsity kept, its
            # positive or negative part) has fewer entries than centroids.
            layer_init = "linear"
            report.setdefault("init_per_layer", {})[layer.name] = "linear (too few weights for kmeans++)"
        return cls(
            fresh,
            number_of_clusters=clusters,
            cluster_centroids_init=INITS[layer_init],
            preserve_sparsity=bool(preserve_sparsity),
            cluster_gradient_aggregation=AGGREGATIONS[gradient_aggregation],
        )

    # Wrappers are named "cluster_<layer>", so clone_with copies the weights
    # of the other layers only; each wrapper already holds its layer's.
    clustered = clone_with(model, wrap)
    if not report["clustered"]:
        raise ValueError(
            f"cluster(): no layer of model {model.name!r} was chosen and clusterable "
            f"(skipped: {report['skipped'] or 'none'}). Fix: check layers=."
        )
    clustered.tfcompress_clustering_report = report
    log.info(
        "clustering %s: %s into %d clusters (init %s, preserve_sparsity=%s)",
        model.name,
        ", ".join(report["clustered"]),
        clusters,
        init,
        bool(preserve_sparsity),
    )
    return clustered


def _enough_for_kmeans(layer, clusters, preserve_sparsity):
    for weight in clusterable_weights(layer):
        value = weight.numpy().reshape(-1)
        parts = (value[value > 0], value[value < 0]) if preserve_sparsity else (value,)
        if any(part.size < clusters for part in parts):
            return False
    return True


def _input_shape(layer):
    shape = layer.input_shape
    return shape[0] if isinstance(shape, list) else shape


def strip(model):
    """Returns a plain Keras model holding the clustered weights.

    Every wrapper is replaced by a fresh copy of its layer whose clustered
    weights are the centroid values (at most `clusters` distinct values each;
    zeros exact when sparsity was preserved); every other layer is a fresh
    copy too. The result computes the same outputs as the clustered model.
    """
    model = ensure_tf_keras(model, caller="clustering.strip")
    require_graph_model(model, "clustering.strip")

    def unwrap(layer):
        inner = layer.layer if isinstance(layer, TFMOTClusterWeights) else layer
        return inner.__class__.from_config(inner.get_config())

    stripped = clone_with(model, unwrap)  # copies the unwrapped layers' weights
    by_name = {layer.layer.name: layer for layer in model.layers if isinstance(layer, TFMOTClusterWeights)}
    for layer in stripped.layers:
        if layer.name in by_name:
            layer.set_weights(_clustered_values(by_name[layer.name]))
    return stripped


def _clustered_values(wrapper):
    """The wrapped layer's weights, in its own order, clustered ones replaced
    by `centroids[indices]` (what the wrapper computes with)."""
    wrapper.update_clustered_weights_associations()
    values = [w.numpy() for w in wrapper.layer.weights]
    for position, name in sorted(wrapper.position_original_weights.items()):
        values.insert(position, np.asarray(wrapper.get_weight_from_layer(name)))
    return values


def distinct_values(array, per_channel=False):
    """The number of distinct values of `array` (the maximum over output
    channels, the last axis, with `per_channel`)."""
    array = np.asarray(array)
    if per_channel:
        flat = array.reshape(-1, array.shape[-1])
        return max(len(np.unique(flat[:, c])) for c in range(flat.shape[1]))
    return len(np.unique(array))


class ClusterReport(list):
    """Rows of (layer, weight, shape, distinct, zeros, size), printable as a table."""

    def max_distinct(self):
        return max((r["distinct"] for r in self), default=0)

    def __str__(self):
        lines = [f"{'layer':<28} {'weight':<22} {'shape':<14} {'distinct':>8} {'zeros':>7}"]
        for r in self:
            lines.append(
                f"{r['layer']:<28} {r['weight']:<22} {str(r['shape']):<14} {r['distinct']:>8} "
                f"{r['zeros'] / max(r['size'], 1):>7.1%}"
            )
        return "\n".join(lines)


def _weight_label(layer, weight):
    """`kernel`, `lstm_cell/kernel`, `forward_lstm/lstm_cell/kernel`: the
    variable's name inside its layer."""
    name = weight.name.split(":")[0]
    return name[len(layer.name) + 1 :] if name.startswith(layer.name + "/") else name


def cluster_report(model):
    """Distinct values and zeros of every clusterable weight, at any time.

    For a model with clustering wrappers, the values the layers compute with
    (centroids gathered by the current indices) are counted.
    """
    model = ensure_tf_keras(model, caller="cluster_report")
    if is_clustered(model):
        model = strip(model)
    rows = ClusterReport()
    for layer in model.layers:
        if not isinstance(layer, CLUSTERABLE_TYPES):
            continue
        for weight in clusterable_weights(layer):
            value = weight.numpy()
            rows.append(
                {
                    "layer": layer.name,
                    "weight": _weight_label(layer, weight),
                    "shape": tuple(value.shape),
                    "distinct": distinct_values(value),
                    "zeros": int(value.size - np.count_nonzero(value)),
                    "size": int(value.size),
                }
            )
    return rows
