"""The retrieval grid: a spread of queries with the images of their top results, marked right or wrong."""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxretrieval.evaluation.encoder import Encoded

__all__ = ["GridImages", "retrieval_grid"]


@dataclasses.dataclass(frozen=True)
class GridImages:
    """What :func:`jaxretrieval.evaluation.plots.plot_retrieval_grid` draws.

    Attributes:
      query_images: ``[rows, H, W, C]`` uint8.
      result_images: ``[rows, results, H, W, C]`` uint8 (black where a query has fewer results).
      correct: ``[rows, results]`` bool: the result shares a label with the query.
      rows: ``[rows]`` the chosen queries' positions in the query list.
    """

    query_images: np.ndarray
    result_images: np.ndarray
    correct: np.ndarray
    rows: np.ndarray


def retrieval_grid(query: Encoded, database: Encoded, top_indices: np.ndarray, query_source, database_source, *,
                   num_queries: int, num_results: int) -> GridImages:
    """``num_queries`` queries spread evenly over the query list, each with its first ``num_results``.

    ``top_indices`` are database rows best first (``-1`` = none); the images are read from the
    sources by each row's ``indices``.
    """
    num_queries = min(int(num_queries), len(query.indices))
    rows = np.linspace(0, len(query.indices) - 1, num_queries).round().astype(int)
    top = np.asarray(top_indices)[rows, :num_results]
    query_images = np.stack([query_source[int(query.indices[row])]["image"] for row in rows])
    blank = np.zeros_like(query_images[0])
    result_images = np.stack([
        np.stack([database_source[int(database.indices[item])]["image"] if item >= 0 else blank for item in row])
        for row in top
    ])
    shared_label = (query.labels[rows][:, None, :] * database.labels[np.maximum(top, 0)]).sum(-1) > 0
    return GridImages(query_images, result_images, shared_label & (top >= 0), rows)
