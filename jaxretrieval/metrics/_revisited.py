"""The Revisited Oxford / Paris protocol (Radenovic et al., CVPR 2018): trapezoid AP, mAP and mP@k."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxretrieval.metrics import _common


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
    num_positives = _common.positive_int("num_positives", num_positives)
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
    kappas = [_common.positive_int("kappas", kappa) for kappa in kappas]
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
