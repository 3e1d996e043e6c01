"""Retrieval metrics: mAP@k over Hamming rankings (exact and tie-aware), P@k, R@k, precision-recall
curves, precision within a Hamming radius, and the Revisited Oxford/Paris protocol.

Conventions (those of the hashing literature's DeepHash-pytorch ``CalcTopMap``, with a fixed tie order):

* Codes are +-1 (or real, binarised at 0: ``>= 0`` gives +1) ``[n, num_bits]`` arrays. The database
  is ranked by Hamming distance (ascending), ties by ascending database index: exactly a stable sort
  by ``(distance, index)``, the order faiss ``IndexBinaryFlat`` returns.
* Labels are multi-hot (or one-hot) ``[n, num_classes]``; an item is relevant to a query when they
  share at least one label (entries ``> 0``).
* ``AP@k`` is the mean, over the relevant items found in the top ``k``, of (rank among the relevant
  items / position). A query with no relevant item in its top ``k`` scores 0 and still counts.
  ``top_k=None`` ranks the whole database (no DeepHash off-by-one that drops the last item).

Metrics over an explicit ranking (``ranked_indices [num_queries, k]``, database indices best first,
``-1`` = padding, as ``jaxretrieval.search.hamming_knn`` / ``pq_knn`` return) serve product
quantization and real-valued descriptors; ``hamming_ranking`` produces such a ranking from codes.

Speed: distances come from packed words with XOR + ``jax.lax.population_count`` under ``jax.jit``.
Hamming distances are small integers, so each database item gets one unique integer key
``distance << shift | index << 1 | relevant``: sorting a row of keys is exactly the stable sort by
``(distance, index)`` and carries relevance along, and for mAP@k a linear-time ``np.partition``
keeps only the top ``k`` keys to sort. Queries are processed in chunks on a thread per CPU core.
Tie-aware AP, precision within a radius and precision-recall curves need only per-query histograms
of the distances of all and of relevant items (no sorting at all).

All functions return Python floats or numpy arrays and never NaN.
"""
from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "hamming_ranking",
    "mean_average_precision",
    "ranked_mean_average_precision",
    "precision_at_k",
    "recall_at_k",
    "precision_within_radius",
    "precision_recall_curve",
    "trapezoid_average_precision",
    "revisited_map",
]

# Database entries handled per query chunk: bounds the chunk's uint8 distances (16 MiB) and its
# int64 sort order (128 MiB).
_CHUNK_ENTRIES = 1 << 24


# ---------------------------------------------------------------------------------------------
# Input checks


