"""A run's evaluation: encode the queries and the database, score the method's indexes, write ``eval/``.

The trainer calls :func:`evaluate_run` at the end of training and ``python -m jaxretrieval.evaluate``
calls it on a restored model; nothing here knows how the model was trained.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from jaxretrieval import sharding
from jaxretrieval.data import RetrievalData
from jaxretrieval.evaluation import plots
from jaxretrieval.evaluation.encoder import Encoded, Encoder
from jaxretrieval.evaluation.grid import retrieval_grid
from jaxretrieval.evaluation.scoring import Evaluation, EvaluationSettings, score_index
from jaxretrieval.methods import Method, SearchIndex
from jaxretrieval.run_directory import RunDirectory

__all__ = ["MethodEvaluation", "evaluate_encoded", "evaluate_run", "host_model"]


@dataclasses.dataclass(frozen=True)
class MethodEvaluation:
    """Every index of a method scored: all metrics, the primary index's top results, every PR curve."""

    metrics: dict[str, float]
    top_indices: np.ndarray
    pr_curves: dict[str, tuple[np.ndarray, np.ndarray]]
    by_prefix: dict[str, Evaluation]


def host_model(model: nnx.Module) -> nnx.Module:
    """A copy of ``model`` with host numpy arrays (what the indexes read, e.g. PQ codebooks)."""
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, sharding.to_host(state))


def describe_index(index: SearchIndex) -> str:
    """A short label of an index for plots: ``"64 bits"``, ``"8x256 PQ"``, ``"inner product"``."""
    if index.kind == "hamming":
        return f"{index.num_bits} bits"
    if index.kind == "pq":
        return f"{index.codebooks.shape[0]}x{index.codebooks.shape[1]} PQ"
    return index.metric.replace("_", " ")


def evaluate_encoded(method: Method, model: nnx.Module, query: Encoded, database: Encoded,
                     settings: EvaluationSettings) -> MethodEvaluation:
    """Scores every index of :meth:`~jaxretrieval.methods.Method.evaluation_indexes` (host ``model``)."""
    by_prefix, curves = {}, {}
    for prefix, index in method.evaluation_indexes(model).items():
        label = f"{method.name} {describe_index(index)}"
        by_prefix[prefix] = score_index(
            index, query.representations, database.representations, query.labels, database.labels, settings,
            prefix=prefix,
        )
        curves[label] = by_prefix[prefix].pr_curve
    merged = {name: value for evaluation in by_prefix.values() for name, value in evaluation.metrics.items()}
    return MethodEvaluation(merged, by_prefix[""].top_indices, curves, by_prefix)


def evaluate_run(method: Method, model: nnx.Module, data: RetrievalData, *, mesh: jax.sharding.Mesh,
                 settings: EvaluationSettings, step: int, run: RunDirectory) -> dict[str, float]:
    """Encodes, ranks and scores the queries against the database; writes ``run``'s ``eval/``.

    Args:
      method: the run's method.
      model: the model in eval mode, its arrays replicated on ``mesh``.
      data: the run's protocol (query and database subsets).
      mesh: the device mesh.
      settings: what to measure (``config.eval``).
      step: the training step the model is from (recorded in the report).
      run: where ``eval/metrics.json``, ``eval/pr_curve.png`` and ``eval/retrieval_grid.png`` go.

    Returns the metrics (also printed). Only process 0 writes files.
    """
    encoder = Encoder(method, model, mesh, batch_size=settings.batch_size)
    query = encoder.encode(data.query)
    database = encoder.encode(data.database)
    evaluation = evaluate_encoded(method, host_model(model), query, database, settings)
    report = {
        "step": int(step),
        "method": method.name,
        "num_queries": len(query.indices),
        "num_database": len(database.indices),
        "metrics": evaluation.metrics,
    }
    if sharding.is_main_process():
        run.write_eval_report(report)
        plots.plot_precision_recall(evaluation.pr_curves, run.pr_curve_file)
        grid = retrieval_grid(
            query, database, evaluation.top_indices, data.query.source, data.database.source,
            num_queries=settings.grid_queries, num_results=settings.grid_results,
        )
        titles = [
            "+".join(data.class_names[c] for c in np.flatnonzero(query.labels[row] > 0)) or "(no label)"
            for row in grid.rows
        ]
        plots.plot_retrieval_grid(grid.query_images, grid.result_images, grid.correct, run.retrieval_grid_file,
                                  titles=titles)
        summary = "  ".join(f"{name} {value:.4f}" for name, value in evaluation.metrics.items())
        print(f"evaluation at step {report['step']} ({report['num_queries']} queries, "
              f"{report['num_database']} database): {summary}", flush=True)
    return evaluation.metrics
