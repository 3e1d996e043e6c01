"""Retrieval metrics: mAP@k over Hamming rankings (exact and tie-aware), P@k, R@k, precision-recall
curves, precision within a Hamming radius, and the Revisited Oxford/Paris protocol.

Conventions (those of the hashing literature's DeepHash-pytorch ``CalcTopMap``, with a fixed tie order):

* Codes are +-1 (or real, binarised at 0: ``>= 0`` gives +1; :mod:`jaxretrieval.codes`)
  ``[n, num_bits]`` arrays. The database is ranked by Hamming distance (ascending), ties by ascending
  database index: exactly a stable sort by ``(distance, index)``, the order faiss
  ``IndexBinaryFlat`` returns.
* Labels are multi-hot (or one-hot) ``[n, num_classes]``; an item is relevant to a query when they
  share at least one label (entries ``> 0``).
* ``AP@k`` is the mean, over the relevant items found in the top ``k``, of (rank among the relevant
  items / position). A query with no relevant item in its top ``k`` scores 0 and still counts.
  ``top_k=None`` ranks the whole database (no DeepHash off-by-one that drops the last item).

Metrics over an explicit ranking (``ranked_indices [num_queries, k]``, database indices best first,
``-1`` = padding, as ``jaxretrieval.search.hamming_knn`` / ``pq_knn`` / ``inner_product_knn`` return)
serve product quantization and real-valued descriptors; ``hamming_ranking`` produces such a ranking
from codes.

The metrics never rank by themselves: Hamming rankings and distances come from
:mod:`jaxretrieval.search` (the one ranking engine; a deep ranking there sorts unique
``distance << shift | index`` keys, so mAP over the whole database costs one sort per query), and
the query chunks run on its thread pool. Tie-aware AP, precision within a radius and
precision-recall curves need only per-query histograms of the distances of all and of relevant items
(no sorting at all).

All functions return Python floats or numpy arrays and never NaN.
"""
from jaxretrieval.metrics._hamming import (
    hamming_ranking,
    mean_average_precision,
    precision_recall_curve,
    precision_within_radius,
)
from jaxretrieval.metrics._ranked import (
    precision_at_k,
    ranked_mean_average_precision,
    ranked_precision_recall,
    recall_at_k,
)
from jaxretrieval.metrics._revisited import revisited_map, trapezoid_average_precision

__all__ = [
    "hamming_ranking",
    "mean_average_precision",
    "precision_at_k",
    "precision_recall_curve",
    "precision_within_radius",
    "ranked_mean_average_precision",
    "ranked_precision_recall",
    "recall_at_k",
    "revisited_map",
    "trapezoid_average_precision",
]
