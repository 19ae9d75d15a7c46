"""What a pruned model holds: sparsity per weight, and 2:4 structure checks."""

import numpy as np

from tfcompress._keras import ensure_tf_keras, keras
from tfcompress.pruning.layers import TFMOTWrapper, all_layers, is_pruned, prunable_weights


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

    for layer in all_layers(model):
        if isinstance(layer, TFMOTWrapper):
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
            for weight in prunable_weights(layer):
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
