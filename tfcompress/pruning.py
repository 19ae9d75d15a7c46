"""Magnitude pruning for text models, through TFMOT's Keras wrappers.

`prune(model, target_sparsity=0.8, epochs=2, steps_per_epoch=500)` returns a
copy of the model whose chosen weights (kernels and embeddings; never biases)
are driven to the target sparsity while you train it with `model.fit`.
`strip(model)` then returns a plain Keras model with the zeros baked in, and
`sparsity_report(model)` tells the sparsity of every pruned weight at any time.

What tfcompress adds to TFMOT:

- **Bidirectional** layers are pruned (both directions' kernels and recurrent
  kernels); TFMOT refuses them.
- **The step callback cannot be forgotten.** TFMOT's wrapper fails at the first
  training step unless `UpdatePruningStep` is passed to `fit`. Models from
  `prune()` add it themselves when `fit` is called without it, and their
  wrappers start their step counter where the callback would have put it, so
  even a model loaded by plain Keras trains without it.
- **Structure**: block sparsity (`block_size=(1, 4)`) and 2:4 structured
  sparsity (`structure="2:4"`: two zeros in every group of four consecutive
  weights along the input dimension, the layout sparse kernels use).
- **Layer choice** by type, name or predicate; a report of what was pruned,
  what was skipped and why.
- Keras 3 models are converted, and mixed-precision models are pruned in
  float32 (TFMOT's wrappers break under `mixed_float16`), with one warning.
"""

import functools
import logging

import numpy as np
import tensorflow as tf

from tfcompress._keras import (
    clone_with,
    ensure_tf_keras,
    is_mixed_precision,
    keras,
    layer_selector,
    rebuild_float32,
    require_graph_model,
    tfmot,
    warn_mixed_once,
)

__all__ = [
    "prune",
    "strip",
    "sparsity_report",
    "SparsityReport",
    "PruneLowMagnitude",
    "PrunableBidirectional",
    "UpdatePruningStep",
    "PruningSummaries",
    "schedule",
    "is_pruned",
    "install_fit_hook",
    "custom_objects",
]

log = logging.getLogger("tfcompress")

from tensorflow_model_optimization.python.core.sparsity.keras import (  # noqa: E402
    prune_registry as _prune_registry,
    pruning_impl as _pruning_impl,
    pruning_wrapper as _pruning_wrapper,
)

_sparsity = tfmot.sparsity.keras
_TFMOTWrapper = _pruning_wrapper.PruneLowMagnitude
UpdatePruningStep = _sparsity.UpdatePruningStep
PruningSummaries = _sparsity.PruningSummaries

PRUNABLE_TYPES = (
    keras.layers.Embedding,
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.LSTM,
    keras.layers.GRU,
    keras.layers.SimpleRNN,
    keras.layers.Bidirectional,
)


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcompress")
class PrunableBidirectional(keras.layers.Bidirectional, _sparsity.PrunableLayer):
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
class PruneLowMagnitude(_TFMOTWrapper):
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
        self.pruning_obj = _pruning_impl.Pruning(
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
                "ConstantSparsity": _sparsity.ConstantSparsity,
                "PolynomialDecay": _sparsity.PolynomialDecay,
            },
        )
        config["layer"] = keras.layers.deserialize(config.pop("layer"))
        return cls(sparsity_m_by_n=tuple(m_by_n) if m_by_n else None, **config)


def is_pruned(model):
    """True if `model` has pruning wrappers (TFMOT's or tfcompress's)."""
    return any(isinstance(layer, _TFMOTWrapper) for layer in _layers(model))


def custom_objects():
    """The classes a saved pruned model names, for `keras.models.load_model`
    (`tfcompress.load_model` needs none of this)."""
    return {
        "PruneLowMagnitude": _TFMOTWrapper,
        "ConstantSparsity": _sparsity.ConstantSparsity,
        "PolynomialDecay": _sparsity.PolynomialDecay,
        "PrunableBidirectional": PrunableBidirectional,
        "tfcompress>PrunableBidirectional": PrunableBidirectional,
        "tfcompress>PruneLowMagnitude": PruneLowMagnitude,
    }


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


# --------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------


