"""The pruning layers: TFMOT's wrapper with its fixes, a prunable Bidirectional,
and what a pruned model is made of."""

import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl, pruning_wrapper

from tfcompress._keras import keras, tfmot


tfmot_sparsity = tfmot.sparsity.keras
TFMOTWrapper = pruning_wrapper.PruneLowMagnitude
UpdatePruningStep = tfmot_sparsity.UpdatePruningStep
PruningSummaries = tfmot_sparsity.PruningSummaries

PRUNABLE_TYPES = (
    keras.layers.Embedding,
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.LSTM,
    keras.layers.GRU,
    keras.layers.SimpleRNN,
    keras.layers.Bidirectional,
)


@keras.saving.register_keras_serializable(package="tfcompress")
class PrunableBidirectional(keras.layers.Bidirectional, tfmot_sparsity.PrunableLayer):
    """A `Bidirectional` RNN whose two directions can be pruned.

    Identical to `keras.layers.Bidirectional`; it only tells TFMOT which
    weights to prune: the kernel and recurrent kernel of each direction's
    cell. `strip()` turns it back into a plain `Bidirectional`.
    """

    def get_prunable_weights(self):
        weights = []
        for layer in (self.forward_layer, self.backward_layer):
            cell = layer.cell
            weights += [cell.kernel, cell.recurrent_kernel]
        return weights


@keras.saving.register_keras_serializable(package="tfcompress")
class PruneLowMagnitude(TFMOTWrapper):
    """TFMOT's pruning wrapper, with three fixes.

    - Its step counter starts at 0 (TFMOT's starts at -1 and only the
      `UpdatePruningStep` callback moves it, so training without the callback
      fails); with the callback present everything happens exactly as in TFMOT.
    - `get_config` keeps `sparsity_m_by_n`, which TFMOT's drops (a saved 2:4
      model reloaded as unstructured).
    - Masks and thresholds have distinct names, so layers with several pruned
      weights (LSTM, GRU, Bidirectional) save to `.h5`.
    """

    def build(self, input_shape):
        # TFMOT's build, with two changes: masks and thresholds get distinct
        # names (TFMOT calls them all "mask"/"threshold", which collide in .h5
        # files for layers with several pruned weights, e.g. LSTM, Bidirectional),
        # and the step counter starts at 0.
        keras.layers.Wrapper.build(self, input_shape)
        self.prunable_weights = self.layer.get_prunable_weights()
        several = len(self.prunable_weights) > 1
        weights, masks, thresholds = [], [], []
        for i, weight in enumerate(self.prunable_weights):
            dtype = getattr(weight, "true_dtype", weight.dtype)  # mixed precision
            suffix = f"_{i}" if several else ""
            masks.append(
                self.add_weight(
                    f"mask{suffix}",
                    shape=weight.shape,
                    initializer=keras.initializers.get("ones"),
                    dtype=dtype,
                    trainable=False,
                    aggregation=tf.VariableAggregation.MEAN,
                )
            )
            thresholds.append(
                self.add_weight(
                    f"threshold{suffix}",
                    shape=[],
                    initializer=keras.initializers.get("zeros"),
                    dtype=dtype,
                    trainable=False,
                    aggregation=tf.VariableAggregation.MEAN,
                )
            )
            weights.append(weight)
        self.pruning_vars = list(zip(weights, masks, thresholds))
        self.pruning_step = self.add_weight(
            "pruning_step",
            shape=[],
            initializer=keras.initializers.Constant(0),
            dtype=tf.int64,
            trainable=False,
        )
        self.pruning_obj = pruning_impl.Pruning(
            training_step_fn=lambda: self.pruning_step,
            pruning_vars=self.pruning_vars,
            pruning_schedule=self.pruning_schedule,
            block_size=self.block_size,
            sparsity_m_by_n=self.sparsity_m_by_n,
            block_pooling_type=self.block_pooling_type,
        )

    def get_config(self):
        config = super().get_config()
        config["sparsity_m_by_n"] = list(self.sparsity_m_by_n) if self.sparsity_m_by_n else None
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        m_by_n = config.pop("sparsity_m_by_n", None)
        schedule_config = config.pop("pruning_schedule")
        config["pruning_schedule"] = keras.utils.deserialize_keras_object(
            schedule_config,
            custom_objects={
                "ConstantSparsity": tfmot_sparsity.ConstantSparsity,
                "PolynomialDecay": tfmot_sparsity.PolynomialDecay,
            },
        )
        config["layer"] = keras.layers.deserialize(config.pop("layer"))
        return cls(sparsity_m_by_n=tuple(m_by_n) if m_by_n else None, **config)


def is_pruned(model):
    """True if `model` has pruning wrappers (TFMOT's or tfcompress's)."""
    return any(isinstance(layer, TFMOTWrapper) for layer in all_layers(model))


def custom_objects():
    """The classes a saved pruned model names, for `keras.models.load_model`
    (`tfcompress.load_model` needs none of this)."""
    return {
        "PruneLowMagnitude": TFMOTWrapper,
        "ConstantSparsity": tfmot_sparsity.ConstantSparsity,
        "PolynomialDecay": tfmot_sparsity.PolynomialDecay,
        "PrunableBidirectional": PrunableBidirectional,
        "tfcompress>PrunableBidirectional": PrunableBidirectional,
        "tfcompress>PruneLowMagnitude": PruneLowMagnitude,
    }


def all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def prunable_weights(layer):
    if hasattr(layer, "get_prunable_weights") and not isinstance(layer, PrunableBidirectional):
        return list(layer.get_prunable_weights())
    if isinstance(layer, keras.layers.Bidirectional):
        return [w for l in (layer.forward_layer, layer.backward_layer) for w in (l.cell.kernel, l.cell.recurrent_kernel)]
    if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)):
        return [layer.cell.kernel, layer.cell.recurrent_kernel]
    if isinstance(layer, keras.layers.Embedding):
        return [layer.embeddings]
    if hasattr(layer, "kernel"):
        return [layer.kernel]
    return []
