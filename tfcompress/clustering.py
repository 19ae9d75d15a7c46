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
- **Per-channel clustering** for every one of those layers
  (`per_channel=True`: each output channel has its own centroids; TFMOT
  offers it for Conv2D only).
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
    clustering_algorithm,
    clustering_centroids,
    clustering_registry,
)

from tfcompress import metrics
from tfcompress.pruning.layers import PRUNABLE_TYPES
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


class PerChannelAlgorithm(clustering_algorithm.ClusteringAlgorithm):
    """Clusters each channel of a weight of any rank on its own.

    The channel is the last axis (a Dense or LSTM kernel's output units, an
    embedding table's dimensions, a Conv1D kernel's filters); the centroids
    have shape `(channels, clusters)`. TFMOT's own per-channel algorithm
    indexes 4-D Conv2D kernels only, one channel at a time; this one gathers
    every channel in one op.
    """

    def get_pulling_indices(self, weight, centroids=None):
        centroids = self.cluster_centroids if centroids is None else centroids
        flat = tf.reshape(weight, [-1, weight.shape[-1]])  # (entries, channels)
        distance = tf.abs(flat[:, :, None] - centroids[None, :, :])
        return tf.reshape(tf.argmin(distance, axis=-1), tf.shape(weight))

    def get_clustered_weight(self, pulling_indices, original_weight):
        channels, clusters = self.cluster_centroids.shape
        indices = tf.transpose(tf.reshape(pulling_indices, [-1, channels]))  # (channels, entries)
        centroids = self.cluster_centroids
        if self.cluster_gradient_aggregation == cluster_config.GradientAggregation.AVG:
            sizes = tf.reduce_sum(tf.one_hot(indices, clusters, dtype=centroids.dtype), axis=1)
            centroids = self.average_centroids_gradient_by_cluster_size(centroids, tf.stop_gradient(sizes))
        elif self.cluster_gradient_aggregation != cluster_config.GradientAggregation.SUM:
            raise ValueError(f"cluster_gradient_aggregation={self.cluster_gradient_aggregation} is not implemented.")
        clustered = tf.gather(centroids, indices, batch_dims=1)  # (channels, entries)
        clustered = tf.reshape(tf.transpose(clustered), tf.shape(original_weight))
        return self.add_gradient_to_original_weight(clustered, tf.identity(original_weight))


def per_channel_centroids(value, clusters, init, preserve_sparsity):
    """Starting centroids, shape `(channels, clusters)`: TFMOT's initialiser
    (`init`, a `CentroidInitialization`) run on each channel's values (the
    last axis). A channel too small for k-means++ starts linear; a channel
    with no non-zero value to keep gets zero centroids. Returns the centroids
    and how many channels started linear instead of k-means++."""
    kinds = cluster_config.CentroidInitialization
    columns = np.asarray(value).reshape(-1, np.shape(value)[-1]).T
    factory = clustering_centroids.CentroidsInitializerFactory.get_centroid_initializer
    rows, linear = [], 0
    for column in columns:
        method = init
        if init == kinds.KMEANS_PLUS_PLUS and not _enough_values(column, clusters, preserve_sparsity):
            method, linear = kinds.LINEAR, linear + 1
        if method in (kinds.LINEAR, kinds.DENSITY_BASED):
            # TFMOT's, in NumPy: its eager version takes seconds per channel.
            centroids = _spaced_centroids(column, clusters, method == kinds.DENSITY_BASED, preserve_sparsity)
        else:
            start = factory(method)(tf.constant(column), clusters, False, "channels_last", preserve_sparsity)
            centroids = np.asarray(start.get_cluster_centroids()).reshape(-1)
        rows.append(np.pad(centroids.astype(columns.dtype), (0, clusters - centroids.size)))  # an all-zero channel has one
    return np.stack(rows), linear


