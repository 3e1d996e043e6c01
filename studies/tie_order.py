"""How much a finished run's mAP@k depends on the database order (the tie order of its ranking).

Run from the repository root on a trained run's workdir (one made by ``python -m studies.reproduce``
or ``python -m jaxretrieval.train``)::

    .venv/bin/python -m studies.tie_order --workdir runs/study_cpu/supervised-csq-64b-II-s1-cpu20

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

from jaxretrieval import metrics, search
from jaxretrieval.codes import sign_codes
from jaxretrieval.data import build_retrieval_data
from jaxretrieval.evaluation import Encoder, host_model
from jaxretrieval.training.restore import restore_trained_model


def main():
    parser = argparse.ArgumentParser(prog="python -m studies.tie_order", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--top-k", type=int, default=1000)
    parser.add_argument("--shuffles", type=int, default=3)
    arguments = parser.parse_args()

    trained = restore_trained_model(arguments.workdir)
    config = trained.config
    data = build_retrieval_data(config.data, splits_file=trained.run.splits_file,
                                load_report_file=trained.run.load_report_file)
    encoder = Encoder(trained.method, trained.model, trained.mesh, batch_size=int(config.eval_batch_size))
    query = encoder.encode(data.query)
    database = encoder.encode(data.database)
    # The method's retrieval rule: PQ codes by asymmetric distance, or else sign codes by Hamming distance.
    index = trained.method.new_index(host_model(trained.model))
    is_pq = index.kind == "pq"
    if is_pq:
        database_codes = np.asarray(search.pq_encode(database.representations, index.codebooks))
    else:
        database_codes = np.asarray(sign_codes(database.representations))
    query_codes = np.asarray(sign_codes(query.representations))
    print(f"{arguments.workdir}: method {config.method}, {len(np.unique(database_codes, axis=0)):,} distinct "
          f"codes for {len(database_codes):,} database items")

    def score(order):
        codes, labels = database_codes[order], database.labels[order]
        if is_pq:
            _, ranked = search.pq_knn(query.representations, codes, index.codebooks, arguments.top_k,
                                      distance=index.distance)
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