def _check_sparsity(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(
            f"{name} must be a number in [0, 1): the fraction of weights set to zero "
            f"(0.8 keeps one weight in five). Received: {name}={value!r}."
        )


def schedule(
    target_sparsity,
    kind="auto",
    begin_step=0,
    end_step=None,
    epochs=None,
    steps_per_epoch=None,
    frequency=None,
    initial_sparsity=0.0,
    power=3,
):
    """Builds a TFMOT pruning schedule.

    Args:
        target_sparsity: final fraction of zeros, in [0, 1).
        kind: `"constant"` (the target from `begin_step` on), `"polynomial"`
            (from `initial_sparsity` at `begin_step` up to the target at
            `end_step`, then held), or `"auto"`: polynomial when the end can be
            known (`end_step`, or `epochs` and `steps_per_epoch`), else constant.
        begin_step: optimizer step (0 = the first) where pruning starts; a
            constant schedule prunes to the target right there.
        end_step: step where the polynomial schedule reaches the target. If
            `None`, it is derived: 75% of `epochs * steps_per_epoch`, leaving
            the last quarter of training to recover at the final sparsity.
        epochs, steps_per_epoch: the length of the training you will run.
        frequency: steps between mask updates; default 100, or fewer for short
            training so that the ramp has at least ten updates.
        initial_sparsity: sparsity at `begin_step` (polynomial).
        power: the polynomial's exponent (3 prunes fast early, then slowly).

    Returns:
        A `tfmot.sparsity.keras.PruningSchedule`.
    """
    _check_sparsity("target_sparsity", target_sparsity)
    _check_sparsity("initial_sparsity", initial_sparsity)
    if kind not in ("auto", "constant", "polynomial"):
        raise ValueError(
            f"schedule must be 'auto', 'constant' or 'polynomial'. Received: schedule={kind!r}."
        )
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}.")
    if not isinstance(begin_step, int) or begin_step < 0:
        raise ValueError(f"begin_step must be an integer >= 0. Received: begin_step={begin_step!r}.")
    total = epochs * steps_per_epoch if epochs and steps_per_epoch else None
    if end_step is None and total is not None:
        end_step = begin_step + max(1, int(0.75 * (total - begin_step)))
    if kind == "auto":
        kind = "polynomial" if end_step is not None else "constant"
    if kind == "polynomial":
        if end_step is None:
            raise ValueError(
                "schedule='polynomial' needs to know when to reach the target: pass "
                "end_step=..., or epochs=... and steps_per_epoch=... (the length of "
                "your training)."
            )
        if end_step <= begin_step:
            raise ValueError(
                f"end_step ({end_step}) must be greater than begin_step ({begin_step})."
            )
        if initial_sparsity > target_sparsity:
            raise ValueError(
                f"initial_sparsity ({initial_sparsity}) is above target_sparsity "
                f"({target_sparsity}); pruning never removes zeros."
            )
    if frequency is None:
        span = (end_step - begin_step) if (kind == "polynomial") else 100
        frequency = max(1, min(100, span // 10))
    if not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"frequency must be a positive integer. Received: frequency={frequency!r}.")
    # TFMOT's step counter reads 1 during the first optimizer step; ours are
    # 0-based, so step s here is TFMOT's s + 1 (a constant schedule with
    # begin_step=0 prunes at the very first step, not `frequency` steps later).
    if kind == "constant":
        return _sparsity.ConstantSparsity(
            target_sparsity,
            begin_step + 1,
            end_step=-1 if end_step is None else end_step + 1,
            frequency=frequency,
        )
    # Align the end with a mask update, so the final sparsity is really reached.
    end_step = begin_step + max(1, (end_step - begin_step) // frequency) * frequency
    return _sparsity.PolynomialDecay(
        initial_sparsity, target_sparsity, begin_step + 1, end_step + 1, power=power, frequency=frequency
    )


# --------------------------------------------------------------------------
# prune / strip
# --------------------------------------------------------------------------


def _parse_structure(structure):
    if structure is None:
        return None
    if isinstance(structure, str):
        parts = structure.split(":")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            m, n = int(parts[0]), int(parts[1])
        else:
            m = n = None
    elif isinstance(structure, (tuple, list)) and len(structure) == 2:
        m, n = structure
    else:
        m = n = None
    if not (isinstance(m, int) and isinstance(n, int) and 0 < m < n):
        raise ValueError(
            "structure must be 'M:N' (M zeros in every N consecutive weights, M < N), "
            f"e.g. '2:4'. Received: structure={structure!r}."
        )
    return (m, n)


def _unsupported_reason(layer):
    """Why TFMOT cannot prune `layer`, or None if it can."""
    prune_registry = _prune_registry
    rnn = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
    if isinstance(layer, keras.layers.Bidirectional):
        if not isinstance(layer.forward_layer, rnn):
            return f"Bidirectional({type(layer.forward_layer).__name__}) wraps no LSTM/GRU/SimpleRNN"
        return None
    if isinstance(layer, rnn):
        return None
    if isinstance(layer, _sparsity.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        return None
    if prune_registry.PruneRegistry.supports(layer):
        if not prune_registry.PruneRegistry._weight_names(layer):  # noqa: SLF001
            return "it has no weights TFMOT prunes"
        return None
    return "TFMOT has no pruning rule for it"


def _check_structure_fits(layer, m_by_n, block_size):
    """Raises if a structure cannot apply to this layer's weights."""
    shapes = [w.shape for w in _prunable_weights(layer)]
    if m_by_n:
        m, n = m_by_n
        for shape in shapes:
            if len(shape) != 2 or shape[0] % n:
                raise ValueError(
                    f"structure='{m}:{n}' cannot apply to layer {layer.name!r} "
                    f"({type(layer).__name__}): a weight of shape {tuple(shape)} needs rank 2 "
                    f"and an input dimension divisible by {n}. Fix: leave this layer out "
                    "(layers=...), or change its input size."
                )
    if tuple(block_size) != (1, 1):
        for shape in shapes:
            if len(shape) != 2:
                raise ValueError(
                    f"block_size={tuple(block_size)} applies to rank-2 weights only; layer "
                    f"{layer.name!r} has a weight of shape {tuple(shape)}. Fix: leave it out "
                    "with layers=..."
                )


def _prunable_weights(layer):
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


def prune(
    model,
    target_sparsity=0.5,
    schedule="auto",
    *,
    begin_step=0,
    end_step=None,
    epochs=None,
    steps_per_epoch=None,
    frequency=None,
    initial_sparsity=0.0,
    power=3,
    block_size=(1, 1),
    block_pooling="AVG",
    structure=None,
    layers=None,
):
    """Returns a copy of `model` whose chosen layers are pruned during training.

    Train the result with `model.fit` as usual (compile it first: the copy is
    not compiled). `UpdatePruningStep` is added to `fit` if you leave it out.

    Args:
        model: a tf_keras or Keras 3 Sequential/Functional model (built).
        target_sparsity: final fraction of zeros in each pruned weight, in
            [0, 1). With `structure="M:N"` it is implied (M/N) and may be left
            at its default or set to exactly M/N.
        schedule: `"auto"`, `"constant"`, `"polynomial"` (see `schedule()`),
            or a `tfmot.sparsity.keras.PruningSchedule` for full control.
        begin_step, end_step, epochs, steps_per_epoch, frequency,
            initial_sparsity, power: schedule arguments (see `schedule()`);
            `epochs` and `steps_per_epoch` let the end of the ramp be derived.
        block_size: `(height, width)` blocks pruned together (rank-2 weights).
        block_pooling: `"AVG"` or `"MAX"`: how a block's magnitude is measured.
        structure: `"2:4"` (or any `"M:N"`) structured sparsity: M zeros in every
            N consecutive weights along the input dimension. Set once, at the
            first training step.
        layers: which layers to prune: `None` (every Embedding, Dense,
            Conv1D, LSTM, GRU, SimpleRNN and Bidirectional RNN layer), a list
            of layer classes and/or layer names, or a function
            `layer -> bool`.

    Returns:
        A new tf_keras model with pruning wrappers. Its
        `tfcompress_pruning_report` attribute lists the pruned and skipped
        layers.

    Raises:
        ValueError: sparsity outside [0, 1), conflicting structure arguments, a
            chosen layer that cannot be pruned, a subclassed model; each
            message names the argument or layer, the value and the fix.
    """
    model = ensure_tf_keras(model, caller="prune")
    require_graph_model(model, "prune")
    if is_pruned(model):
        raise ValueError(
            f"model {model.name!r} is already pruned (it has pruning wrappers). Fix: call "
            "tfcompress.pruning.strip(model) first, or keep training the pruned model."
        )
    m_by_n = _parse_structure(structure)
    if m_by_n is not None:
        implied = m_by_n[0] / m_by_n[1]
        if target_sparsity not in (0.5, implied):  # 0.5 is the default
            raise ValueError(
                f"structure='{m_by_n[0]}:{m_by_n[1]}' fixes the sparsity at {implied:g}, but "
                f"target_sparsity={target_sparsity!r} was given. Fix: drop target_sparsity, or "
                f"drop structure for unstructured pruning to {target_sparsity!r}."
            )
        target_sparsity = implied
        if tuple(block_size) != (1, 1):
            raise ValueError(
                f"structure={structure!r} and block_size={tuple(block_size)} conflict: "
                "choose M:N structured sparsity or block sparsity, not both."
            )
    _check_sparsity("target_sparsity", target_sparsity)
    if (
        not isinstance(block_size, (tuple, list))
        or len(block_size) != 2
        or not all(isinstance(b, int) and b >= 1 for b in block_size)
    ):
        raise ValueError(
            f"block_size must be a pair of positive integers (height, width). Received: block_size={block_size!r}."
        )
    if block_pooling not in ("AVG", "MAX"):
        raise ValueError(f"block_pooling must be 'AVG' or 'MAX'. Received: block_pooling={block_pooling!r}.")
    if isinstance(schedule, _sparsity.PruningSchedule):
        pruning_schedule = schedule
    else:
        pruning_schedule = globals()["schedule"](
            target_sparsity,
            schedule,
            begin_step=begin_step,
            end_step=end_step,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            frequency=frequency,
            initial_sparsity=initial_sparsity,
            power=power,
        )
    if is_mixed_precision(model):
        warn_mixed_once()
        model = rebuild_float32(model)

    chosen = layer_selector(layers, "layers", lambda layer: isinstance(layer, PRUNABLE_TYPES))
    report = {"pruned": [], "skipped": []}
    explicit = layers is not None

    def wrap(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        fresh = layer.__class__.from_config(layer.get_config())
        if not chosen(layer):
            if isinstance(layer, PRUNABLE_TYPES):
                report["skipped"].append((layer.name, "not chosen by layers="))
            return fresh
        reason = _unsupported_reason(layer)
        if reason is not None:
            if explicit:
                raise ValueError(
                    f"layer {layer.name!r} ({type(layer).__name__}) was chosen for pruning, "
                    f"but {reason}. Prunable: Embedding, Dense, Conv1D, LSTM, GRU, "
                    "SimpleRNN, Bidirectional(LSTM/GRU/SimpleRNN), or a layer with "
                    "get_prunable_weights(). Fix: leave it out of layers=."
                )
            report["skipped"].append((layer.name, reason))
            return fresh
        _check_structure_fits(layer, m_by_n, block_size)
        if isinstance(layer, keras.layers.Bidirectional):
            fresh = PrunableBidirectional.from_config(layer.get_config())
        report["pruned"].append(layer.name)
        return PruneLowMagnitude(
            fresh,
            pruning_schedule=pruning_schedule,
            block_size=tuple(block_size),
            block_pooling_type=block_pooling,
            sparsity_m_by_n=m_by_n,
        )

    pruned = clone_with(model, wrap)
    if not report["pruned"]:
        raise ValueError(
            f"prune(): no layer of model {model.name!r} was chosen and prunable "
            f"(skipped: {report['skipped'] or 'none'}). Fix: check layers=."
        )
    pruned.tfcompress_pruning_report = report
    install_fit_hook(pruned)
    log.info("pruning %s: %s", model.name, ", ".join(report["pruned"]))
    return pruned


def install_fit_hook(model):
    """Makes `model.fit` add `UpdatePruningStep` when the caller left it out.

    `prune()` does this for the models it returns, and `tfcompress.load_model`
    for the pruned models it loads; call it on a pruned model you loaded or
    built another way."""
    original = model.fit
    if getattr(original, "_tfcompress_hook", False):
        return

    @functools.wraps(original)
    def fit(*args, callbacks=None, **kwargs):
        callbacks = list(callbacks or [])
        if not any(isinstance(c, UpdatePruningStep) for c in callbacks):
            callbacks.append(UpdatePruningStep())
        return original(*args, callbacks=callbacks, **kwargs)

    fit._tfcompress_hook = True
    model.fit = fit


def strip(model):
    """Returns a plain Keras model with the pruning masks applied.

    Wrappers are removed (`PrunableBidirectional` becomes `Bidirectional`) and
    every pruned weight is multiplied by its mask, so the zeros are exact even
    if training stopped right after an optimizer step. The result computes the
    same outputs as the pruned model in inference.
    """
    model = ensure_tf_keras(model, caller="strip")
    require_graph_model(model, "strip")

    def unwrap(layer):
        if isinstance(layer, _TFMOTWrapper):
            inner = layer.layer
            cls = keras.layers.Bidirectional if isinstance(inner, PrunableBidirectional) else inner.__class__
            return cls.from_config(inner.get_config())
        return layer.__class__.from_config(layer.get_config())

    def masked(old, fresh):
        if not isinstance(old, _TFMOTWrapper):
            return None
        masks = {id(w): m for w, m, _ in old.pruning_vars}
        return [(w.numpy() * masks[id(w)].numpy()) if id(w) in masks else w.numpy() for w in old.layer.weights]

    stripped = clone_with(model, unwrap, weights=masked)
    return stripped


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


class SparsityReport(list):
    """Rows of (layer, weight, shape, zeros, size, sparsity), printable as a table."""

    def overall(self):
        """Sparsity over all reported weights together."""
        size = sum(r["size"] for r in self)
        return sum(r["zeros"] for r in self) / size if size else 0.0

    def __str__(self):
        lines = [f"{'layer':<28} {'weight':<22} {'shape':<14} {'sparsity':>8}"]
        for r in self:
            lines.append(
                f"{r['layer']:<28} {r['weight']:<22} {str(r['shape']):<14} {r['sparsity']:>8.2%}"
            )
        lines.append(f"{'overall':<66}{self.overall():>8.2%}")
        return "\n".join(lines)


def sparsity_report(model, include_unpruned=False):
    """Per-weight sparsity of a pruned (or stripped) model, at any time.

    For a model with wrappers, each pruned weight's effective value (weight ×
    mask, what the layer computes with) is measured. For a plain model, every
    kernel and embedding is measured.

    Args:
        model: a model from `prune()`, or any tf_keras/Keras 3 model.
        include_unpruned: also list the kernels that are not pruned (a plain
            model's weights are always listed).

    Returns:
        A `SparsityReport` (a list of dicts; `str()` gives a table).
    """
    model = ensure_tf_keras(model, caller="sparsity_report")
    rows = SparsityReport()

    def add(layer_name, weight, value):
        value = np.asarray(value)
        zeros = int(value.size - np.count_nonzero(value))
        short = weight.name.split("/")[-1].split(":")[0]
        rows.append(
            {
                "layer": layer_name,
                "weight": short,
                "shape": tuple(value.shape),
                "zeros": zeros,
                "size": int(value.size),
                "sparsity": zeros / value.size if value.size else 0.0,
            }
        )

    for layer in _layers(model):
        if isinstance(layer, _TFMOTWrapper):
            pruned_ids = set()
            for weight, mask, _ in layer.pruning_vars:
                add(layer.layer.name, weight, weight.numpy() * mask.numpy())
                pruned_ids.add(id(weight))
            if include_unpruned:
                for weight in layer.layer.trainable_weights:
                    if id(weight) not in pruned_ids and len(weight.shape) >= 2:
                        add(layer.layer.name, weight, weight.numpy())
        elif not is_pruned(model) or include_unpruned:
            if isinstance(layer, keras.Model):
                continue
            for weight in _prunable_weights(layer):
                add(layer.name, weight, weight.numpy())
    return rows


def m_by_n_violations(weight, m=2, n=4):
    """Groups of `n` consecutive weights (along the input axis) with fewer than
    `m` zeros; 0 means the weight is exactly M:N sparse."""
    w = np.asarray(weight)
    if w.ndim != 2 or w.shape[0] % n:
        raise ValueError(f"M:N check needs a rank-2 weight with rows divisible by {n}; got {w.shape}.")
    groups = w.T.reshape(w.shape[1], -1, n)  # (out, in/n, n): consecutive inputs
    return int(((groups == 0).sum(-1) < m).sum())
