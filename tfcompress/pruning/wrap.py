"""`prune` wraps a model's layers for pruning; `strip` bakes the masks in."""

import functools
import logging

from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

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
from tfcompress.pruning.layers import (
    PRUNABLE_TYPES,
    PrunableBidirectional,
    PruneLowMagnitude,
    TFMOTWrapper,
    UpdatePruningStep,
    is_pruned,
    prunable_weights,
    tfmot_sparsity,
)
from tfcompress.pruning.schedules import check_sparsity
from tfcompress.pruning.schedules import schedule as make_schedule

log = logging.getLogger("tfcompress")

DEFAULT_SPARSITY = 0.5


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
    rnn = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
    if isinstance(layer, keras.layers.Bidirectional):
        if not isinstance(layer.forward_layer, rnn):
            return f"Bidirectional({type(layer.forward_layer).__name__}) wraps no LSTM/GRU/SimpleRNN"
        return None
    if isinstance(layer, rnn):
        return None
    if isinstance(layer, tfmot_sparsity.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        return None
    if prune_registry.PruneRegistry.supports(layer):
        if not prune_registry.PruneRegistry._weight_names(layer):  # noqa: SLF001
            return "it has no weights TFMOT prunes"
        return None
    return "TFMOT has no pruning rule for it"


def _check_structure_fits(layer, m_by_n, block_size):
    """Raises if a structure cannot apply to this layer's weights."""
    shapes = [w.shape for w in prunable_weights(layer)]
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
            blocks = [-(-int(n) // b) for n, b in zip(shape, block_size)]
            if 1 in blocks:
                # TFMOT pools the weight into blocks and squeezes the result,
                # so one block across a whole dimension leaves a rank-1 mask
                # and training fails at its first step ("Input tensor must be
                # rank 2").
                raise ValueError(
                    f"block_size={tuple(block_size)} spans a whole dimension of layer {layer.name!r}'s weight of "
                    f"shape {tuple(shape)}, which TFMOT's block pruning cannot do (it fails at the first "
                    "training step). Fix: blocks smaller than the weight in both dimensions (e.g. "
                    f"({block_size[0]}, {max(1, int(shape[1]) // 2)})), or leave the layer out with layers=..."
                )


def prune(
    model,
    target_sparsity=None,
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
            [0, 1); default 0.5. With `structure="M:N"` it is implied (M/N):
            leave it out or give exactly M/N. A dict `{layer name: sparsity}`
            prunes each named layer to its own target (a layer at 0 stays
            dense) and chooses the layers itself (leave `layers` out).
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
    per_layer = None
    if isinstance(target_sparsity, dict):
        per_layer = dict(target_sparsity)
        for name, value in per_layer.items():
            check_sparsity(f"target_sparsity[{name!r}]", value)
        if layers is not None or structure is not None or isinstance(schedule, tfmot_sparsity.PruningSchedule):
            raise ValueError(
                "target_sparsity as a dict {layer name: sparsity} chooses the layers and builds their schedules "
                "itself; it cannot be combined with layers=, structure= or a PruningSchedule object. Fix: drop "
                "those arguments, or give one target_sparsity number."
            )
        layers = [name for name, value in per_layer.items() if value > 0]
        if not layers:
            raise ValueError(f"target_sparsity={per_layer!r} prunes no layer (every value is 0). Fix: give one layer a sparsity above 0.")
        target_sparsity = max(per_layer.values())
    m_by_n = _parse_structure(structure)
    if m_by_n is not None:
        implied = m_by_n[0] / m_by_n[1]
        if target_sparsity is not None and target_sparsity != implied:
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
    if target_sparsity is None:
        target_sparsity = DEFAULT_SPARSITY
    check_sparsity("target_sparsity", target_sparsity)
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
    def schedule_for(target):
        if isinstance(schedule, tfmot_sparsity.PruningSchedule):
            return schedule
        return make_schedule(
            target,
            schedule,
            begin_step=begin_step,
            end_step=end_step,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            frequency=frequency,
            initial_sparsity=min(initial_sparsity, target),
            power=power,
        )

    pruning_schedule = schedule_for(target_sparsity)
    schedules = {name: schedule_for(value) for name, value in (per_layer or {}).items() if value > 0}
    if is_mixed_precision(model):
        warn_mixed_once()
        model = rebuild_float32(model)

    chosen = layer_selector(layers, "layers", lambda layer: isinstance(layer, PRUNABLE_TYPES), model, "prune")
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
            pruning_schedule=schedules.get(layer.name, pruning_schedule),
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
        if isinstance(layer, TFMOTWrapper):
            inner = layer.layer
            cls = keras.layers.Bidirectional if isinstance(inner, PrunableBidirectional) else inner.__class__
            return cls.from_config(inner.get_config())
        return layer.__class__.from_config(layer.get_config())

    def masked(old, fresh):
        if not isinstance(old, TFMOTWrapper):
            return None
        masks = {id(w): m for w, m, _ in old.pruning_vars}
        return [(w.numpy() * masks[id(w)].numpy()) if id(w) in masks else w.numpy() for w in old.layer.weights]

    stripped = clone_with(model, unwrap, weights=masked)
    return stripped
