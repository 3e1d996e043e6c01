"""The method table: each training method (CSQ, SPQ, mAP_Q and the pairwise / triplet baselines) as data.

``config.method`` names an entry of :data:`METHODS`; the trainer never branches on the name. A
:class:`Method` says which model head it needs, its loss hyperparameters (``config.loss``), the
arrays it keeps beside the model (hash centers: part of the checkpoint), its training loss, how an
image becomes a retrieval representation, and how queries are ranked against the database.

Representations and rankings:

- ``csq``, ``pairwise``, ``triplet``: hash head logits; codes ``sign(logits)`` with 0 -> +1; Hamming
  ranking (distances ascend, ties by ascending database index).
- ``spq``: the continuous descriptor ``x``; the database is stored as PQ codes (hard assignment of
  ``x`` to the model's codebooks), queries stay continuous (asymmetric distance, ``distance="spq"``:
  the sum of unsquared per-book distances, ascending), as the SPQ reference.
- ``map_q``: L2-normalised descriptors ranked by cosine similarity (descending); evaluation also
  reports the sign-binarised codes' Hamming mAP. PCA-whitening (power 0.25) is fitted on the training
  descriptors before the final checkpoint (:attr:`Method.finalize`).
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxretrieval import centers as centers_lib
from jaxretrieval import losses
from jaxretrieval import metrics as metrics_lib
from jaxretrieval import search
from jaxretrieval.data import augment

__all__ = ["METHODS", "Method", "Evaluation", "get_method", "input_views", "model_input"]

Array = jax.Array
Extras = dict[str, Array]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What a method's evaluation returns.

    Attributes:
      metrics: name -> float (mAP@k, precision@k, ...), written to ``eval/metrics.json``.
      top_indices: ``[num_queries, grid_results]`` database rows best first (``-1`` = none), for the grid.
      pr_curves: label -> ``(recall, precision)`` arrays for the precision-recall plot.
    """

    metrics: dict[str, float]
    top_indices: np.ndarray
    pr_curves: dict[str, tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
      name: the key in :data:`METHODS` (``config.method``).
      head: the model head it trains (``config.model.head`` must match).
      init_extras: ``(config, num_classes, key) -> extras``: arrays kept in the train state and the
        checkpoint beside the model (e.g. hash centers); ``{}`` when none.
      loss: ``(model, batch, extras, key, config) -> (scalar loss, metrics dict)``; ``model`` is in
        train mode; ``batch["image"]`` is uint8 ``[B, H, W, C]``, ``batch["label"]`` multi-hot ``[B, C]``.
      encode: ``(model, images float [B, H, W, C]) -> [B, D]`` representation (model in eval mode).
      evaluate: ``(query, database, query_labels, database_labels, model, extras, config) -> Evaluation``
        on host numpy arrays.
      listwise_loss: ``(descriptors [B, D], labels [B, C], config) -> scalar`` for methods whose loss
        couples the whole batch and supports multistage backprop (``config.micro_batch_size > 0``).
      finalize: ``(model, train_representations, config) -> None``: fitted after training, before the
        last checkpoint (mAP_Q's whitening), or ``None``.
    """

    name: str
    head: str
    init_extras: Callable[[ml_collections.ConfigDict, int, Array], Extras]
    loss: Callable[..., tuple[Array, dict[str, Array]]]
    encode: Callable[[nnx.Module, Array], Array]
    evaluate: Callable[..., Evaluation]
    listwise_loss: Callable[[Array, Array, ml_collections.ConfigDict], Array] | None = None
    finalize: Callable[[nnx.Module, np.ndarray, ml_collections.ConfigDict], None] | None = None


# ---------------------------------------------------------------------------------------------------
# Inputs


def _normalize(images: Array, config: ml_collections.ConfigDict) -> Array:
    mean, std = tuple(config.augment.mean), tuple(config.augment.std)
    if not mean and not std:
        return images
    return augment.normalize(images, jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32))


def model_input(images_uint8: Array, config: ml_collections.ConfigDict) -> Array:
    """Evaluation input: uint8 ``[B, H, W, C]`` -> float32 in [0, 1], normalised when configured."""
    return _normalize(augment.to_float(images_uint8), config)


def _per_sample_augmentation(view_fn: Callable, key: Array, images_uint8: Array, *, num_views: int = 1):
    """``view_fn(key, images)`` (``num_views`` outputs) on a batch maybe sharded over an Explicit axis.

    The augmentations draw per-sample randomness replicated and vmap it against the images; with
    the batch sharded over an Explicit axis that mix is rejected, so the call runs with automatic
    sharding propagation (``auto_axes``) and its outputs come back sharded like the batch. The values
    do not depend on the sharding.
    """
    batch_axis = jax.typeof(images_uint8).sharding.spec
    batch_axis = batch_axis[0] if len(batch_axis) else None
    if batch_axis is None:
        return view_fn(key, images_uint8)
    out_sharding = jax.sharding.PartitionSpec(batch_axis)
    if num_views > 1:
        out_sharding = (out_sharding,) * num_views
    return jax.sharding.auto_axes(view_fn, out_sharding=out_sharding)(key, images_uint8)


def input_views(key: Array, images_uint8: Array, config: ml_collections.ConfigDict) -> Array:
    """One augmented training view per image (``config.augment.name``: ``"hashing"`` or ``"none"``)."""
    name = config.augment.name
    if name == "hashing":
        view_fn = functools.partial(
            augment.hashing_train_view, crop_padding=config.augment.crop_padding, flip=config.augment.flip
        )
        views = _per_sample_augmentation(view_fn, key, images_uint8)
    elif name == "none":
        views = augment.to_float(images_uint8)
    else:
        raise ValueError(f"config.augment.name must be 'hashing' or 'none', got {name!r}")
    return _normalize(views, config)


def _labelled(labels: Array) -> Array:
    """``[B]`` bool: the example has at least one positive label (CSQ needs a target center)."""
    return jnp.sum(labels, axis=-1) > 0


# ---------------------------------------------------------------------------------------------------
# Hash methods: CSQ and the pairwise / triplet baselines share the head, the encoding and evaluation.


def _no_extras(config, num_classes, key) -> Extras:
    del config, num_classes, key
    return {}


def _csq_extras(config, num_classes, key) -> Extras:
    centers_key, tie_key = jax.random.split(key)
    num_bits = config.model.num_bits
    hash_centers = centers_lib.hash_centers(num_classes, num_bits, key=centers_key)
    # One fixed +-1 vector breaks the zero votes of multi-label centers for the whole run.
    tie_breaker = jnp.where(jax.random.bernoulli(tie_key, 0.5, (num_bits,)), 1.0, -1.0)
    return {"centers": jnp.asarray(hash_centers, jnp.float32), "tie_breaker": tie_breaker}


def _csq_loss(model, batch, extras, key, config):
    images = input_views(key, batch["image"], config)
    logits = model(images)
    labels = batch["label"]
    labelled = _labelled(labels)
    targets = centers_lib.multilabel_centers(
        labels, extras["centers"], tie_breaker=extras["tie_breaker"], where=labelled
    )
    per_example = losses.csq_loss(
        logits,
        targets,
        quantization_weight=config.loss.quantization_weight,
        quantization=config.loss.quantization,
    )
    loss = losses.masked_mean(per_example, labelled)
    return loss, {"loss": loss, "mean_abs_tanh": jnp.mean(jnp.abs(jnp.tanh(logits)))}


def _pairwise_loss(model, batch, extras, key, config):
    del extras
    codes = jnp.tanh(model(input_views(key, batch["image"], config)))
    per_example = losses.pairwise_likelihood_loss(
        codes, batch["label"], quantization_weight=config.loss.quantization_weight
    )
    loss = jnp.mean(per_example)
    return loss, {"loss": loss}


def _triplet_loss(model, batch, extras, key, config):
    del extras
    codes = jnp.tanh(model(input_views(key, batch["image"], config)))
    per_anchor = losses.triplet_margin_loss(
        codes, batch["label"], margin=config.loss.margin, mining=config.loss.mining, distance=config.loss.distance
    )
    loss = jnp.mean(per_anchor)
    return loss, {"loss": loss}


def _encode_model(model, images):
    return model(images)


def _sign_codes(values: np.ndarray) -> np.ndarray:
    """+-1 int8 codes; 0 -> +1 (the references' binarisation)."""
    return np.where(np.asarray(values) >= 0, 1, -1).astype(np.int8)


def _top_k(config, database_size: int) -> int | None:
    top_k = int(config.eval.top_k)
    return None if top_k <= 0 or top_k >= database_size else top_k


def _map_name(top_k: int | None) -> str:
    return "mAP" if top_k is None else f"mAP@{top_k}"


def _hamming_evaluation(query_codes, database_codes, query_labels, database_labels, config, *, prefix=""):
    """Hamming-ranking metrics of +-1 codes (shared by the hash methods and mAP_Q's binarised codes).

    Returns ``(metrics, top_indices [num_queries, grid_results], (recall, precision) per radius)``.
    """
    database_size = len(database_codes)
    top_k = _top_k(config, database_size)
    ranking_args = (query_codes, database_codes, query_labels, database_labels)
    results = {prefix + _map_name(top_k): metrics_lib.mean_average_precision(*ranking_args, top_k=top_k)}
    if config.eval.map_all and top_k is not None:
        results[prefix + "mAP"] = metrics_lib.mean_average_precision(*ranking_args)
    if config.eval.tie_aware:
        results[prefix + "tie_aware_" + _map_name(top_k)] = metrics_lib.mean_average_precision(
            *ranking_args, top_k=top_k, tie_aware=True
        )
    precision_at = min(int(config.eval.precision_at), database_size)
    depth = max(precision_at, min(int(config.eval.grid_results), database_size))
    _, ranked = metrics_lib.hamming_ranking(query_codes, database_codes, top_k=depth)
    results[prefix + f"precision@{precision_at}"] = metrics_lib.precision_at_k(
        ranked, query_labels, database_labels, k=precision_at
    )
    radius = int(config.eval.radius)
    results[prefix + f"precision_within_radius_{radius}"] = metrics_lib.precision_within_radius(
        *ranking_args, radius=radius
    )
    precision, recall = metrics_lib.precision_recall_curve(*ranking_args)
    return results, ranked[:, : int(config.eval.grid_results)], (recall, precision)


def _hash_evaluate(query, database, query_labels, database_labels, model, extras, config) -> Evaluation:
    del model, extras
    results, top_indices, curve = _hamming_evaluation(
        _sign_codes(query), _sign_codes(database), query_labels, database_labels, config
    )
    return Evaluation(results, top_indices, {f"{config.method} {config.model.num_bits} bits": curve})


# ---------------------------------------------------------------------------------------------------
# Rankings of real-valued representations (SPQ's asymmetric PQ distance, mAP_Q's cosine similarity).


def _ranking_evaluation(ranked_indices, query_labels, database_labels, config) -> dict[str, float]:
    """Metrics of explicit rankings ``[num_queries, k]`` (database rows best first, ``-1`` padding)."""
    database_size = len(database_labels)
    top_k = _top_k(config, database_size)
    results = {
        _map_name(top_k): metrics_lib.ranked_mean_average_precision(
            ranked_indices, query_labels, database_labels, top_k=top_k
        )
    }
    precision_at = min(int(config.eval.precision_at), database_size)
    results[f"precision@{precision_at}"] = metrics_lib.precision_at_k(
        ranked_indices, query_labels, database_labels, k=precision_at
    )
    return results


def _ranked_curve(ranked_indices, query_labels, database_labels, *, num_points: int = 50):
    """``(recall@k, precision@k)`` for ``num_points`` cut-offs ``k`` up to the ranking depth."""
    cutoffs = np.unique(np.linspace(1, ranked_indices.shape[1], num_points).round().astype(int))
    recall = [metrics_lib.recall_at_k(ranked_indices, query_labels, database_labels, k=int(k)) for k in cutoffs]
    precision = [metrics_lib.precision_at_k(ranked_indices, query_labels, database_labels, k=int(k)) for k in cutoffs]
    return np.asarray(recall), np.asarray(precision)


def _ranking_depth(config, database_size: int) -> int:
    """How deep to rank: the mAP cut-off (whole database for "all"), at least precision@ and the grid."""
    top_k = _top_k(config, database_size)
    depth = max(top_k or database_size, int(config.eval.precision_at), int(config.eval.grid_results))
    return min(depth, database_size)


def _spq_loss(model, batch, extras, key, config):
    del extras
    view_a, view_b = _per_sample_augmentation(augment.spq_views, key, batch["image"], num_views=2)
    features_a = model(_normalize(view_a, config))
    features_b = model(_normalize(view_b, config))
    codebooks = model.head.codebooks[...]
    temperature = config.loss.quantization_temperature
    quantized_a = losses.soft_quantize(features_a, codebooks, temperature=temperature)
    quantized_b = losses.soft_quantize(features_b, codebooks, temperature=temperature)
    loss = losses.spq_loss(
        features_a, features_b, quantized_a, quantized_b, temperature=config.loss.contrastive_temperature
    )
    return loss, {"loss": loss}


def _spq_evaluate(query, database, query_labels, database_labels, model, extras, config) -> Evaluation:
    del extras
    codebooks = np.asarray(model.head.codebooks[...])
    database_codes = search.pq_encode(database, codebooks)
    depth = _ranking_depth(config, len(database))
    _, ranked = search.pq_knn(query, database_codes, codebooks, depth, distance=config.loss.distance)
    ranked = np.asarray(ranked)
    results = _ranking_evaluation(ranked, query_labels, database_labels, config)
    curve = _ranked_curve(ranked, query_labels, database_labels)
    grid = ranked[:, : int(config.eval.grid_results)]
    books, words = config.model.pq_num_books, config.model.pq_num_words
    return Evaluation(results, grid, {f"spq {books}x{words} PQ": curve})


# ---------------------------------------------------------------------------------------------------
# mAP_Q


def _map_q_listwise(descriptors, labels, config):
    return losses.map_q_loss(
        descriptors,
        labels,
        num_bins=config.loss.num_bins,
        score_range=(config.loss.score_min, config.loss.score_max),
        tie_aware=config.loss.tie_aware,
    )


def _map_q_loss(model, batch, extras, key, config):
    del extras
    descriptors = model(input_views(key, batch["image"], config))
    loss = _map_q_listwise(descriptors, batch["label"], config)
    return loss, {"loss": loss}


def _map_q_finalize(model, train_descriptors, config):
    del config
    model.head.fit_whitening(train_descriptors)


@functools.partial(jax.jit, static_argnames="depth")
def _cosine_top(query_block, database, depth: int):
    _, indices = jax.lax.top_k(query_block @ database.T, depth)  # Ties: the lower index first.
    return indices


def _cosine_ranking(query, database, depth: int, *, block: int = 1024) -> np.ndarray:
    """Database rows by descending cosine similarity, ties by ascending index, ``[num_queries, depth]``.

    Queries go in blocks of ``block`` (padded, one compilation) so the similarity matrix in memory is
    ``block x num_database``, not ``num_queries x num_database``.
    """
    database = jnp.asarray(database)
    rows = []
    for start in range(0, len(query), block):
        chunk = np.asarray(query[start : start + block])
        padded = np.zeros((block, chunk.shape[1]), chunk.dtype)
        padded[: len(chunk)] = chunk
        rows.append(np.asarray(_cosine_top(jnp.asarray(padded), database, depth))[: len(chunk)])
    return np.concatenate(rows)


def _map_q_evaluate(query, database, query_labels, database_labels, model, extras, config) -> Evaluation:
    del model, extras
    ranked = _cosine_ranking(query, database, _ranking_depth(config, len(database)))
    results = _ranking_evaluation(ranked, query_labels, database_labels, config)
    binary, _, binary_curve = _hamming_evaluation(
        _sign_codes(query), _sign_codes(database), query_labels, database_labels, config, prefix="binary_"
    )
    results.update(binary)
    curves = {
        "map_q cosine": _ranked_curve(ranked, query_labels, database_labels),
        "map_q sign codes": binary_curve,
    }
    return Evaluation(results, ranked[:, : int(config.eval.grid_results)], curves)


# ---------------------------------------------------------------------------------------------------

METHODS: dict[str, Method] = {
    "csq": Method(
        name="csq",
        head="hash",
        init_extras=_csq_extras,
        loss=_csq_loss,
        encode=_encode_model,
        evaluate=_hash_evaluate,
    ),
    "pairwise": Method(
        name="pairwise",
        head="hash",
        init_extras=_no_extras,
        loss=_pairwise_loss,
        encode=_encode_model,
        evaluate=_hash_evaluate,
    ),
    "triplet": Method(
        name="triplet",
        head="hash",
        init_extras=_no_extras,
        loss=_triplet_loss,
        encode=_encode_model,
        evaluate=_hash_evaluate,
    ),
    "spq": Method(
        name="spq",
        head="pq",
        init_extras=_no_extras,
        loss=_spq_loss,
        encode=_encode_model,
        evaluate=_spq_evaluate,
    ),
    "map_q": Method(
        name="map_q",
        head="ap",
        init_extras=_no_extras,
        loss=_map_q_loss,
        encode=_encode_model,
        evaluate=_map_q_evaluate,
        listwise_loss=_map_q_listwise,
        finalize=_map_q_finalize,
    ),
}


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name``; a clear error naming the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: config.method must be one of {sorted(METHODS)}")
    return METHODS[name]