def _spaced_centroids(values, clusters, density, preserve_sparsity):
    """TFMOT's linear and density-based starting centroids for one channel
    (`clustering_centroids.LinearCentroidsInitialisation` and
    `DensityBasedCentroidsInitialisation`), zero-centroid split included."""
    if not preserve_sparsity:
        return _interval_centroids(values, clusters, density, False)
    negative, positive = values[values < 0], values[values > 0]
    if negative.size + positive.size == 0:
        return np.zeros(1, values.dtype)
    on_negative = _negative_share(negative.size, positive.size, clusters)
    return np.concatenate(
        [
            _interval_centroids(negative, on_negative, density, True),
            np.zeros(1, values.dtype),
            _interval_centroids(positive, clusters - 1 - on_negative, density, True),
        ]
    )


def _interval_centroids(values, count, density, preserve_sparsity):
    if count <= 0:
        return np.zeros(0, values.dtype)
    low, high = float(values.min()), float(values.max())
    if not density:
        return np.linspace(low, high, count)
    gap = min(0.01, min(abs(low), abs(high)) / 2) if preserve_sparsity else 0.01
    grid = np.linspace(low - gap, high + gap, 30)
    cdf = np.searchsorted(np.sort(values), grid, side="right") / values.size
    found = np.searchsorted(cdf, np.linspace(0.01, 1, count), side="right")
    # TFMOT then solves the line through (grid[i], cdf[i]) and its neighbour
    # for y = cdf[i], which is grid[i] itself.
    return grid[np.minimum(found, grid.size - 1)]


class _PerChannel:
    """Per-channel clustering for the wrapped layer's weights of any rank
    (TFMOT's wrapper clusters per channel only for Conv2D): each channel has
    `number_of_clusters` centroids of its own, sparsity kept per channel."""

    def __init__(self, layer, *args, per_channel=False, **kwargs):
        super().__init__(layer, *args, **kwargs)
        self.per_channel = bool(per_channel)
        self.linear_channels = 0

    def build(self, input_shape):
        if not self.per_channel:
            return super().build(input_shape)
        # TFMOT's build, with the per-channel centroids and algorithm.
        keras.layers.Wrapper.build(self, input_shape)
        self.build_input_shape = input_shape
        for name, weight in self.layer.get_clusterable_weights():
            original = self.get_weight_from_layer(name)
            self.original_clusterable_weights[name] = original
            setattr(self, "original_weight_" + name, original)
            position = next(i for i, w in enumerate(self.layer.weights) if w is original)
            self.position_original_weights[position] = name
            centroids, linear = per_channel_centroids(
                weight.numpy(), self.number_of_clusters, self.cluster_centroids_init, self.preserve_sparsity
            )
            self.linear_channels += linear
            self.cluster_centroids[name] = self.add_weight(
                f"cluster_centroids_{name}",
                shape=centroids.shape,
                dtype=weight.dtype,
                trainable=True,
                initializer=keras.initializers.Constant(centroids),
            )
            algorithm = PerChannelAlgorithm(
                clusters_centroids=self.cluster_centroids[name],
                cluster_gradient_aggregation=self.cluster_gradient_aggregation,
                data_format=self.data_format,
            )
            self.clustering_algorithms[name] = algorithm
            indices = algorithm.get_pulling_indices(weight)
            self.pulling_indices[name] = self.add_weight(
                f"pulling_indices_{name}",
                shape=indices.shape,
                dtype=tf.int64,
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                initializer=keras.initializers.Constant(indices.numpy()),
            )
            if self.preserve_sparsity:
                clustered = algorithm.get_clustered_weight(indices, original)
                self.sparsity_masks[name] = tf.cast(tf.not_equal(clustered, 0), tf.float32)
                self.zero_idx[name] = tf.argmin(tf.abs(self.cluster_centroids[name]), axis=-1)  # one per channel
        return None

    def update_clustered_weights_associations(self):
        if not self.per_channel:
            return super().update_clustered_weights_associations()
        for name, original in self.original_clusterable_weights.items():
            if self.preserve_sparsity:
                centroids = self.cluster_centroids[name]
                zero = tf.one_hot(self.zero_idx[name], centroids.shape[-1], dtype=centroids.dtype)
                centroids.assign(centroids * (1 - zero))  # each channel's zero centroid stays zero
                original = original * self.sparsity_masks[name]  # and so do its zeros
            algorithm = self.clustering_algorithms[name]
            indices = algorithm.get_pulling_indices(original)
            self.pulling_indices[name].assign(indices)
            self.set_weight_to_layer(name, algorithm.get_clustered_weight(indices, original))
        return None

    def get_config(self):
        return {**super().get_config(), "per_channel": self.per_channel}


