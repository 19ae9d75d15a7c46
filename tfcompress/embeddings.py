"""Making the embedding table smaller while the model keeps its inputs.

In a small text classifier the embedding table is most of the parameters
(SST-2's default classifier: 14,786 x 64 of about 0.98 M). Three ways to cut
it, each a plain Keras model that converts to TFLite builtins:

- **a capped vocabulary**: `tfcompress.models.lstm_classifier(...,
  embedding_vocab_size=N)` keeps rows for the N - 1 most frequent ids and one
  shared by the rest (`CapVocabulary`);
- **a low-rank factorised table** (`factorize`): `Embedding(V, d)` becomes
  `Embedding(V, r)` followed by `Dense(d, use_bias=False)`, initialised from a
  truncated SVD of the trained table, so the model answers almost as before
  (the relative reconstruction error is reported) and fine-tunes from there;
  `lstm_classifier(..., embedding_rank=r)` builds one from scratch. In TFLite
  it is a GATHER followed by a FULLY_CONNECTED;
- **row pruning** (`prune_rows`): the rows of the rarest ids are removed and
  those ids share one row (a `CapVocabulary` layer), for a trained model;
- **pruning and clustering** the table (`tfcompress.pruning`,
  `tfcompress.clustering`), which also apply to the factorised one.
"""

import logging

import numpy as np

from tfcompress._keras import ensure_tf_keras, keras, require_graph_model
from tfcompress._keras.graph import rebuild_functional

log = logging.getLogger("tfcompress")


def singular_values(model, layer=None):
    """The singular values of an embedding table (largest first): how much
    of it each rank keeps. `layer`: its name (default: the largest Embedding)."""
    model = ensure_tf_keras(model, caller="singular_values")
    return np.linalg.svd(_embedding(model, layer).embeddings.numpy(), compute_uv=False)


def relative_error(values, rank):
    """||E - E_rank||_F / ||E||_F for a table with these singular values."""
    values = np.asarray(values, np.float64)
    total = float(np.sum(values**2))
    return float(np.sqrt(np.sum(values[rank:] ** 2) / total)) if total else 0.0


def factorize(model, rank=None, max_error=None, layer=None):
    """Returns a copy of `model` whose embedding table is factorised in two.

    `Embedding(V, d)` is replaced by `Embedding(V, rank)` (same name, same
    `mask_zero`) and `Dense(d, use_bias=False)` named `<name>_projection`,
    set from the table's truncated SVD `E ~ U S Vt` as `U sqrt(S)` and
    `sqrt(S) Vt` (equal scales in both factors, which quantize alike). The
    copy has the same inputs and outputs; every other weight is copied.
    Fine-tune it: the truncation loses what the dropped ranks held.

    Args:
        model: a trained tf_keras or Keras 3 Sequential/Functional model.
        rank: the inner dimension r (1 <= r < d). Parameters go from V*d to
            V*r + r*d.
        max_error: instead of `rank`, the largest relative reconstruction
            error ||E - E_r|| / ||E|| (Frobenius) allowed; the smallest rank
            within it is used.
        layer: the Embedding's name (default: the one with the most weights).

    Returns:
        The new model; its `tfcompress_factorize_report` says the layer, rank,
        relative reconstruction error and parameters before and after.

    Raises:
        ValueError: neither or both of `rank`/`max_error`, a rank outside
            [1, d), a model with pruning/QAT/clustering wrappers, no Embedding.
    """
    model = ensure_tf_keras(model, caller="factorize")
    require_graph_model(model, "factorize")
    _refuse_wrappers(model)
    if (rank is None) == (max_error is None):
        raise ValueError(
            "factorize() needs exactly one of rank= (the inner dimension) or max_error= (the largest "
            f"relative reconstruction error allowed). Received: rank={rank!r}, max_error={max_error!r}."
        )
    embedding = _embedding(model, layer)
    table = embedding.embeddings.numpy()
    rows, dim = table.shape
    u, s, vt = np.linalg.svd(table.astype(np.float64), full_matrices=False)
    if max_error is not None:
        if not isinstance(max_error, (int, float)) or isinstance(max_error, bool) or not 0 < max_error < 1:
            raise ValueError(f"max_error must be a number in (0, 1). Received: max_error={max_error!r}.")
        rank = next((r for r in range(1, dim) if relative_error(s, r) <= max_error), None)
        if rank is None:
            raise ValueError(
                f"factorize(): layer {embedding.name!r} needs its full rank {dim} to stay within "
                f"max_error={max_error} (rank {dim - 1} loses {relative_error(s, dim - 1):.3f}); factorising "
                "it saves nothing. Fix: allow a larger max_error, or keep the table."
            )
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank < dim:
        raise ValueError(
            f"rank must be an integer in [1, {dim}) for layer {embedding.name!r} (embedding size {dim}). "
            f"Received: rank={rank!r}."
        )
    root = np.sqrt(s[:rank])
    factors = [(u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)]
    policy = embedding.dtype_policy
    low = keras.layers.Embedding(
        rows,
        rank,
        mask_zero=embedding.mask_zero,
        input_length=getattr(embedding, "input_length", None),
        name=embedding.name,
        dtype=policy,
    )
    projection = keras.layers.Dense(dim, use_bias=False, name=f"{embedding.name}_projection", dtype=policy)

    new = _replace_embedding(model, embedding, lambda ids: projection(low(ids)), {low: factors[:1], projection: factors[1:]})
    error = relative_error(s, rank)
    new.tfcompress_factorize_report = {
        "layer": embedding.name,
        "rank": rank,
        "relative_error": error,
        "params_before": rows * dim,
        "params_after": rows * rank + rank * dim,
    }
    log.info("factorised %s: %dx%d -> rank %d, relative error %.4f", embedding.name, rows, dim, rank, error)
    return new


