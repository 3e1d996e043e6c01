"""How much a finished run's mAP@k depends on the database order (the tie order of its ranking).

Run by hand on a trained run's workdir (one made by ``reproduce.py`` or ``jaxretrieval.train``)::

    .venv/bin/python benchmarks/tie_order.py --workdir runs/study_cpu/supervised-csq-64b-II-s1-cpu20

Encodes the run's queries and database once, then scores mAP@k (ties broken by database position,
as everywhere in jaxretrieval and faiss) with the database in three kinds of order: the data set's
pool order (for an image folder: one class after another), the protocol's own order (a fixed
shuffle, see ``jaxretrieval/data/protocols.py``) and a few more random shuffles; hash methods also get
the tie-aware mAP@k, which no order moves. Prints the number of distinct codes, which is what makes
the order matter. docs/results.md quotes its output.
"""
from __future__ import annotations

import argparse

import numpy as np

from jaxretrieval import data as data_lib
from jaxretrieval import evaluate, methods, metrics, search, trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--top-k", type=int, default=1000)
    parser.add_argument("--shuffles", type=int, default=3)
    arguments = parser.parse_args()

    trained = trainer.restore_trained_model(arguments.workdir)
    config = trained.config
    data = data_lib.build_retrieval_data(config.data, workdir=arguments.workdir)
    encoder = evaluate.Encoder(config, trained.method, trained.eval_graphdef, trained.mesh)
    query = encoder.encode(trained.state, data.query)
    database = encoder.encode(trained.state, data.database)
    is_pq = config.method == "spq"
    if is_pq:
        codebooks = np.asarray(trained.model.head.codebooks[...])
        database_codes = np.asarray(search.pq_encode(database.representations, codebooks))
    else:
        database_codes = methods._sign_codes(database.representations)  # the evaluation's own binarisation
    query_codes = methods._sign_codes(query.representations)
    print(f"{arguments.workdir}: method {config.method}, {len(np.unique(database_codes, axis=0)):,} distinct "
          f"codes for {len(database_codes):,} database items")

    def score(order):
        codes, labels = database_codes[order], database.labels[order]
        if is_pq:
            _, ranked = search.pq_knn(query.representations, codes, codebooks, arguments.top_k,
                                      distance=config.loss.distance)
            return metrics.ranked_mean_average_precision(np.asarray(ranked), query.labels, labels,
                                                         top_k=arguments.top_k)
        return metrics.mean_average_precision(query_codes, codes, query.labels, labels, top_k=arguments.top_k)

    orders = {"pool order (np.argsort of the pool indices)": np.argsort(database.indices, kind="stable"),
              "the protocol's order (as evaluated)": np.arange(len(database_codes))}
    for seed in range(arguments.shuffles):
        orders[f"random shuffle {seed}"] = np.random.default_rng(seed).permutation(len(database_codes))
    for name, order in orders.items():
        print(f"  mAP@{arguments.top_k}, {name}: {score(order):.4f}")
    if not is_pq:
        tie_aware = metrics.mean_average_precision(query_codes, database_codes, query.labels, database.labels,
                                                   top_k=arguments.top_k, tie_aware=True)
        print(f"  tie-aware mAP@{arguments.top_k} (any order): {tie_aware:.4f}")


if __name__ == "__main__":
    main()