@keras.saving.register_keras_serializable(package="tfcompress")
class ClusterWeights(_SavedSparsity, _PerChannel, cluster_wrapper.ClusterWeights):
    """TFMOT's `ClusterWeights`, with its sparsity masks saved and per-channel
    clustering for any layer (see `cluster`)."""


@keras.saving.register_keras_serializable(package="tfcompress")
class ClusterWeightsRNN(_SavedSparsity, _PerChannel, cluster_wrapper.ClusterWeightsRNN):
    """TFMOT's `ClusterWeightsRNN` (LSTM, GRU, SimpleRNN, Bidirectional), with
    its sparsity masks saved and per-channel clustering (see `cluster`)."""

# The text layers pruning takes are the ones clustering takes.
CLUSTERABLE_TYPES = PRUNABLE_TYPES

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


def _unsupported_reason(layer, clusters, per_channel=False):
    if isinstance(layer, keras.layers.Bidirectional) and not isinstance(layer.forward_layer, _RNN):
        return f"Bidirectional({type(layer.forward_layer).__name__}) wraps no LSTM/GRU/SimpleRNN"
    if not isinstance(layer, CLUSTERABLE_TYPES) or not clustering_registry.ClusteringRegistry.supports(layer):
        return "TFMOT has no clustering rule for it"
    small = [w for w in clusterable_weights(layer) if int(np.prod(w.shape)) <= clusters]
    if small:
        return f"a weight of shape {tuple(small[0].shape)} has no more entries than clusters={clusters}"
    if per_channel:
        small = [w for w in clusterable_weights(layer) if int(np.prod(w.shape[:-1])) <= clusters]
        if small:
            return (
                f"a weight of shape {tuple(small[0].shape)} has no more entries per channel "
                f"({int(np.prod(small[0].shape[:-1]))}) than clusters={clusters}"
            )
    return None


def _check_arguments(clusters, init, preserve_sparsity, gradient_aggregation, per_channel):
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
    if not isinstance(per_channel, bool):
        raise ValueError(f"per_channel must be True or False. Received: per_channel={per_channel!r}.")
    if gradient_aggregation not in AGGREGATIONS:
        raise ValueError(
            f"gradient_aggregation must be 'sum' or 'average'. Received: gradient_aggregation={gradient_aggregation!r}."
        )