def prune_rows(model, keep, counts=None, layer=None):
    """Returns a copy of `model` whose embedding table keeps `keep` rows.

    The rows of the rarest token ids are removed, not zeroed: a
    `CapVocabulary(keep)` layer before the Embedding maps every id from
    `keep - 1` up to one shared row, set to the mean of the rows it replaces
    (weighted by `counts` when given). The model still reads every id of its
    encoder; the table, and the file, shrink by the removed rows. Fine-tune
    it afterwards.

    Ids must be ordered by frequency, most frequent first after the reserved
    ones, as in `tfcompress.text` vocabularies and Keras `Tokenizer` word
    indexes; the padding id 0 and the out-of-vocabulary id 1 always keep their
    rows.

    Args:
        model: a trained tf_keras or Keras 3 Sequential/Functional model whose
            Embedding reads the model's integer input directly.
        keep: rows to keep: an integer (3 <= keep < rows) or a fraction of the
            rows in (0, 1).
        counts: optional token counts per id (length = rows), for the shared
            row's weighted mean.
        layer: the Embedding's name (default: the one with the most weights).

    Returns:
        The new model; `tfcompress_prune_rows_report` gives the layer, rows
        before and after, and the parameters removed.
    """
    from tfcompress.models import CapVocabulary

    model = ensure_tf_keras(model, caller="prune_rows")
    require_graph_model(model, "prune_rows")
    _refuse_wrappers(model, caller="prune_rows")
    embedding = _embedding(model, layer)
    table = embedding.embeddings.numpy()
    rows, dim = table.shape
    keep = rows_kept(rows, keep, embedding.name)
    if any(isinstance(l, CapVocabulary) for l in model.layers):
        raise ValueError(
            f"model {model.name!r} already caps its vocabulary (CapVocabulary). Fix: build it with a smaller "
            "embedding_vocab_size instead."
        )
    shared = shared_row(table, keep, counts, embedding.name)
    small = keras.layers.Embedding(
        keep,
        dim,
        mask_zero=embedding.mask_zero,
        input_length=getattr(embedding, "input_length", None),
        name=embedding.name,
        dtype=embedding.dtype_policy,
    )
    cap = CapVocabulary(keep, name=f"{embedding.name}_cap_vocabulary")

    kept_table = np.concatenate([table[: keep - 1], shared[None]]).astype(np.float32)
    new = _replace_embedding(model, embedding, lambda ids: small(cap(ids)), {small: [kept_table]})
    new.tfcompress_prune_rows_report = {
        "layer": embedding.name,
        "rows_before": rows,
        "rows_after": keep,
        "params_removed": (rows - keep) * dim,
    }
    log.info("embedding %s: kept %d of %d rows", embedding.name, keep, rows)
    return new


