"""Metrics of an explicit ranking (PQ search, real-valued descriptors, ...): mAP@k, P@k and R@k."""
from __future__ import annotations

import numpy as np

from jaxretrieval.metrics import _common


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
    query_masks = _common.label_words("query_labels", query_labels, indices.shape[0])
    db_masks = _common.label_words("db_labels", db_array, db_array.shape[0], np.shape(query_labels)[1])
    if indices.min() < -1 or indices.max() >= db_masks.shape[0]:
        raise ValueError(
            f"ranked_indices must lie in [-1, {db_masks.shape[0]}) for db_labels {db_array.shape}, "
            f"got values in [{indices.min()}, {indices.max()}]"
        )
    if top_k is not None:
        top_k = _common.positive_int("top_k", top_k)
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
        ranking) instead of by the relevant items found in the ranking (DeepHash's AP@k). Each
        must be a whole number at least the relevant items found in that query's ranking (else AP
        could exceed 1): a ``ValueError`` names the first query where it is not.

    Returns:
      mAP as a Python float.

    Example:

      >>> ranked_mean_average_precision([[2, 1, 0]], [[1, 0]], [[1, 0], [0, 1], [1, 0]])  # (1/1 + 2/3) / 2
      0.8333333333333333
    """
    indices, query_masks, db_masks = _ranking_and_labels(ranked_indices, query_labels, db_labels, top_k)
    relevant = _common.ranked_relevance(query_masks, db_masks, indices)
    normaliser = None
    if num_relevant is not None:
        normaliser = _common.as_array("num_relevant", num_relevant)
        if normaliser.shape != (indices.shape[0],):
            raise ValueError(f"num_relevant must have shape ({indices.shape[0]},), got {normaliser.shape}")
        if (normaliser < 0).any() or (normaliser != np.round(normaliser)).any():
            raise ValueError(f"num_relevant must hold whole numbers >= 0, got {normaliser[:10].tolist()}")
        found = relevant.sum(axis=1)
        short = np.flatnonzero(normaliser < found)
        if short.size:
            query = int(short[0])
            raise ValueError(
                f"num_relevant[{query}]={normaliser[query].item()!r} is below the {int(found[query])} relevant items query "
                f"{query} has in its ranking: it must count the relevant items of the whole database (>= those found)"
            )
    return float(_common.average_precision(relevant, normaliser).mean())


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
    indices, query_masks, db_masks = _ranking_and_labels(ranked_indices, query_labels, db_labels, _common.positive_int("k", k))
    return float(_common.ranked_relevance(query_masks, db_masks, indices).sum(axis=1).mean() / indices.shape[1])


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
    indices, query_masks, db_masks = _ranking_and_labels(ranked_indices, query_labels, db_labels, _common.positive_int("k", k))
    found = _common.ranked_relevance(query_masks, db_masks, indices).sum(axis=1)
    total = _common.num_relevant(query_masks, db_masks)
    return float(np.where(total > 0, found / np.maximum(total, 1), 0.0).mean())



def ranked_precision_recall(ranked_indices, query_labels, db_labels, *, cutoffs) -> tuple[np.ndarray, np.ndarray]:
    """Mean precision@k and recall@k of an explicit ranking for every ``k`` in ``cutoffs``.

    The same values as :func:`precision_at_k` and :func:`recall_at_k` at each cut-off (a query with
    no relevant item in the database has recall 0 and still counts), from one pass over the ranking:
    a precision-recall curve of a PQ or float ranking.

    Args:
      ranked_indices: ``[num_queries, depth]`` database indices best first (-1 = padding).
      query_labels: ``[num_queries, num_classes]`` multi-hot or one-hot labels.
      db_labels: ``[num_database, num_classes]``: the whole database (recall's denominator).
      cutoffs: ``[c]`` cut-offs ``1 <= k <= depth``.

    Returns:
      ``(precision, recall)``: two ``[c]`` float64 arrays.

    Example:

      >>> precision, recall = ranked_precision_recall([[2, 1, 0]], [[1, 0]], [[1, 0], [0, 1], [1, 0]], cutoffs=[1, 2, 3])
      >>> precision.round(3).tolist(), recall.tolist()
      ([1.0, 0.5, 0.667], [0.5, 0.5, 1.0])
    """
    cutoffs = np.asarray([_common.positive_int("cutoffs", int(cutoff)) for cutoff in np.ravel(cutoffs)], np.int64)
    if cutoffs.size == 0:
        raise ValueError("cutoffs is empty")
    indices, query_masks, db_masks = _ranking_and_labels(ranked_indices, query_labels, db_labels, int(cutoffs.max()))
    found = np.cumsum(_common.ranked_relevance(query_masks, db_masks, indices), axis=1)[:, cutoffs - 1]
    total = _common.num_relevant(query_masks, db_masks)[:, None]
    precision = (found / cutoffs).mean(axis=0)
    recall = np.where(total > 0, found / np.maximum(total, 1), 0.0).mean(axis=0)
    return precision, recall
