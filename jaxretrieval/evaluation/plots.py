"""Figures for evaluation and benchmarks (matplotlib's Agg canvas, no pyplot), written as PNG.

- ``plot_precision_recall``: one precision-recall curve per method or code length.
- ``plot_retrieval_grid``: each query in the first column, its top results beside it, framed green
  (relevant) or red (not relevant).
- ``plot_series``: y against x for several named series (benchmark curves), optionally log-scaled x.

Each function writes ``path`` (creating its folder) and returns it as a ``pathlib.Path``; nothing is
shown and no global matplotlib state changes.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_CORRECT_COLOR = "#1a9850"
_WRONG_COLOR = "#d73027"


def _figure(**kwargs):
    """A figure drawn by the Agg canvas, without pyplot: no display, no global backend switch, and
    nothing to close (it is freed with its last reference)."""
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_precision_recall(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path) -> pathlib.Path:
    """Precision against recall, one line per ``curves[name] = (recall, precision)`` (equal lengths)."""
    if not curves:
        raise ValueError("plot_precision_recall: curves is empty")
    figure = _figure(figsize=(5, 4))
    axes = figure.subplots()
    for name, (recall, precision) in curves.items():
        recall, precision = np.asarray(recall, float).ravel(), np.asarray(precision, float).ravel()
        if recall.shape != precision.shape:
            raise ValueError(f"plot_precision_recall: curve {name!r} has recall {recall.shape} and precision {precision.shape}")
        axes.plot(recall, precision, marker=".", label=str(name))
    axes.set(xlabel="recall", ylabel="precision", xlim=(0.0, 1.0), ylim=(0.0, 1.02), title="precision-recall")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _displayable(images: np.ndarray) -> np.ndarray:
    """uint8 or float in [0, 1] ``[..., H, W, C]`` -> float [0, 1] with 3 channels for imshow."""
    images = np.asarray(images)
    if np.issubdtype(images.dtype, np.integer):
        images = images.astype(np.float32) / 255.0
    images = np.clip(images.astype(np.float32), 0.0, 1.0)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def plot_retrieval_grid(query_images, result_images, correct, path, *, titles: Sequence[str] | None = None) -> pathlib.Path:
    """Queries with their top results: row ``i`` is query ``i`` then its ``k`` results in rank order.

    Args:
      query_images: ``[num_queries, H, W, C]`` uint8 (0..255) or float in [0, 1]; C is 1 or 3.
      result_images: ``[num_queries, k, H, W, C]``, the retrieved images best first.
      correct: ``[num_queries, k]`` bool, whether each result is relevant (green frame) or not (red).
      path: the PNG to write.
      titles: optional ``num_queries`` labels shown above the query images (e.g. the class names);
        by default each query is titled "query".
    """
    query_images, result_images = _displayable(query_images), _displayable(result_images)
    correct = np.asarray(correct, bool)
    if query_images.ndim != 4 or result_images.ndim != 5:
        raise ValueError(
            "plot_retrieval_grid: query_images must be [num_queries, H, W, C] and result_images "
            f"[num_queries, k, H, W, C], got {query_images.shape} and {result_images.shape}"
        )
    num_queries, num_results = result_images.shape[:2]
    if query_images.shape[0] != num_queries or correct.shape != (num_queries, num_results):
        raise ValueError(
            f"plot_retrieval_grid: {query_images.shape[0]} queries, result_images {result_images.shape[:2]} and "
            f"correct {correct.shape} must agree on [num_queries, k]"
        )
    if titles is not None and len(titles) != num_queries:
        raise ValueError(f"plot_retrieval_grid: {len(titles)} titles for {num_queries} queries")
    figure = _figure(figsize=(1.2 * (num_results + 1), 1.2 * num_queries))
    axes = figure.subplots(num_queries, num_results + 1, squeeze=False)
    for row in range(num_queries):
        axes[row, 0].imshow(query_images[row], interpolation="nearest")
        axes[row, 0].set_title("query" if titles is None else str(titles[row]), fontsize=7)
        for column in range(num_results):
            axis = axes[row, column + 1]
            axis.imshow(result_images[row, column], interpolation="nearest")
            for spine in axis.spines.values():
                spine.set(color=_CORRECT_COLOR if correct[row, column] else _WRONG_COLOR, linewidth=3)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    return _save(figure, path)


def plot_series(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    path,
    *,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
) -> pathlib.Path:
    """One line per ``series[name]`` (same length as ``x``) against ``x``; ``logx`` for a log x-axis."""
    x = np.asarray(x, float).ravel()
    if not series:
        raise ValueError("plot_series: series is empty")
    figure = _figure(figsize=(5, 4))
    axes = figure.subplots()
    for name, values in series.items():
        values = np.asarray(values, float).ravel()
        if values.shape != x.shape:
            raise ValueError(f"plot_series: series {name!r} has {values.shape[0]} values for {x.shape[0]} x values")
        axes.plot(x, values, marker="o", label=str(name))
    if logx:
        axes.set_xscale("log")
    axes.set(xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)
