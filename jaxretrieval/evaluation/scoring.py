"""Scores a method's retrieval: representations in, the metrics of each of its indexes out.

The index is the method's retrieval rule (:meth:`jaxretrieval.methods.Method.evaluation_indexes`);
what is measured depends only on the kind of index:

- Hamming codes: mAP@k (``top_k``; 0 = whole database) and mAP over the whole database
  (``map_all``), tie-aware mAP (He et al.), precision@k, precision within Hamming radius
  ``radius``, and the precision-recall curve over radii (:mod:`jaxretrieval.metrics`);
- PQ codes and float vectors: the ranking :meth:`search` returns, to the depth the metrics need,
  scored by mAP@k and precision@k, and a precision-recall curve over 50 cut-offs.

Rankings go query chunk by query chunk, so memory stays bounded whatever the depth.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxretrieval import index as index_lib
from jaxretrieval import metrics

__all__ = ["Evaluation", "EvaluationSettings", "score_index"]

# Ranked entries (query x depth) scored at once.
_CHUNK_ENTRIES = 1 << 24
_CURVE_POINTS = 50


@dataclasses.dataclass(frozen=True)
class EvaluationSettings:
    """``config.eval`` (and ``config.eval_batch_size``): what the evaluation measures and draws.

    Attributes:
      top_k: mAP@k cut-off; 0 (or at least the database size) = the whole database.
      map_all: also report mAP over the whole database when ``top_k`` cuts it (Hamming codes).
      tie_aware: also report He et al.'s tie-aware mAP@k (Hamming codes).
      precision_at: the ``k`` of precision@k (capped at the database size).
      radius: the Hamming radius of "precision within radius".
      grid_queries, grid_results: the retrieval grid's rows and columns.
      batch_size: images encoded per global batch.
    """

    top_k: int = 0
    map_all: bool = True
    tie_aware: bool = True
    precision_at: int = 100
    radius: int = 2
    grid_queries: int = 8
    grid_results: int = 10
    batch_size: int = 256

    @classmethod
    def from_config(cls, config) -> EvaluationSettings:
        return cls(**{key: config.eval[key] for key in config.eval}, batch_size=int(config.eval_batch_size))

    def cut_off(self, database_size: int) -> int | None:
        """The mAP cut-off for this database: ``None`` = the whole database."""
        top_k = int(self.top_k)
        return None if top_k <= 0 or top_k >= database_size else top_k


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The scores of one index.

    Attributes:
      metrics: name -> float (mAP@k, precision@k, ...), prefixed as the index's entry asks.
      top_indices: ``[num_queries, grid_results]`` database rows best first (``-1`` = none).
      pr_curve: ``(recall, precision)`` arrays of equal length.
    """

    metrics: dict[str, float]
    top_indices: np.ndarray
    pr_curve: tuple[np.ndarray, np.ndarray]


def _map_name(top_k: int | None) -> str:
    return "mAP" if top_k is None else f"mAP@{top_k}"


def _hamming_scores(index, query, database, query_labels, database_labels, settings):
    database_size = len(database)
    top_k = settings.cut_off(database_size)
    codes_and_labels = (query, database, query_labels, database_labels)
    results = {_map_name(top_k): metrics.mean_average_precision(*codes_and_labels, top_k=top_k)}
    if settings.map_all and top_k is not None:
        results["mAP"] = metrics.mean_average_precision(*codes_and_labels)
    if settings.tie_aware:
        results["tie_aware_" + _map_name(top_k)] = metrics.mean_average_precision(
            *codes_and_labels, top_k=top_k, tie_aware=True
        )
    precision_at = min(int(settings.precision_at), database_size)
    depth = max(precision_at, min(int(settings.grid_results), database_size))
    _, ranked = index.search(query, depth)
    results[f"precision@{precision_at}"] = metrics.precision_at_k(ranked, query_labels, database_labels, k=precision_at)
    radius = int(settings.radius)
    results[f"precision_within_radius_{radius}"] = metrics.precision_within_radius(*codes_and_labels, radius=radius)
    precision, recall = metrics.precision_recall_curve(*codes_and_labels)
    return results, ranked[:, : int(settings.grid_results)], (recall, precision)


def _ranked_scores(index, query, database, query_labels, database_labels, settings):
    """mAP@k, precision@k and a PR curve of the index's rankings, query chunk by query chunk."""
    database_size = len(database)
    top_k = settings.cut_off(database_size)
    precision_at = min(int(settings.precision_at), database_size)
    depth = min(max(top_k or database_size, precision_at, int(settings.grid_results)), database_size)
    cutoffs = np.unique(np.linspace(1, depth, _CURVE_POINTS).round().astype(int))
    rows_per_chunk = max(1, _CHUNK_ENTRIES // depth)
    sums = {"map": 0.0, "precision": 0.0, "curve": np.zeros((2, len(cutoffs)))}
    top_indices = []
    for start in range(0, len(query), rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        _, ranked = index.search(query[rows], depth)
        labels, count = query_labels[rows], len(ranked)
        # Each query's scores depend on its own ranking only: chunk means weighted by their size average exactly.
        sums["map"] += count * metrics.ranked_mean_average_precision(ranked, labels, database_labels, top_k=top_k)
        precision, recall = metrics.ranked_precision_recall(
            ranked, labels, database_labels, cutoffs=np.append(cutoffs, precision_at)
        )
        sums["precision"] += count * precision[-1]
        sums["curve"] += count * np.stack([recall[:-1], precision[:-1]])
        top_indices.append(ranked[:, : int(settings.grid_results)])
    num_queries = len(query)
    results = {_map_name(top_k): sums["map"] / num_queries, f"precision@{precision_at}": sums["precision"] / num_queries}
    curve = (sums["curve"][0] / num_queries, sums["curve"][1] / num_queries)
    return results, np.concatenate(top_indices), curve


def score_index(index: index_lib.HammingIndex | index_lib.PQIndex | index_lib.FlatIndex, query: np.ndarray,
                database: np.ndarray, query_labels: np.ndarray, database_labels: np.ndarray,
                settings: EvaluationSettings, *, prefix: str = "") -> Evaluation:
    """Adds ``database`` to the (empty) ``index``, ranks ``query`` with it and scores the rankings.

    Args:
      index: an empty index of the method's kind (its retrieval rule).
      query, database: ``[num_queries, D]`` / ``[num_database, D]`` representations as the method's
        ``encode`` returns them.
      query_labels, database_labels: multi-hot ``[n, num_classes]``.
      settings: what to measure.
      prefix: prepended to every metric name (``"binary_"``).
    """
    if len(index):
        raise ValueError(f"score_index takes an empty index, got one holding {len(index)} items")
    index.add(database)
    score = _hamming_scores if isinstance(index, index_lib.HammingIndex) else _ranked_scores
    results, top_indices, curve = score(index, query, database, query_labels, database_labels, settings)
    return Evaluation({prefix + name: float(value) for name, value in results.items()}, top_indices, curve)
