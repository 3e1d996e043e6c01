"""``python -m jaxretrieval.query --workdir DIR --index index.npz --images QUERY [--k 10] [--grid out.png]``.

Encodes one query image (or every image of a folder) with the run's model, searches the index written
by ``python -m jaxretrieval.encode`` and prints, per query, its ``k`` nearest database images with
their scores: Hamming or PQ distances (ascending, smaller = closer) or similarities (descending,
larger = closer), as the index's kind ranks. ``--grid`` draws the queries and their results; a result
is framed green when it lies in a folder of the same name as the query's folder (the image-folder
convention ``<class>/<file>``), red otherwise.
"""
from __future__ import annotations

import pathlib

import numpy as np
from absl import flags

from jaxretrieval import command_line
from jaxretrieval import data as data_lib
from jaxretrieval.evaluation import Encoder, load_image_index, plots
from jaxretrieval.training.restore import restore_trained_model

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when run, so that importing the module defines none)."""
    flags.DEFINE_string("workdir", None, "Run directory of the training run that encoded the index.")
    flags.DEFINE_string("index", None, "Index file written by python -m jaxretrieval.encode.")
    flags.DEFINE_string("images", None, "A query image file or a folder of query images.")
    flags.DEFINE_integer("k", 10, "Number of nearest database images per query.", lower_bound=1)
    flags.DEFINE_string("grid", None, "Optional PNG of the queries and their results.")
    flags.mark_flags_as_required(["workdir", "index", "images"])


def _grid(queries: data_lib.LoadedImages, database_paths, ids: np.ndarray, image_shape, path) -> None:
    shown = sorted({int(item) for item in ids.ravel() if item >= 0})
    loaded = data_lib.load_image_files([database_paths[item] for item in shown], image_shape)
    by_path = dict(zip(loaded.paths, loaded.images))
    blank = np.zeros_like(queries.images[0])
    results = np.stack(
        [np.stack([by_path.get(database_paths[item], blank) if item >= 0 else blank for item in row]) for row in ids]
    )
    query_folders = [pathlib.Path(query_path).parent.name for query_path in queries.paths]
    correct = np.array([
        [item >= 0 and pathlib.Path(database_paths[item]).parent.name == folder for item in row]
        for folder, row in zip(query_folders, ids)
    ])
    plots.plot_retrieval_grid(queries.images, results, correct, path, titles=query_folders)


def main() -> None:
    trained = restore_trained_model(FLAGS.workdir)
    image_index = load_image_index(FLAGS.index)
    image_shape = trained.summary["image_shape"]
    queries = data_lib.load_images(FLAGS.images, image_shape)
    encoder = Encoder(trained.method, trained.model, trained.mesh, batch_size=trained.config.eval_batch_size)
    scores, ids = image_index.index.search(encoder.encode_images(queries.images), FLAGS.k)
    score_name = "similarity" if image_index.index.kind == "flat" else "distance"
    for path, reason in queries.skipped:
        print(f"skipped {path}: {reason}")
    for query_path, row_scores, row_ids in zip(queries.paths, scores, ids):
        print(f"query {query_path}")
        for rank, (score, item) in enumerate(zip(row_scores, row_ids), start=1):
            if item >= 0:
                print(f"  {rank:3d}. {image_index.paths[item]}  {score_name} {float(score):.4g}")
    if FLAGS.grid:
        _grid(queries, image_index.paths, np.asarray(ids), image_shape, FLAGS.grid)
        print(f"grid written to {FLAGS.grid}")


if __name__ == "__main__":
    define_flags()
    command_line.run(main)
