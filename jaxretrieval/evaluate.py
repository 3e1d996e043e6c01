"""``python -m jaxretrieval.evaluate --workdir DIR``: re-evaluates the latest checkpoint of a run.

Encodes the run's queries and database (the splits in ``<workdir>/splits.json``), ranks with the
method's retrieval rule (see :mod:`jaxretrieval.methods`) and writes

- ``<workdir>/eval/metrics.json``: mAP@k (``config.eval.top_k``; 0 = whole database), mAP over the whole
  database, tie-aware mAP, precision@k and precision within Hamming radius 2 (hash codes), plus the
  step and the query / database sizes;
- ``<workdir>/eval/pr_curve.png``: the precision-recall curve;
- ``<workdir>/eval/retrieval_grid.png``: queries with their top results, correct ones framed green.

The training run calls :func:`evaluate_run` at its end with the same outputs.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from absl import app, flags
from absl import logging as absl_logging
from flax import nnx

from jaxretrieval import data as data_lib
from jaxretrieval import methods as methods_lib
from jaxretrieval import plots
from jaxretrieval import sharding

__all__ = ["EVAL_SUBDIR", "Encoded", "Encoder", "evaluate_run", "main"]

EVAL_SUBDIR = "eval"


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Representations of a subset, host numpy, rows in the subset's order (unreadable images left out).

    Attributes:
      representations: ``[num_examples, D]`` float32 (hash logits, PQ descriptors, AP descriptors).
      labels: ``[num_examples, num_classes]`` float32 multi-hot.
      indices: ``[num_examples]`` int64 indices into the subset's source (to fetch images).
    """

    representations: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


def _to_host(array: jax.Array) -> np.ndarray:
    if array.is_fully_addressable:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


class Encoder:
    """Encodes images with an eval-mode model under one jitted function per batch shape."""

    def __init__(self, config: ml_collections.ConfigDict, method: methods_lib.Method, eval_graphdef, mesh):
        self.config = config
        self.mesh = mesh

        def encode(params, model_state, images):
            model = nnx.merge(eval_graphdef, params, model_state)
            return method.encode(model, methods_lib.model_input(images, config))

        self._encode = jax.jit(encode)

    def encode(self, state, subset: data_lib.Subset) -> Encoded:
        """All examples of ``subset`` (every process gets the whole result)."""
        outputs, labels, indices, masks = [], [], [], []
        with jax.set_mesh(self.mesh):
            for local in data_lib.eval_batches(subset, global_batch_size=self.config.eval_batch_size):
                batch = sharding.global_batch(local, self.mesh)
                outputs.append(_to_host(self._encode(state.params, state.model_state, batch["image"])))
                labels.append(_to_host(batch["label"]))
                indices.append(_to_host(batch["index"]))
                masks.append(_to_host(batch["mask"]))
        mask = np.concatenate(masks).astype(bool)
        return Encoded(
            representations=np.concatenate(outputs)[mask].astype(np.float32),
            labels=np.concatenate(labels)[mask],
            indices=np.concatenate(indices)[mask],
        )

    def encode_images(self, state, images: np.ndarray) -> np.ndarray:
        """``images`` uint8 ``[N, H, W, C]`` -> ``[N, D]`` representations (padded to whole batches)."""
        batch_size = self.config.eval_batch_size
        outputs = []
        with jax.set_mesh(self.mesh):
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                padded = np.zeros((batch_size, *images.shape[1:]), np.uint8)
                padded[: len(chunk)] = chunk
                batch = sharding.global_batch({"image": padded}, self.mesh)
                encoded = _to_host(self._encode(state.params, state.model_state, batch["image"]))
                outputs.append(encoded[: len(chunk)])
        return np.concatenate(outputs).astype(np.float32)


def _grid(config, evaluation, query: Encoded, database: Encoded, query_source, database_source):
    """Images of a spread of queries (evenly over the query list) and their top results."""
    num_queries = min(int(config.eval.grid_queries), len(query.indices))
    rows = np.linspace(0, len(query.indices) - 1, num_queries).round().astype(int)
    top = evaluation.top_indices[rows]
    query_images = np.stack([query_source[int(query.indices[row])]["image"] for row in rows])
    blank = np.zeros_like(query_images[0])
    result_images = np.stack(
        [
            np.stack([database_source[int(database.indices[j])]["image"] if j >= 0 else blank for j in row])
            for row in top
        ]
    )
    shared_label = (query.labels[rows][:, None, :] * database.labels[np.maximum(top, 0)]).sum(-1) > 0
    correct = shared_label & (top >= 0)
    return query_images, result_images, correct, rows


def evaluate_run(config, method, eval_graphdef, state, data, mesh, workdir) -> dict[str, float]:
    """Encodes, ranks and scores the queries against the database; writes ``<workdir>/eval/``.

    Returns the metrics dict (also printed). Only process 0 writes files.
    """
    encoder = Encoder(config, method, eval_graphdef, mesh)
    query = encoder.encode(state, data.query)
    database = encoder.encode(state, data.database)
    from jaxretrieval.trainer import replicated_to_host  # The trainer imports this module.

    model = nnx.merge(eval_graphdef, *replicated_to_host((state.params, state.model_state)))
    evaluation = method.evaluate(
        query.representations,
        database.representations,
        query.labels,
        database.labels,
        model,
        replicated_to_host(state.extras),
        config,
    )
    metrics = {name: float(value) for name, value in evaluation.metrics.items()}
    report = {
        "step": int(replicated_to_host(state.step)),
        "method": config.method,
        "num_queries": len(query.indices),
        "num_database": len(database.indices),
        "metrics": metrics,
    }
    if sharding.is_main_process():
        out_dir = pathlib.Path(workdir) / EVAL_SUBDIR
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
        plots.plot_precision_recall(evaluation.pr_curves, out_dir / "pr_curve.png")
        query_images, result_images, correct, rows = _grid(
            config, evaluation, query, database, data.query.source, data.database.source
        )
        titles = [
            "+".join(data.class_names[c] for c in np.flatnonzero(query.labels[row] > 0)) or "(no label)"
            for row in rows
        ]
        plots.plot_retrieval_grid(
            query_images, result_images, correct, out_dir / "retrieval_grid.png", titles=titles
        )
        summary = "  ".join(f"{name} {value:.4f}" for name, value in metrics.items())
        print(f"evaluation at step {report['step']} ({report['num_queries']} queries, "
              f"{report['num_database']} database): {summary}", flush=True)
    return metrics


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every restore step at INFO.
    from jaxretrieval import trainer

    workdir = flags.FLAGS.workdir
    trained = trainer.restore_trained_model(workdir)
    data = data_lib.build_retrieval_data(trained.config.data, workdir=workdir)
    evaluate_run(trained.config, trained.method, trained.eval_graphdef, trained.state, data, trained.mesh, workdir)


if __name__ == "__main__":
    # Flags are defined only when run as a program: the trainer imports this module.
    flags.DEFINE_string("workdir", None, "Workdir of a training run (holds config.json and checkpoints/).")
    flags.mark_flag_as_required("workdir")
    app.run(main)