def row_table(model):
    """`(layer, None)`: the Embedding of a tf_keras `model` whose rows
    `prune_rows` keeps fewer of by default (the largest); `(None, why)` when
    it has none to cut. Token counts, the sensitivity table's rows and the
    budget search all ask this, so they name the same table."""
    from tfcompress.models import CapVocabulary

    if not any(isinstance(l, keras.layers.Embedding) for l in model.layers):
        return None, "the model has no Embedding"
    if any(isinstance(l, CapVocabulary) for l in model.layers):
        return None, "the model already caps its vocabulary (CapVocabulary)"
    return _embedding(model), None


def rows_kept(rows, keep, layer="the embedding"):
    """The rows `prune_rows(keep=keep)` keeps of a table of `rows`: `keep`
    itself (an integer in [3, rows)) or a fraction in (0, 1) of `rows`
    (rounded, at least 3)."""
    if isinstance(keep, float) and 0 < keep < 1:
        keep = max(3, int(round(rows * keep)))
    if not isinstance(keep, int) or isinstance(keep, bool) or not 3 <= keep < rows:
        raise ValueError(
            f"keep must be an integer in [3, {rows}) or a fraction in (0, 1) of layer {layer!r}'s "
            f"{rows} rows. Received: keep={keep!r}."
        )
    return keep


def shared_row(table, keep, counts=None, layer="the embedding"):
    """The row that ids `keep - 1` and up share after `prune_rows`: the mean
    of their rows in `table`, weighted by `counts` (one per id) when given."""
    table = np.asarray(table)
    rows = table.shape[0]
    if counts is not None and len(counts) != rows:
        raise ValueError(f"counts has {len(counts)} entries; layer {layer!r} has {rows} rows. Fix: one count per id.")
    weights = np.ones(rows - keep + 1) if counts is None else np.asarray(counts, np.float64)[keep - 1 :]
    if weights.sum() <= 0:  # none of the rare ids was seen: their plain mean
        weights = np.ones(rows - keep + 1)
    return (table[keep - 1 :] * (weights / weights.sum())[:, None]).sum(0)


def _replace_embedding(model, embedding, replacement, weights):
    """`model` re-run with `replacement(ids)` in place of `embedding`; the new
    layers get `weights[layer]`, every other layer its old weights."""

    def clone(layer):
        if layer is embedding:
            return lambda ids, **kwargs: replacement(ids)
        return layer.__class__.from_config(layer.get_config())

    new = rebuild_functional(model, clone)
    by_name = {l.name: l for l in model.layers}
    for target in new.layers:
        if target in weights:
            target.set_weights(weights[target])
        elif target.weights and target.name in by_name:
            target.set_weights(by_name[target.name].get_weights())
    return new


def _embedding(model, name=None):
    tables = [l for l in model.layers if isinstance(l, keras.layers.Embedding)]
    if name is not None:
        chosen = [l for l in tables if l.name == name]
        if not chosen:
            raise ValueError(
                f"layer={name!r}: model {model.name!r} has no Embedding of that name. Its Embedding layers: "
                f"{', '.join(l.name for l in tables) or 'none'}."
            )
        return chosen[0]
    if not tables:
        raise ValueError(f"model {model.name!r} has no Embedding layer to factorise.")
    return max(tables, key=lambda l: int(np.prod(l.embeddings.shape)))


def _refuse_wrappers(model, caller="factorize"):
    from tfcompress import clustering, pruning, quantization

    for check, strip in (
        (pruning.is_pruned, "tfcompress.pruning.strip"),
        (clustering.is_clustered, "tfcompress.clustering.strip"),
        (quantization.is_quantized, "tfcompress.quantization.strip"),
    ):
        if check(model):
            raise ValueError(
                f"{caller}(): model {model.name!r} has compression wrappers. Fix: {strip}(model) first, "
                f"then {caller}, then prune, cluster or quantize the result."
            )
