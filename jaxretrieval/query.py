"""``python -m jaxretrieval.query --workdir DIR --index index.npz --images QUERY [--k 10] [--grid out.png]``.

Encodes one query image (or every image of a folder) with the run's model, searches the index written
by ``python -m jaxretrieval.encode`` and prints, per query, its ``k`` nearest database images with
their distances (Hamming distances or PQ distances: ascending, smaller = closer). ``--grid`` draws the
queries and their results; a result is framed green when it lies in a folder of the same name as
the query's folder (the image-folder convention ``<class>/<file>``), red otherwise.
"""
from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np
from absl import app, flags
from absl import logging as absl_logging

from jaxretrieval import encode

__all__ = ["main", "nearest"]


def nearest(trained, index, query_representations: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, ids)`` ``[num_queries, k]`` ascending; ids ``-1`` when the index has fewer items."""
    distances, ids = index.search(encode.query_vectors(trained, query_representations), k)
    return np.asarray(distances), np.asarray(ids)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every restore step at INFO.
    from jaxretrieval import evaluate, plots, trainer

    if flags.FLAGS.k < 1:
        raise app.UsageError(f"--k must be >= 1, got {flags.FLAGS.k}")
    workdir = pathlib.Path(flags.FLAGS.workdir)
    trained = trainer.restore_trained_model(workdir)
    summary = json.loads((workdir / trainer.SUMMARY_FILENAME).read_text())
    index, database_paths, _ = encode.load_index(flags.FLAGS.index)
    queries = encode.load_images(flags.FLAGS.images, summary["image_shape"])
    encoder = evaluate.Encoder(trained.config, trained.method, trained.eval_graphdef, trained.mesh)
    representations = encoder.encode_images(trained.state, queries.images)
    distances, ids = nearest(trained, index, representations, flags.FLAGS.k)
    for path, reason in queries.skipped:
        print(f"skipped {path}: {reason}")
    for query_path, row_distances, row_ids in zip(queries.paths, distances, ids):
        print(f"query {query_path}")
        for rank, (distance, item) in enumerate(zip(row_distances, row_ids), start=1):
            if item >= 0:
                print(f"  {rank:3d}. {database_paths[item]}  distance {float(distance):.4g}")
    if flags.FLAGS.grid:
        shown = sorted({int(item) for item in ids.ravel() if item >= 0})
        loaded = encode.load_image_files([database_paths[item] for item in shown], summary["image_shape"])
        by_path = dict(zip(loaded.paths, loaded.images))
        blank = np.zeros_like(queries.images[0])
        results = np.stack(
            [np.stack([by_path.get(database_paths[item], blank) if item >= 0 else blank for item in row]) for row in ids]
        )
        query_folders = [pathlib.Path(path).parent.name for path in queries.paths]
        correct = np.array(
            [
                [item >= 0 and pathlib.Path(database_paths[item]).parent.name == folder for item in row]
                for folder, row in zip(query_folders, ids)
            ]
        )
        plots.plot_retrieval_grid(queries.images, results, correct, flags.FLAGS.grid, titles=query_folders)
        print(f"grid written to {flags.FLAGS.grid}")


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Workdir of the training run that encoded the index.")
    flags.DEFINE_string("index", None, "Index file written by python -m jaxretrieval.encode.")
    flags.DEFINE_string("images", None, "A query image file or a folder of query images.")
    flags.DEFINE_integer("k", 10, "Number of nearest database images per query.")
    flags.DEFINE_string("grid", None, "Optional PNG of the queries and their results.")
    flags.mark_flags_as_required(["workdir", "index", "images"])
    app.run(main)
