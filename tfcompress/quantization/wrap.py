"""`quantize` wraps a text model for quantization-aware training; `strip`
takes the trained float model back out."""

import logging

import numpy as np
from tensorflow_model_optimization.python.core.quantization.keras import quantize_annotate, quantize_wrapper

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
    warn_mixed_once,
)
from tfcompress.quantization.configs import (
    TextQuantizeConfig,
    TextRegistry,
    TextScheme,
    cluster_ids,
    config_for,
    get_path,
    quantize_scope,
    tfmot_quant,
    weight_paths,
    weightless_config,
)

log = logging.getLogger("tfcompress")


def is_quantized(model):
    """True if `model` has QAT wrappers."""
    return any(isinstance(layer, quantize_wrapper.QuantizeWrapper) for layer in model.layers)


def _quantizable_weights(model):
    """The values of the weights the text configs quantize."""
    for layer in model.layers:
        for path in weight_paths(layer) or []:
            try:
                yield get_path(layer, path).numpy()
            except AttributeError:
                continue


def quantize(model, skip=None, preserve_sparsity="auto", bits=8, activation_bits=8, preserve_clusters="auto"):
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
        preserve_clusters: keep a clustered model's clusters through QAT
            (cluster-preserving QAT; with `preserve_sparsity`, the zeros too):
            weights that are equal when QAT starts stay equal, so each
            quantized weight keeps at most as many distinct values as it had.
            `"auto"`: for every layer whose quantized weights are clustered
            (at most 256 distinct values each, non-zero values shared by
            several entries), e.g. after `tfcompress.clustering`. `True`:
            for every quantized layer (an error names a weight with more
            than 256 distinct values).

    Returns:
        A new tf_keras model with `QuantizeWrapperV2` layers; its
        `tfcompress_quantization_report` attribute lists what was quantized,
        left in float, and the sparsity setting.

    Raises:
        ValueError: a subclassed model, a layer with no quantization rule that
            is not in `skip` (the message names it and how to skip it), or an
            invalid argument.
    """
    from tfcompress import clustering, pruning

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
    if preserve_clusters not in ("auto", True, False):
        raise ValueError(
            f"preserve_clusters must be 'auto', True or False. Received: preserve_clusters={preserve_clusters!r}."
        )
    if pruning.is_pruned(model):
        model = pruning.strip(model)
    if clustering.is_clustered(model):
        model = clustering.strip(model)
    if is_mixed_precision(model):
        warn_mixed_once()
        model = rebuild_float32(model)
    zero_fraction = metrics.zero_fraction(_quantizable_weights(model))
    if preserve_sparsity == "auto":
        preserve_sparsity = zero_fraction >= 0.10
    skipped = layer_selector(skip, "skip", lambda layer: False, model, "quantize")
    registry = TextRegistry()
    report = {
        "quantized": [],
        "float": [],
        "preserve_sparsity": preserve_sparsity,
        "zero_fraction": zero_fraction,
        "bits": bits,
        "activation_bits": activation_bits,
        "clusters_kept": [],
    }

    def annotate(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.InputLayer):
            return fresh
        if skipped(layer):
            report["float"].append(layer.name)
            return fresh
        keep = _keeps_clusters(layer) if preserve_clusters == "auto" else preserve_clusters
        config = config_for(layer, preserve_sparsity, bits, activation_bits, preserve_clusters=keep)
        if keep and config is not None and config.weight_paths:
            report["clusters_kept"].append(layer.name)
        if config is None and not registry.supports(layer):
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no 8-bit quantization "
                "rule in tfcompress or TFMOT. Fix: leave it in float with "
                f"quantize(model, skip=[{layer.name!r}]), or pass your own QuantizeConfig "
                "through tfmot.quantization.keras.quantize_annotate_layer."
            )
        if config is None and (bits != 8 or activation_bits != 8):
            config = weightless_config(fresh, registry, activation_bits)
            if config is None:
                raise ValueError(
                    f"layer {layer.name!r} ({type(layer).__name__}) has weights that only TFMOT's "
                    f"8-bit rule quantizes, which cannot do bits={bits}, activation_bits={activation_bits}. "
                    f"Fix: use 8 bits, or leave it in float with skip=[{layer.name!r}]."
                )
        report["quantized"].append(layer.name)
        return quantize_annotate.QuantizeAnnotate(fresh, quantize_config=config)

    annotated = clone_with(model, annotate)
    with float32_policy():
        if not report["quantized"]:
            raise ValueError(f"quantize(): every layer of model {model.name!r} is in skip; nothing to quantize.")
        with quantize_scope():
            quantized = tfmot_quant.quantize_apply(annotated, scheme=TextScheme())
    for layer in quantized.layers:
        if isinstance(layer, quantize_wrapper.QuantizeWrapper):
            _normalize_tracking(layer)
            _init_weight_ranges(layer)
    quantized.tfcompress_quantization_report = report
    log.info(
        "quantization-aware %s: %d layers quantized, float: %s, preserve_sparsity=%s, clusters kept: %s",
        model.name,
        len(report["quantized"]),
        report["float"] or "none",
        preserve_sparsity,
        report["clusters_kept"] or "none",
    )
    return quantized


def _keeps_clusters(layer):
    """True if every weight the text config quantizes in `layer` is clustered:
    it has cluster ids (`configs.cluster_ids`: at most 256 distinct values,
    per tensor or per channel), and some non-zero value shared by
    several entries (a trained weight, pruned or not, has as many non-zero
    values as non-zero entries)."""
    values = []
    for path in weight_paths(layer) or []:
        if path.endswith(".bias"):
            continue
        try:
            values.append(get_path(layer, path).numpy())
        except AttributeError:
            return False
    if not values:
        return False
    for value in values:
        nonzero = value[value != 0]
        if cluster_ids(value)[0] is None or (nonzero.size and len(np.unique(nonzero)) == nonzero.size):
            return False
    return True


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
        if getattr(quantizer, "preserve_clusters", False):
            quantizer.init_clusters(weight, qvars)
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
        if isinstance(layer, quantize_wrapper.QuantizeWrapper):
            inner = layer.layer
            return inner.__class__.from_config(inner.get_config())
        return layer.__class__.from_config(layer.get_config())

    # Rebuild the graph without the QuantizeLayer nodes.
    drop = {l.name: l for l in model.layers if isinstance(l, quantize_layer.QuantizeLayer)}

    def weights(old, fresh):
        if not isinstance(old, quantize_wrapper.QuantizeWrapper):
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
    by_path = {id(get_path(fresh, p)): q for p, q in zip(paths, quantized)}
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
