"""Hash centers for central similarity quantization (CSQ).

A hash center is a vector in ``{-1, +1}^num_bits``, one per class; CSQ pulls every image's code
towards the center of its class. Centers should be far apart in Hamming distance. Two constructions:

* Hadamard: when ``num_bits`` is a power of two and ``num_classes <= 2 * num_bits``, the first rows
  of ``[H; -H]`` with ``H`` the Sylvester Hadamard matrix. Distinct rows are exactly ``num_bits / 2``
  apart (a row and its negation ``num_bits`` apart). No randomness.
* Random balanced rows (``num_bits // 2`` entries are -1) redrawn until every pair is at least
  ``min_distance`` apart, checked with chunked matrix products so 40,000 classes take seconds.

Hamming distance between +-1 vectors: ``d(a, b) = (num_bits - a . b) / 2`` (a distance, ascending).

References:
  Yuan et al., "Central Similarity Quantization for Efficient Image and Video Retrieval", CVPR 2020.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["hash_centers", "center_distance_stats", "multilabel_centers"]

# Rows per block of the pairwise check: a block costs block * num_classes float32 (82 MB at 40,000).
_CHECK_BLOCK_ROWS = 512
# Redraw rounds before giving up on a minimum distance.
_MAX_REDRAW_ROUNDS = 64


def _is_power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


def _sylvester_hadamard(num_bits: int) -> np.ndarray:
    """``(num_bits, num_bits)`` Sylvester Hadamard matrix, ``H_2n = [[H, H], [H, -H]]``, row 0 all +1."""
    hadamard = np.ones((1, 1), dtype=np.int8)
    while hadamard.shape[0] < num_bits:
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
    return hadamard


def _balanced_rows(generator: np.random.Generator, num_rows: int, num_bits: int) -> np.ndarray:
    """``(num_rows, num_bits)`` int8 rows with exactly ``num_bits // 2`` entries -1 at random places."""
    row = np.ones(num_bits, dtype=np.int8)
    row[: num_bits // 2] = -1
    return generator.permuted(np.tile(row, (num_rows, 1)), axis=1)


def _conflicting_rows(centers: np.ndarray, rows: np.ndarray, min_distance: int) -> tuple[np.ndarray, int]:
    """Rows among ``rows`` to redraw so that no pair closer than ``min_distance`` involves them, and
    the smallest distance between a row of ``rows`` and any other row.

    ``rows`` (ascending) are the suspects: each is checked against every other row, each pair once.
    For a close pair of suspects only the larger index is redrawn; a suspect close to a row outside
    ``rows`` (already accepted) is redrawn itself. A block of suspects is compared, with one matrix
    product, against the accepted rows and the suspects before the block (a contiguous prefix of the
    reordered matrix, so no copy), then within the block (strictly lower triangle).
    """
    num_classes, num_bits = centers.shape
    suspect = np.zeros(num_classes, dtype=bool)
    suspect[rows] = True
    # Accepted rows first, then suspects in ascending order. Exact in float32: inner products of
    # +-1 vectors are small integers, and d(a, b) = (num_bits - a . b) / 2.
    ordered = centers[np.concatenate([np.flatnonzero(~suspect), rows])].astype(np.float32)
    num_accepted = num_classes - rows.size
    largest_allowed_product = num_bits - 2 * min_distance
    redraw = []
    largest_product = -np.inf
    for start in range(0, rows.size, _CHECK_BLOCK_ROWS):
        block = ordered[num_accepted + start : num_accepted + start + _CHECK_BLOCK_ROWS]
        within = block @ block.T
        within[np.triu_indices(block.shape[0])] = -np.inf  # each pair once, never a row with itself
        products = within.max(axis=1)
        if num_accepted + start:
            products = np.maximum(products, (block @ ordered[: num_accepted + start].T).max(axis=1))
        largest_product = max(largest_product, float(products.max()))
        redraw.append(rows[start : start + block.shape[0]][products > largest_allowed_product])
    smallest = num_bits if largest_product == -np.inf else int(num_bits - largest_product) // 2
    return np.concatenate(redraw) if redraw else rows, smallest


def hash_centers(
    num_classes: int,
    num_bits: int,
    *,
    key: jax.Array | None = None,
    min_distance: int | None = None,
) -> np.ndarray:
    r"""One hash center per class, pairwise far apart in Hamming distance.

    If ``num_bits`` is a power of two and ``num_classes <= 2 * num_bits``, returns the first
    ``num_classes`` rows of ``[H; -H]`` (``H`` the Sylvester Hadamard matrix, row 0 all +1); any two
    rows are at least ``num_bits / 2`` apart and ``key`` is not needed. Otherwise draws random
    balanced rows (exactly ``num_bits // 2`` entries are -1; for odd ``num_bits`` the extra entry is
    +1) and redraws, in bounded rounds, only the rows of pairs closer than ``min_distance``:

    .. math:: d(c_i, c_j) = \tfrac{1}{2}(K - c_i \cdot c_j) \ge d_{\min} \quad \forall i \ne j.

    Each round checks the redrawn rows against all rows with chunked matrix products (memory
    ``512 * num_classes`` floats at a time), so 40,000 classes x 64 bits take seconds.

    Args:
      num_classes: number of classes ``m >= 1``.
      num_bits: code length ``K >= 1``.
      key: a ``jax.random`` key; required for the random construction, ignored for Hadamard rows.
      min_distance: smallest allowed Hamming distance between two centers; default
        ``num_bits // 4``. For Hadamard rows it may not exceed what they guarantee.

    Returns:
      ``[num_classes, num_bits]`` int8 numpy array in ``{-1, +1}``.

    Raises:
      ValueError: bad sizes, a missing key, or a minimum distance that was not reached (the message
        names the smallest distance the last attempt achieved).

    Example:

      >>> hash_centers(3, 4)
      array([[ 1,  1,  1,  1],
             [ 1, -1,  1, -1],
             [ 1,  1, -1, -1]], dtype=int8)
      >>> centers = hash_centers(100, 48, key=jax.random.key(0))
      >>> centers.shape, int(centers.sum(axis=1).max()), center_distance_stats(centers)["min_distance"] >= 12
      ((100, 48), 0, True)

    References:
      Yuan et al., "Central Similarity Quantization for Efficient Image and Video Retrieval",
      CVPR 2020.
    """
    for name, value in (("num_classes", num_classes), ("num_bits", num_bits)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"hash_centers: {name} must be a positive int, got {value!r}")
    num_classes, num_bits = int(num_classes), int(num_bits)
    if min_distance is None:
        min_distance = num_bits // 4
    if isinstance(min_distance, bool) or not isinstance(min_distance, (int, np.integer)):
        raise ValueError(f"hash_centers: min_distance must be an int, got {min_distance!r}")
    min_distance = int(min_distance)
    if not 0 <= min_distance <= num_bits:
        raise ValueError(f"hash_centers: min_distance must lie in [0, num_bits={num_bits}], got {min_distance}")

    if _is_power_of_two(num_bits) and num_classes <= 2 * num_bits:
        hadamard = _sylvester_hadamard(num_bits)
        centers = np.concatenate([hadamard, -hadamard])[:num_classes]
        guaranteed = max(num_bits // 2, 1)
        if num_classes > 1 and min_distance > guaranteed:
            raise ValueError(
                f"hash_centers: Hadamard rows for {num_classes} classes x {num_bits} bits are only "
                f"{guaranteed} apart, below min_distance={min_distance}"
            )
        return np.ascontiguousarray(centers)

    if key is None:
        raise ValueError(
            f"hash_centers: {num_classes} classes x {num_bits} bits need random centers; pass key=jax.random.key(seed)"
        )
    # numpy draws seeded by the key's data: deterministic from the key, and no jax compilation
    # for each redraw size.
    generator = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    centers = _balanced_rows(generator, num_classes, num_bits)
    suspects = np.arange(num_classes)
    smallest = num_bits
    for round_index in range(_MAX_REDRAW_ROUNDS + 1):
        suspects, smallest = _conflicting_rows(centers, suspects, min_distance)
        if suspects.size == 0:
            return centers
        if round_index < _MAX_REDRAW_ROUNDS:
            centers[suspects] = _balanced_rows(generator, suspects.size, num_bits)
    raise ValueError(
        f"hash_centers: could not place {num_classes} balanced centers of {num_bits} bits at least "
        f"min_distance={min_distance} apart after {_MAX_REDRAW_ROUNDS} redraw rounds; the best minimum "
        f"distance reached was {smallest} ({suspects.size} rows still in conflict). Use more bits or a "
        f"smaller min_distance."
    )


def center_distance_stats(centers: np.ndarray | jax.Array) -> dict[str, float]:
    """Minimum and mean pairwise Hamming distance between hash centers.

    The mean comes in closed form from per-bit counts (``sum_k plus_k * minus_k`` pairs differ in
    bit ``k``); the minimum from chunked matrix products, ``512 * num_classes`` floats at a time
    (40,000 x 40,000 pairs never sit in memory at once; time is ``O(num_classes^2 * num_bits)``).

    Args:
      centers: ``[num_classes, num_bits]`` array in ``{-1, +1}`` with ``num_classes >= 2``.

    Returns:
      ``{"min_distance": int, "mean_distance": float}`` (distances, in bits).

    Example:

      >>> center_distance_stats(hash_centers(4, 8))
      {'min_distance': 4, 'mean_distance': 4.0}
    """
    centers = np.asarray(centers)
    if centers.ndim != 2 or centers.shape[0] < 2 or centers.shape[1] < 1:
        raise ValueError(f"center_distance_stats: centers must be [num_classes >= 2, num_bits], got {centers.shape}")
    if not np.isin(centers, (-1, 1)).all():
        raise ValueError("center_distance_stats: centers must contain only -1 and +1")
    num_classes, num_bits = centers.shape
    plus = (centers > 0).sum(axis=0).astype(np.float64)
    num_pairs = num_classes * (num_classes - 1) / 2
    mean_distance = float((plus * (num_classes - plus)).sum() / num_pairs)
    _, min_distance = _conflicting_rows(centers, np.arange(num_classes), 0)
    return {"min_distance": min_distance, "mean_distance": mean_distance}


def _concrete_or_none(array: jax.Array) -> np.ndarray | None:
    """The value of ``array`` as numpy, or None while it is being traced (under ``jax.jit``)."""
    try:
        return np.asarray(array)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def multilabel_centers(
    labels: jax.Array,
    centers: jax.Array,
    *,
    tie_breaker: jax.Array,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Per-sample target centers for multi-label data: the sign of the vote of its labels' centers.

    .. math:: c(y) = \operatorname{sign}\Big(\sum_{k : y_k > 0} c_k\Big),
       \text{ with } t_b \text{ wherever the vote is } 0.

    Jit-able. A sample with no positive label would have an all-zero vote (the official code then
    emits NaN): with concrete ``labels`` it is a ``ValueError`` unless ``where`` masks it out; under
    ``jax.jit`` (no check possible) and for masked-out rows its target is ``tie_breaker`` itself.

    Args:
      labels: ``[batch, num_classes]`` multi-hot (or one-hot) labels; entries ``> 0`` are positive.
      centers: ``[num_classes, num_bits]`` class centers in ``{-1, +1}``.
      tie_breaker: ``[num_bits]`` fixed +-1 vector (draw it once per run) used where votes tie.
      where: optional ``[batch]`` bool mask; rows with ``False`` may have no label.

    Returns:
      ``[batch, num_bits]`` array in ``{-1, +1}`` with the dtype of ``centers``.

    Example:

      >>> centers = jnp.asarray(hash_centers(4, 8))
      >>> labels = jnp.array([[0, 1, 1, 0], [1, 0, 0, 0]])
      >>> multilabel_centers(labels, centers, tie_breaker=jnp.array([1, -1, -1, 1, 1, -1, 1, -1]))
      Array([[ 1, -1, -1, -1,  1, -1,  1, -1],
             [ 1,  1,  1,  1,  1,  1,  1,  1]], dtype=int8)

    References:
      Yuan et al., "Central Similarity Quantization for Efficient Image and Video Retrieval",
      CVPR 2020.
    """
    labels, centers, tie_breaker = jnp.asarray(labels), jnp.asarray(centers), jnp.asarray(tie_breaker)
    if labels.ndim != 2 or centers.ndim != 2 or labels.shape[1] != centers.shape[0]:
        raise ValueError(
            f"multilabel_centers: labels [batch, num_classes] and centers [num_classes, num_bits] must agree, "
            f"got labels {labels.shape} and centers {centers.shape}"
        )
    if tie_breaker.shape != (centers.shape[1],):
        raise ValueError(
            f"multilabel_centers: tie_breaker must have shape ({centers.shape[1]},), got {tie_breaker.shape}"
        )
    if where is not None:
        where = jnp.asarray(where)
        if where.shape != (labels.shape[0],) or where.dtype != jnp.bool_:
            raise ValueError(
                f"multilabel_centers: where must be bool [{labels.shape[0]}], got {where.dtype} {where.shape}"
            )
    positive = labels > 0
    unlabelled = _concrete_or_none(~positive.any(axis=1))
    keep = True if where is None else _concrete_or_none(where)
    if unlabelled is not None and keep is not None:  # checkable only when both are concrete
        unlabelled = unlabelled & keep
        if unlabelled.any():
            raise ValueError(
                f"multilabel_centers: labels rows {np.flatnonzero(unlabelled)[:10].tolist()} have no positive "
                f"label (labels shape {labels.shape}); mask them out with where="
            )
    votes = positive.astype(jnp.float32) @ centers.astype(jnp.float32)
    targets = jnp.where(votes == 0, tie_breaker.astype(jnp.float32)[None, :], jnp.sign(votes))
    return targets.astype(centers.dtype)