def cluster(
    model, clusters=16, init="kmeans++", layers=None, preserve_sparsity="auto", gradient_aggregation="sum", per_channel=False
):
    """Returns a copy of `model` whose chosen weights are clustered.

    Compile and `fit` the result as usual (it is not compiled): each clustered
    weight is computed as `centroids[indices]`, the centroids train, and the
    indices follow the nearest centroid at every step. Fine-tune from a
    trained model: clustering a random model works but loses accuracy.

    Args:
        model: a trained tf_keras or Keras 3 Sequential/Functional model. A
            model with pruning wrappers is stripped first.
        clusters: distinct values per weight tensor (per channel with
            `per_channel`), 2..256 (with sparsity preserved, zero is one of
            them). 16 means 4 bits per weight.
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
        per_channel: give each channel (a weight's last axis: a kernel's
            output units, an embedding table's dimensions) its own `clusters`
            centroids, for every clusterable layer (TFMOT does this for
            Conv2D only). It fits each channel's values more closely, since
            they no longer share a grid with channels of another scale (on
            SST-2 that bought no accuracy: BENCHMARKS.md); the file
            compresses less, because the weight as a whole holds up to
            `clusters` × channels distinct values (each channel still needs
            log2(clusters) bits per entry plus its own table).

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

    _check_arguments(clusters, init, preserve_sparsity, gradient_aggregation, per_channel)
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
        "per_channel": per_channel,
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
        reason = _unsupported_reason(layer, clusters, per_channel)
        if reason is not None:
            if explicit:
                raise ValueError(
                    f"layer {layer.name!r} ({type(layer).__name__}) was chosen for clustering, but "
                    f"{reason}. Clusterable: Embedding, Dense, Conv1D, LSTM, GRU, SimpleRNN, "
                    "Bidirectional(LSTM/GRU/SimpleRNN). Fix: "
                    + ("fewer clusters, per_channel=False, or " if "per channel" in reason else "")
                    + "leave it out of layers=."
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
        if init == "kmeans++" and not per_channel and not _enough_for_kmeans(layer, clusters, preserve_sparsity):
            layer_init = "linear"
            report.setdefault("init_per_layer", {})[layer.name] = "linear (too few weights for kmeans++)"
        return cls(
            fresh,
            number_of_clusters=clusters,
            cluster_centroids_init=INITS[layer_init],
            preserve_sparsity=bool(preserve_sparsity),
            cluster_gradient_aggregation=AGGREGATIONS[gradient_aggregation],
            per_channel=per_channel,
        )

    # Wrappers are named "cluster_<layer>", so clone_with copies the weights
    # of the other layers only; each wrapper already holds its layer's.
    clustered = clone_with(model, wrap)
    if not report["clustered"]:
        raise ValueError(
            f"cluster(): no layer of model {model.name!r} was chosen and clusterable "
            f"(skipped: {report['skipped'] or 'none'}). Fix: check layers=."
        )
    for layer in clustered.layers:
        if getattr(layer, "linear_channels", 0):  # counted only for a kmeans++ start
            report.setdefault("init_per_layer", {})[layer.layer.name] = (
                f"linear in {layer.linear_channels} channels (too few weights for kmeans++)"
            )
    clustered.tfcompress_clustering_report = report
    log.info(
        "clustering %s: %s into %d clusters%s (init %s, preserve_sparsity=%s)",
        model.name,
        ", ".join(report["clustered"]),
        clusters,
        " per channel" if per_channel else "",
        init,
        bool(preserve_sparsity),
    )
    return clustered


def _enough_for_kmeans(layer, clusters, preserve_sparsity):
    return all(_enough_values(w.numpy().reshape(-1), clusters, preserve_sparsity) for w in clusterable_weights(layer))


def _enough_values(value, clusters, preserve_sparsity):
    # TFMOT's k-means++ start fails ("Expected num_to_sample <= points.rows()")
    # when a weight has fewer entries than centroids; with sparsity kept, when
    # its negative or positive part has fewer entries than the centroids TFMOT
    # gives it (clusters - 1, shared in proportion to their sizes).
    if not preserve_sparsity:
        return value.size >= clusters
    negative, positive = int(np.sum(value < 0)), int(np.sum(value > 0))
    if negative + positive == 0:
        return True  # TFMOT starts such a weight at the zero centroid alone
    on_negative = _negative_share(negative, positive, clusters)
    return negative >= on_negative and positive >= clusters - 1 - on_negative


def _negative_share(negative, positive, clusters):
    """How many of the `clusters - 1` non-zero centroids TFMOT's
    sparsity-preserving start gives the negative weights: a share in
    proportion to their count (rounded half to even, as `tf.math.round`)."""
    return int(np.round((clusters - 1) * negative / (negative + positive)))


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
    """Rows of (layer, weight, shape, distinct, distinct_per_channel, zeros,
    size), printable as a table. `distinct_per_channel` is the most distinct
    values any one channel (last axis) holds."""

    def max_distinct(self, per_channel=False):
        key = "distinct_per_channel" if per_channel else "distinct"
        return max((r[key] for r in self), default=0)

    def __str__(self):
        lines = [f"{'layer':<28} {'weight':<22} {'shape':<14} {'distinct':>8} {'per channel':>11} {'zeros':>7}"]
        for r in self:
            lines.append(
                f"{r['layer']:<28} {r['weight']:<22} {str(r['shape']):<14} {r['distinct']:>8} "
                f"{r['distinct_per_channel']:>11} {r['zeros'] / max(r['size'], 1):>7.1%}"
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
                    "distinct_per_channel": distinct_values(value, per_channel=True),
                    "zeros": int(value.size - np.count_nonzero(value)),
                    "size": int(value.size),
                }
            )
    return rows