def _as_array(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers or booleans, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values (shape {array.shape})")
    return array


def _code_bits(name: str, codes) -> np.ndarray:
    """``[n, num_bits]`` bool, True where the code is ``>= 0`` (+1)."""
    array = _as_array(name, codes)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [n, num_bits] array, got shape {array.shape}")
    return array if array.dtype == np.bool_ else array >= 0


def _label_masks(name: str, labels, num_rows: int, num_classes: int | None = None) -> np.ndarray:
    """Multi-hot labels ``[n, num_classes]`` -> ``[n, words]`` uint32 bit masks (positive labels)."""
    array = _as_array(name, labels)
    if array.ndim != 2 or array.shape[0] != num_rows or array.shape[1] == 0:
        raise ValueError(f"{name} must have shape [{num_rows}, num_classes], got {array.shape}")
    if num_classes is not None and array.shape[1] != num_classes:
        raise ValueError(
            f"{name} has {array.shape[1]} classes but the other labels have {num_classes} (shape {array.shape})"
        )
    return _pack_words(array > 0)


def _positive_int(name: str, value, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def _codes_and_labels(query_codes, db_codes, query_labels, db_labels):
    """Checked ``(query_bits, db_bits, query_masks, db_masks)``."""
    query_bits = _code_bits("query_codes", query_codes)
    db_bits = _code_bits("db_codes", db_codes)
    if query_bits.shape[1] != db_bits.shape[1]:
        raise ValueError(
            f"query_codes {query_bits.shape} and db_codes {db_bits.shape} have different numbers of bits"
        )
    query_masks = _label_masks("query_labels", query_labels, query_bits.shape[0])
    db_masks = _label_masks("db_labels", db_labels, db_bits.shape[0], np.shape(query_labels)[1])
    return query_bits, db_bits, query_masks, db_masks


# ---------------------------------------------------------------------------------------------
# Hamming distances and relevance, chunk by chunk


def _pack_words(bits: np.ndarray) -> np.ndarray:
    """``[n, width]`` bool -> ``[n, ceil(width / 32)]`` uint32 words, bit ``i % 32`` of word ``i // 32``."""
    packed = np.packbits(bits, axis=1, bitorder="little")
    words = -(-packed.shape[1] // 4)
    padded = np.zeros((bits.shape[0], words * 4), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view("<u4")


@functools.partial(jax.jit, static_argnames=("shift", "with_index"))
def _ranking_key_block(query_words, db_words, query_label_words, db_label_words, shift, with_index):
    """``[q, n]`` uint32 keys ``distance << shift | index << 1 | shares a label`` of all pairs of a
    query block and the database (distance by XOR + popcount of packed words); without the index
    ``distance << 1 | shares a label`` (histogram bins)."""
    distances = jnp.zeros((query_words.shape[0], db_words.shape[0]), jnp.uint32)
    for word in range(query_words.shape[1]):  # few words (2 for 64 bits): unrolled and fused
        distances += jax.lax.population_count(query_words[:, word, None] ^ db_words[None, :, word])
    shared = jnp.zeros(distances.shape, jnp.bool_)
    for word in range(query_label_words.shape[1]):
        shared |= (query_label_words[:, word, None] & db_label_words[None, :, word]) != 0
    if not with_index:
        return (distances << 1) | shared.astype(jnp.uint32)
    index = jax.lax.broadcasted_iota(jnp.uint32, distances.shape, 1)
    return (distances << shift) | (index << 1) | shared.astype(jnp.uint32)


class _RankingKeys:
    """Query chunks of all-pairs ranking keys ``distance << shift | index << 1 | relevant`` (uint32).

    Keys are unique per row, so sorting a row of keys is exactly the stable sort by ``(distance,
    index)``, and the relevance bit travels with each item (no gather after sorting). Keys are
    computed under ``jax.jit`` with one compiled shape (the last chunk is padded).
    """

    def __init__(self, query_bits, db_bits, query_masks=None, db_masks=None):
        self.num_bits = query_bits.shape[1]
        self.num_queries, self.num_database = query_bits.shape[0], db_bits.shape[0]
        self.shift = max(1, (self.num_database - 1).bit_length()) + 1
        if self.shift + self.num_bits.bit_length() > 32:
            raise ValueError(
                f"{self.num_database} database items x {self.num_bits} bits exceed 32-bit ranking keys "
                f"(e.g. 16.7M items at 64 bits): evaluate on a smaller database or rank with jaxretrieval.search"
            )
        self.chunk = min(1 << max(0, (_CHUNK_ENTRIES // self.num_database).bit_length() - 1), 1024)
        self.chunk = min(self.chunk, 1 << (self.num_queries - 1).bit_length())
        self.query_words, self.db_words = _pack_words(query_bits), jnp.asarray(_pack_words(db_bits))
        no_labels = np.zeros((0, 0), np.uint32)
        self.query_masks = no_labels.reshape(self.num_queries, 0) if query_masks is None else query_masks
        self.db_masks = jnp.asarray(no_labels.reshape(self.num_database, 0) if db_masks is None else db_masks)

    def slices(self) -> list[slice]:
        return [slice(start, min(start + self.chunk, self.num_queries)) for start in range(0, self.num_queries, self.chunk)]

    def keys(self, rows: slice, *, with_index: bool = True) -> np.ndarray:
        """``[rows, num_database]`` uint32 keys in database order (``distance << 1 | relevant``
        without the index)."""
        count = rows.stop - rows.start
        query_words = np.zeros((self.chunk, self.query_words.shape[1]), np.uint32)
        query_masks = np.zeros((self.chunk, self.query_masks.shape[1]), np.uint32)
        query_words[:count], query_masks[:count] = self.query_words[rows], self.query_masks[rows]
        keys = _ranking_key_block(query_words, self.db_words, query_masks, self.db_masks, self.shift, with_index)
        return np.asarray(keys)[:count]

    def best(self, rows: slice, top_k: int) -> np.ndarray:
        """``[rows, top_k]`` sorted keys of the ``top_k`` best database items."""
        keys = self.keys(rows)
        if top_k < self.num_database:  # a linear-time selection first: only the top k get sorted
            keys = np.partition(keys, top_k - 1, axis=1)[:, :top_k]
        return np.sort(keys, axis=1)

    def distances(self, keys: np.ndarray) -> np.ndarray:
        return (keys >> self.shift).astype(np.int32)

    def indices(self, keys: np.ndarray) -> np.ndarray:
        return ((keys >> 1) & ((1 << (self.shift - 1)) - 1)).astype(np.int32)


def _map_chunks(function: Callable[[slice], np.ndarray], slices: Sequence[slice]) -> np.ndarray:
    """``function`` over query chunks on a thread per core (numpy sorting and XLA release the GIL);
    results concatenated in query order, so the outcome does not depend on the thread count."""
    workers = min(len(slices), os.cpu_count() or 1)
    if workers <= 1:
        return np.concatenate([function(rows) for rows in slices])
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(function, slices)))


def _ranked_relevance(query_masks: np.ndarray, db_masks: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``[q, k]`` bool: item ``indices[i, j]`` shares a label with query ``i``; index -1 never does."""
    shared = (db_masks[indices] & query_masks[:, None, :]).any(axis=-1)
    return shared & (indices >= 0)


def _num_relevant(query_masks: np.ndarray, db_masks: np.ndarray) -> np.ndarray:
    """``[q]`` int64: database items sharing a label with each query, per distinct database label set."""
    label_sets, set_sizes = np.unique(db_masks, axis=0, return_counts=True)
    step = max(1, _CHUNK_ENTRIES // label_sets.size)
    return np.concatenate([
        ((query_masks[start : start + step, None, :] & label_sets[None]) != 0).any(axis=-1) @ set_sizes
        for start in range(0, query_masks.shape[0], step)
    ])


def _average_precision(relevant: np.ndarray, normaliser: np.ndarray | None = None) -> np.ndarray:
    """``[q]`` AP of ranked relevance ``[q, k]``: sum over relevant positions of (rank among the
    relevant / position), divided by ``normaliser`` (default: relevant items found); 0 where that is 0."""
    rows, positions = np.divmod(np.flatnonzero(relevant), relevant.shape[1])  # 1-D scan: faster than 2-D
    found = np.bincount(rows, minlength=relevant.shape[0])
    rank_among_relevant = np.arange(1, rows.size + 1) - (np.cumsum(found) - found)[rows]
    precision_sum = np.bincount(rows, weights=rank_among_relevant / (positions + 1.0), minlength=relevant.shape[0])
    normaliser = found if normaliser is None else normaliser
    return np.where(normaliser > 0, precision_sum / np.maximum(normaliser, 1), 0.0)


def _histograms(query_bits, db_bits, query_masks, db_masks) -> tuple[np.ndarray, np.ndarray]:
    """``[num_queries, num_bits + 1]`` counts of all and of relevant database items at each distance."""
    chunks = _RankingKeys(query_bits, db_bits, query_masks, db_masks)
    num_groups = chunks.num_bits + 1

    def count(rows: slice) -> np.ndarray:
        # One bincount per query for both: bin = 2 * distance + relevant. Row by row stays in cache
        # and beats one bincount over offset bins by 3x.
        bins = chunks.keys(rows, with_index=False)
        return np.stack([np.bincount(row, minlength=2 * num_groups) for row in bins]).reshape(-1, num_groups, 2)

    counts = _map_chunks(count, chunks.slices())
    return counts.sum(axis=2), counts[:, :, 1]


# ---------------------------------------------------------------------------------------------
# Tie-aware AP (He et al.) from histograms


def _tie_aware_average_precision(everything: np.ndarray, relevant: np.ndarray, top_k: int) -> np.ndarray:
    """``[q]`` expected AP@top_k over uniformly random orders within each distance (tie group).

    Group ``t`` holds ``n_t`` items, ``r_t`` relevant, after ``a_t`` items and ``R_t`` relevant ones.
    The item at position ``i`` of a group is relevant with probability ``r_t / n_t`` and, given
    that, has ``(i - a_t - 1)(r_t - 1)/(n_t - 1)`` relevant group mates before it in expectation, so

    ``E[sum_{relevant} rank_rel / position] = sum_t (r_t/n_t) sum_{i=a_t+1}^{a_t+n_t}
    (R_t + 1 + (i - a_t - 1)(r_t - 1)/(n_t - 1)) / i``, in closed form with harmonic numbers.

    When ``top_k`` cuts a group after ``m`` of its items the number ``X`` of relevant items above
    the cut is hypergeometric and AP@k's normaliser ``R_t + X`` is random: the expectation is exact,
    ``sum_x P(X = x) E[numerator | X = x] / (R_t + x)`` (0 where ``R_t + x = 0``), where given ``x``
    the ``m`` cut positions hold ``x`` relevant items in uniformly random places.
    """
    num_database = int(everything[0].sum())
    top_k = min(top_k, num_database)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, num_database + 1))])
    ends = np.cumsum(everything, axis=1)
    starts = ends - everything
    relevant_before = np.cumsum(relevant, axis=1) - relevant
    # Whole groups inside the top k.
    whole = ends <= top_k
    group_harmonic = harmonic[ends] - harmonic[starts]
    share = np.divide(relevant, everything, out=np.zeros(everything.shape), where=everything > 0)
    mates = np.divide(relevant - 1, everything - 1, out=np.zeros(everything.shape), where=everything > 1)
    group_terms = share * (
        (relevant_before + 1) * group_harmonic + mates * (everything - (starts + 1) * group_harmonic)
    )
    numerator = np.where(whole, group_terms, 0.0).sum(axis=1)
    found = np.where(whole, relevant, 0).sum(axis=1)
    # The group cut by the top k (absent where the cut falls between groups).
    cut = (starts < top_k) & (ends > top_k)
    if not cut.any():
        return np.where(found > 0, numerator / np.maximum(found, 1), 0.0)
    group = cut.argmax(axis=1)
    take = lambda array: np.take_along_axis(array, group[:, None], axis=1)[:, 0]  # noqa: E731
    size, size_relevant, before = take(everything), take(relevant), take(starts)
    taken = np.where(cut.any(axis=1), top_k - before, 0)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, num_database + 1)))])

    def log_choose(n, k):
        valid = (k >= 0) & (k <= n)
        n, k = np.maximum(n, 0), np.clip(k, 0, np.maximum(n, 0))
        return np.where(valid, log_factorial[n] - log_factorial[k] - log_factorial[n - k], -np.inf)

    x = np.arange(int(np.minimum(size_relevant, taken).max()) + 1)[None, :]  # relevant items above the cut
    size, size_relevant, taken = size[:, None], size_relevant[:, None], taken[:, None]
    probability = np.exp(
        log_choose(size_relevant, x) + log_choose(size - size_relevant, taken - x) - log_choose(size, taken)
    )
    cut_harmonic = (harmonic[before + taken[:, 0]] - harmonic[before])[:, None]
    cut_mates = np.divide(x - 1, taken - 1, out=np.zeros(probability.shape), where=taken > 1)
    cut_numerator = np.divide(x, taken, out=np.zeros(probability.shape), where=taken > 0) * (
        (found[:, None] + 1) * cut_harmonic + cut_mates * (taken - (before[:, None] + 1) * cut_harmonic)
    )
    normaliser = found[:, None] + x
    expected = np.divide(numerator[:, None] + cut_numerator, normaliser, out=np.zeros(probability.shape), where=normaliser > 0)
    return (probability * expected).sum(axis=1)


# ---------------------------------------------------------------------------------------------
# Public API


def hamming_ranking(query_codes, db_codes, *, top_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rank the database for each query by Hamming distance, ties by ascending database index.

    Exactly a stable sort by ``(distance, index)`` (the order of faiss ``IndexBinaryFlat``).

    Args:
      query_codes: ``[num_queries, num_bits]`` +-1 or real codes (``>= 0`` is +1) or bool bits.
      db_codes: ``[num_database, num_bits]`` likewise.
      top_k: keep the best ``top_k`` (``None``: the whole database, ``num_queries * num_database``
        entries; beyond the database size it is clipped to it).

    Returns:
      ``(distances, indices)``: ``[num_queries, k]`` int32 Hamming distances (ascending) and int32
      database indices, best first.

    Example:

      >>> distances, indices = hamming_ranking([[1, 1, -1]], [[-1, -1, 1], [1, 1, 1], [1, 1, -1], [1, 1, 1]])
      >>> distances.tolist(), indices.tolist()
      ([[0, 1, 1, 3]], [[2, 1, 3, 0]])
    """
    query_bits, db_bits = _code_bits("query_codes", query_codes), _code_bits("db_codes", db_codes)
    if query_bits.shape[1] != db_bits.shape[1]:
        raise ValueError(f"query_codes {query_bits.shape} and db_codes {db_bits.shape} have different numbers of bits")
    top_k = min(_positive_int("top_k", top_k, allow_none=True) or db_bits.shape[0], db_bits.shape[0])
    chunks = _RankingKeys(query_bits, db_bits)

    def rank(rows: slice) -> np.ndarray:
        keys = chunks.best(rows, top_k)
        return np.stack([chunks.distances(keys), chunks.indices(keys)], axis=1)

    ranked = _map_chunks(rank, chunks.slices())
    return ranked[:, 0], ranked[:, 1]


def mean_average_precision(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    *,
    top_k: int | None = None,
    tie_aware: bool = False,
    drop_unlabelled_queries: bool = False,
) -> float:
    r"""mAP@k of Hamming ranking: the hashing literature's metric with a defined tie order.

    For a query with relevant indicator ``rel_i`` at position ``i`` of the ranking (distance
    ascending, ties by ascending database index) and ``R_k = sum_{i <= k} rel_i``:

    .. math:: \mathrm{AP@}k = \frac{1}{R_k} \sum_{i=1}^{k} rel_i \, \frac{\sum_{j \le i} rel_j}{i},
       \qquad 0 \text{ if } R_k = 0,

    and mAP@k is the mean over queries (a query with nothing relevant in its top ``k`` counts as 0).
    Ties by index make the score depend on the database's order: keep that order independent of the
    labels (the protocols of :mod:`jaxretrieval.data` shuffle the database; a class-sorted one lowered a
    64-bit CSQ model's mAP@1000 on CIFAR-10 from 0.53 to 0.36), or use ``tie_aware=True``.

    ``tie_aware=True`` returns He et al.'s expected AP over uniformly random orders within equal
    distances instead, which no tie order can move. With ``top_k`` cutting a tie group, the
    expectation of AP@k is exact: the number ``X`` of relevant items above the cut is
    hypergeometric, and ``E[AP@k] = sum_x P(X = x) E[sum of precisions | X = x] / (R + x)`` with
    ``R`` the relevant items in the groups above the cut (closed forms with harmonic numbers).

    Cost: the full ranking of 10,000 x 50,000 x 64-bit codes takes seconds on two CPU cores
    (benchmarks/metrics.py); tie-aware mAP needs only distance histograms.

    Args:
      query_codes: ``[num_queries, num_bits]`` +-1 or real codes (``>= 0`` is +1) or bool bits.
      db_codes: ``[num_database, num_bits]`` likewise.
      query_labels: ``[num_queries, num_classes]`` multi-hot or one-hot labels (``> 0`` = positive).
      db_labels: ``[num_database, num_classes]`` likewise.
      top_k: rank cut-off ``k`` (``None``: the whole database; a ``k`` beyond it means all of it).
      tie_aware: expected AP over random tie orders (He et al.) instead of the index tie order.
      drop_unlabelled_queries: leave queries without any positive label out of the mean (the CSQ
        official code's convention); by default they count with AP 0 (DeepHash-pytorch's).

    Returns:
      mAP as a Python float in [0, 1].

    Example:

      >>> query_codes, query_labels = [[1, 1, 1, 1]], [[1, 0]]
      >>> db_codes = [[-1, -1, -1, -1], [1, 1, 1, -1], [1, 1, 1, 1], [1, 1, 1, -1]]
      >>> db_labels = [[1, 0], [0, 1], [1, 0], [1, 0]]
      >>> round(mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=3), 4)
      0.8333
      >>> round(mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=3, tie_aware=True), 4)
      0.9167

    References:
      Cao et al., "HashNet: Deep Learning to Hash by Continuation", ICCV 2017 (the mAP@k protocol);
      He et al., "Hashing as Tie-Aware Learning to Rank", CVPR 2018.
    """
    query_bits, db_bits, query_masks, db_masks = _codes_and_labels(query_codes, db_codes, query_labels, db_labels)
    top_k = min(_positive_int("top_k", top_k, allow_none=True) or db_bits.shape[0], db_bits.shape[0])
    if drop_unlabelled_queries:
        labelled = (query_masks != 0).any(axis=1)
        if not labelled.any():
            raise ValueError(f"mean_average_precision: no query has a label (query_labels shape {np.shape(query_labels)})")
        query_bits, query_masks = query_bits[labelled], query_masks[labelled]
    if tie_aware:
        everything, relevant = _histograms(query_bits, db_bits, query_masks, db_masks)
        # The expectation over a cut tie group takes [queries, k + 1] floats: bounded chunks of queries.
        step = max(1, _CHUNK_ENTRIES // (8 * (min(top_k, db_bits.shape[0]) + 1)))
        return float(np.concatenate([
            _tie_aware_average_precision(everything[start : start + step], relevant[start : start + step], top_k)
            for start in range(0, everything.shape[0], step)
        ]).mean())
    chunks = _RankingKeys(query_bits, db_bits, query_masks, db_masks)

    def average_precision(rows: slice) -> np.ndarray:
        return _average_precision((chunks.best(rows, top_k) & 1).astype(bool))

    return float(_map_chunks(average_precision, chunks.slices()).mean())


def _ranking_and_labels(ranked_indices, query_labels, db_labels, top_k: int | None):
    """Checked ``(indices [q, k] int64, query_masks, db_masks)`` for metrics over a given ranking."""
    indices = np.asarray(ranked_indices)
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"ranked_indices must be integers, got dtype {indices.dtype}")
    if indices.ndim != 2 or indices.shape[0] == 0 or indices.shape[1] == 0:
        raise ValueError(f"ranked_indices must be a non-empty [num_queries, k] array, got shape {indices.shape}")
    db_array = np.asarray(db_labels)
    if db_array.ndim != 2 or db_array.shape[0] == 0:
        raise ValueError(f"db_labels must be a non-empty [num_database, num_classes] array, got shape {db_array.shape}")
    query_masks = _label_masks("query_labels", query_labels, indices.shape[0])
    db_masks = _label_masks("db_labels", db_array, db_array.shape[0], np.shape(query_labels)[1])
    if indices.min() < -1 or indices.max() >= db_masks.shape[0]:
        raise ValueError(
            f"ranked_indices must lie in [-1, {db_masks.shape[0]}) for db_labels {db_array.shape}, "
            f"got values in [{indices.min()}, {indices.max()}]"
        )
    if top_k is not None:
        top_k = _positive_int("top_k", top_k)
        if top_k > indices.shape[1]:
            raise ValueError(f"top_k={top_k} exceeds the {indices.shape[1]} ranked items of ranked_indices {indices.shape}")
        indices = indices[:, :top_k]
    return indices.astype(np.int64), query_masks, db_masks


def ranked_mean_average_precision(
    ranked_indices, query_labels, db_labels, *, top_k: int | None = None, num_relevant=None
) -> float:
    """mAP@k of an explicit ranking (PQ search, real-valued descriptors, ...).

    AP as in ``mean_average_precision``; padding (-1) is never relevant.

    Args:
      ranked_indices: ``[num_queries, k]`` int database indices best first, ``-1`` = padding.
      query_labels: ``[num_queries, num_classes]`` multi-hot or one-hot labels.
      db_labels: ``[num_database, num_classes]`` likewise.
      top_k: use the first ``top_k`` columns (``None``: all of them).
      num_relevant: optional ``[num_queries]`` numbers of relevant items in the whole database:
        AP is then divided by them (the information-retrieval AP, e.g. of a truncated full
        ranking) instead of by the relevant items found in the ranking (DeepHash's AP@k).

    Returns:
      mAP as a Python float.

    Example:

      >>> ranked_mean_average_precision([[2, 1, 0]], [[1, 0]], [[1, 0], [0, 1], [1, 0]])  # (1/1 + 2/3) / 2
      0.8333333333333333
    """
    indices, query_masks, db_masks = _ranking_and_labels(ranked_indices, query_labels, db_labels, top_k)
    normaliser = None
    if num_relevant is not None:
        normaliser = _as_array("num_relevant", num_relevant)
        if normaliser.shape != (indices.shape[0],):
            raise ValueError(f"num_relevant must have shape ({indices.shape[0]},), got {normaliser.shape}")
    return float(_average_precision(_ranked_relevance(query_masks, db_masks, indices), normaliser).mean())


def precision_at_k(ranked_indices, query_labels, db_labels, *, k: int) -> float:
    """Mean over queries of (relevant items among the first ``k`` of the ranking) / ``k``.

    Args:
      ranked_indices: ``[num_queries, >= k]`` database indices best first (-1 padding counts as
        not relevant); e.g. from ``hamming_ranking(..., top_k=k)`` or ``search.hamming_knn``.
      query_labels: ``[num_queries, num_classes]`` multi-hot or one-hot labels.
      db_labels: ``[num_database, num_classes]`` likewise.
      k: cut-off, ``1 <= k <= ranked_indices.shape[1]``.

    Returns:
      P@k as a Python float.

    Example:

      >>> precision_at_k([[2, 1, 0]], [[1, 0]], [[1, 0], [0, 1], [1, 0]], k=2)
      0.5
    """
    indices, query_masks, db_masks = _ranking_and_labels(ranked_indices, query_labels, db_labels, _positive_int("k", k))
    return float(_ranked_relevance(query_masks, db_masks, indices).sum(axis=1).mean() / indices.shape[1])


def recall_at_k(ranked_indices, query_labels, db_labels, *, k: int) -> float:
    """Mean over queries of (relevant items among the first ``k``) / (relevant items in the database).

    A query with no relevant item in the database has recall 0 and still counts (as in mAP).

    Args:
      ranked_indices: ``[num_queries, >= k]`` database indices best first (-1 = padding).
      query_labels: ``[num_queries, num_classes]`` multi-hot or one-hot labels.
      db_labels: ``[num_database, num_classes]``: the whole database (recall's denominator).
      k: cut-off, ``1 <= k <= ranked_indices.shape[1]``.

    Returns:
      R@k as a Python float.

    Example:

      >>> recall_at_k([[2, 1, 0]], [[1, 0]], [[1, 0], [0, 1], [1, 0]], k=1)
      0.5
    """
    indices, query_masks, db_masks = _ranking_and_labels(ranked_indices, query_labels, db_labels, _positive_int("k", k))
    found = _ranked_relevance(query_masks, db_masks, indices).sum(axis=1)
    total = _num_relevant(query_masks, db_masks)
    return float(np.where(total > 0, found / np.maximum(total, 1), 0.0).mean())


def precision_within_radius(query_codes, db_codes, query_labels, db_labels, *, radius: int = 2) -> float:
    """Mean precision of the items within Hamming distance ``radius`` (inclusive) of each query.

    Hash-lookup convention: a query with no item within the radius has precision 0 and still counts.

    Args:
      query_codes: ``[num_queries, num_bits]`` +-1 or real codes (``>= 0`` is +1).
      db_codes: ``[num_database, num_bits]`` likewise.
      query_labels: ``[num_queries, num_classes]`` multi-hot or one-hot labels.
      db_labels: ``[num_database, num_classes]`` likewise.
      radius: Hamming radius ``>= 0``.

    Returns:
      Precision as a Python float.

    Example:

      >>> precision_within_radius([[1, 1, 1, 1]], [[1, 1, 1, -1], [1, -1, -1, 1], [1, 1, 1, 1]],
      ...                         [[1, 0]], [[1, 0], [1, 0], [0, 1]], radius=1)
      0.5
    """
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)):
        raise TypeError(f"radius must be an int, got {radius!r}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    everything, relevant = _histograms(*_codes_and_labels(query_codes, db_codes, query_labels, db_labels))
    retrieved = everything[:, : radius + 1].sum(axis=1)
    hits = relevant[:, : radius + 1].sum(axis=1)
    return float(np.where(retrieved > 0, hits / np.maximum(retrieved, 1), 0.0).mean())


def precision_recall_curve(
    query_codes, db_codes, query_labels, db_labels, *, average: str = "macro"
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of Hamming-ball retrieval for every radius ``r = 0 .. num_bits``.

    At radius ``r`` a query retrieves the items at distance ``<= r``.

    * ``average="macro"`` (DeepHash-pytorch's ``pr_curve``): precision is the mean of the per-query
      precision over the queries that retrieve something at that radius (0 if none does); recall
      the mean of the per-query recall over the queries with at least one relevant item.
    * ``average="micro"``: totals over all queries (relevant retrieved / retrieved, relevant
      retrieved / relevant), 0 where a denominator is 0.

    Args:
      query_codes: ``[num_queries, num_bits]`` +-1 or real codes (``>= 0`` is +1).
      db_codes: ``[num_database, num_bits]`` likewise.
      query_labels: ``[num_queries, num_classes]`` multi-hot or one-hot labels.
      db_labels: ``[num_database, num_classes]`` likewise.
      average: ``"macro"`` or ``"micro"``.

    Returns:
      ``(precision, recall)``: two ``[num_bits + 1]`` float64 arrays indexed by radius.

    Example:

      >>> precision, recall = precision_recall_curve([[1, 1]], [[1, 1], [1, -1], [-1, -1]], [[1]], [[1], [0], [1]])
      >>> precision.round(3).tolist(), recall.tolist()
      ([1.0, 0.5, 0.667], [0.5, 0.5, 1.0])
    """
    if average not in ("macro", "micro"):
        raise ValueError(f'average must be "macro" or "micro", got {average!r}')
    everything, relevant = _histograms(*_codes_and_labels(query_codes, db_codes, query_labels, db_labels))
    retrieved, hits = np.cumsum(everything, axis=1), np.cumsum(relevant, axis=1)
    total = hits[:, -1:]
    if average == "micro":
        precision = np.divide(hits.sum(0), retrieved.sum(0), out=np.zeros(retrieved.shape[1]), where=retrieved.sum(0) > 0)
        recall = hits.sum(0) / max(total.sum(), 1)
        return precision, recall
    retrieving = retrieved > 0
    per_query = np.divide(hits, retrieved, out=np.zeros(retrieved.shape), where=retrieving)
    precision = np.divide(per_query.sum(0), retrieving.sum(0), out=np.zeros(retrieved.shape[1]), where=retrieving.any(0))
    with_relevant = total[:, 0] > 0
    recall = (hits[with_relevant] / total[with_relevant]).mean(0) if with_relevant.any() else np.zeros(retrieved.shape[1])
    return precision, recall


def trapezoid_average_precision(positive_ranks, num_positives: int) -> float:
    r"""AP by the trapezoid rule over recall, as revisitop's ``compute_ap``.

    With the 0-based ranks ``p_0 < p_1 < ...`` of the positives (junk already removed) and
    ``n = num_positives``:

    .. math:: AP = \sum_j \frac{1}{2n}\Big(\frac{j}{p_j} + \frac{j + 1}{p_j + 1}\Big),
       \quad \frac{j}{p_j} := 1 \text{ if } p_j = 0.

    Args:
      positive_ranks: ``[m]`` ascending 0-based positions of the retrieved positives, ``m <= n``.
      num_positives: total number of positives ``n >= 1`` (those never retrieved add nothing).

    Returns:
      AP as a Python float.

    Example:

      >>> round(trapezoid_average_precision([0, 2, 5], 3), 10)
      0.6777777778

    References:
      Radenovic et al., "Revisiting Oxford and Paris: Large-Scale Image Retrieval Benchmarking", CVPR 2018.
    """
    ranks = np.asarray(positive_ranks)
    if ranks.ndim != 1 or (ranks.size and not np.issubdtype(ranks.dtype, np.integer)):
        raise ValueError(f"positive_ranks must be a 1-D integer array, got {ranks.dtype} {ranks.shape}")
    num_positives = _positive_int("num_positives", num_positives)
    if ranks.size > num_positives or (ranks.size and (ranks[0] < 0 or (np.diff(ranks) <= 0).any())):
        raise ValueError(
            f"positive_ranks must be at most num_positives={num_positives} distinct ascending ranks >= 0, got {ranks.tolist()}"
        )
    found = np.arange(ranks.size, dtype=np.float64)
    before = np.divide(found, ranks, out=np.ones(ranks.size), where=ranks > 0)
    return float(((before + (found + 1) / (ranks + 1)) / (2 * num_positives)).sum())


_REVISITED_PROTOCOLS = {
    # protocol: (positive groups, groups removed from the ranking as junk)
    "easy": (("easy",), ("junk", "hard")),
    "medium": (("easy", "hard"), ("junk",)),
    "hard": (("hard",), ("junk", "easy")),
}


def revisited_map(ranks, gnd: Sequence[dict], *, kappas: Sequence[int] = (1, 5, 10)) -> dict[str, dict[str, float]]:
    """Revisited Oxford / Paris evaluation: mAP and mP@k for the Easy, Medium and Hard protocols.

    Per protocol (Easy: positives = easy, junk = junk + hard; Medium: positives = easy + hard, junk
    = junk; Hard: positives = hard, junk = junk + easy) junk items are removed from each ranking,
    AP is ``trapezoid_average_precision`` of the positives' ranks, and P@k is revisitop's: the
    share of positives among the first ``min(k, position of the last positive)`` items. Queries
    without positives are excluded from the means (as in revisitop; 0.0 if no query has any).

    Args:
      ranks: ``[num_queries, num_database]`` database indices best first. revisitop's own ``ranks``
        are the transpose, ``[num_database, num_queries]``: pass ``ranks.T``.
      gnd: one dict per query with index lists ``"easy"``, ``"hard"``, ``"junk"``.
      kappas: the ``k`` of mP@k.

    Returns:
      ``{"easy": {"mAP": f, "mP@1": f, ...}, "medium": {...}, "hard": {...}}``, fractions in [0, 1].

    Example:

      >>> result = revisited_map([[3, 0, 2, 1]], [{"easy": [0], "hard": [1], "junk": [2]}], kappas=(1,))
      >>> result["easy"], round(result["medium"]["mAP"], 4), result["hard"]["mAP"]
      ({'mAP': 0.25, 'mP@1': 0.0}, 0.4167, 0.25)

    References:
      Radenovic et al., "Revisiting Oxford and Paris: Large-Scale Image Retrieval Benchmarking", CVPR 2018.
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 2 or not np.issubdtype(ranks.dtype, np.integer) or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty integer [num_queries, num_database] array, got {ranks.dtype} {ranks.shape}")
    if len(gnd) != ranks.shape[0]:
        raise ValueError(f"gnd has {len(gnd)} entries but ranks {ranks.shape} has {ranks.shape[0]} queries (revisitop ranks need .T)")
    kappas = [_positive_int("kappas", kappa) for kappa in kappas]
    for query, entry in enumerate(gnd):
        missing = {"easy", "hard", "junk"} - set(entry)
        if missing:
            raise ValueError(f"gnd[{query}] lacks {sorted(missing)}")
    results = {}
    for protocol, (positive_groups, junk_groups) in _REVISITED_PROTOCOLS.items():
        average_precisions, precisions = [], []
        for ranking, entry in zip(ranks, gnd):
            positives = np.concatenate([np.asarray(entry[group], dtype=np.int64) for group in positive_groups])
            if positives.size == 0:
                continue
            junk = np.concatenate([np.asarray(entry[group], dtype=np.int64) for group in junk_groups])
            kept = ranking[~np.isin(ranking, junk)]
            positive_ranks = np.flatnonzero(np.isin(kept, positives))
            average_precisions.append(trapezoid_average_precision(positive_ranks, positives.size))
            last = positive_ranks[-1] + 1 if positive_ranks.size else 0
            precisions.append(
                [np.count_nonzero(positive_ranks < min(kappa, last)) / max(min(kappa, last), 1) for kappa in kappas]
            )
        summary = {"mAP": float(np.mean(average_precisions)) if average_precisions else 0.0}
        for column, kappa in enumerate(kappas):
            summary[f"mP@{kappa}"] = float(np.mean([row[column] for row in precisions])) if precisions else 0.0
        results[protocol] = summary
    return results
