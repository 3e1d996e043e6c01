"""Exact Hamming and PQ k-NN: jaxretrieval.search against faiss, same process, same CPU.

Run by hand (not part of the test suite):

    nice .venv/bin/python benchmarks/search.py            # full: 1M items, 1,000 queries
    nice .venv/bin/python benchmarks/search.py --quick    # 100k items, smoke run

Prints, per configuration, queries per second (median wall time of ``--repeats`` alternating
runs) for jaxretrieval and faiss, the throughput ratio (jaxretrieval / faiss, > 1 means faster; the
median of adjacent-pair ratios), process CPU seconds per 1,000 queries, whether distances and ids are
identical, and the search's temporary memory from the compiled executable's ``memory_analysis()``
next to the database's own size.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import faiss
import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval import search


def _paired_timings(ours, theirs, repeats: int):
    """Alternates the two searches ``repeats`` times (after one warm-up each).

    Returns median wall seconds of each, the median of the per-pair throughput ratios (adjacent
    runs see the same background load, so the pair ratio is steadier than a ratio of medians on a
    shared machine), and the median process CPU seconds of each.
    """
    ours(), theirs()
    walls, cpus = ([], []), ([], [])
    for _ in range(repeats):
        for side, function in enumerate((ours, theirs)):
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            walls[side].append(time.perf_counter() - wall)
            cpus[side].append(time.process_time() - cpu)
    ratios = [theirs_wall / ours_wall for ours_wall, theirs_wall in zip(*walls)]
    return (statistics.median(walls[0]), statistics.median(walls[1]), statistics.median(ratios),
            statistics.median(cpus[0]), statistics.median(cpus[1]))


def _row(name, num_queries, timings, identical, temp_bytes, database_bytes):
    ours, theirs, ratio, ours_cpu, theirs_cpu = timings
    print(
        f"| {name} | {num_queries / ours:,.0f} | {num_queries / theirs:,.0f} | {ratio:.2f}x | "
        f"{ours_cpu:.2f} / {theirs_cpu:.2f} | {identical} | {temp_bytes / 2**20:.1f} MiB | "
        f"{database_bytes / 2**20:.1f} MiB |",
        flush=True,
    )


def bench_hamming(num_items, num_queries, num_bits, k, repeats, rng, with_function=False):
    database = rng.integers(0, 256, size=(num_items, num_bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, size=(num_queries, num_bits // 8), dtype=np.uint8)
    faiss_index = faiss.IndexBinaryFlat(num_bits)
    faiss_index.add(database)
    database_device, queries_device = jnp.asarray(database), jnp.asarray(queries)
    # The index path: layout prepared once (what HammingIndex.search does).
    prepared = jax.block_until_ready(search.prepare_hamming_database(database_device))

    def ours_prepared():
        return jax.block_until_ready(
            search.hamming_knn_prepared(queries_device, prepared, num_items, k, num_bits=num_bits)
        )

    def ours_function():
        return jax.block_until_ready(search.hamming_knn(queries_device, database_device, k))

    def theirs():
        return faiss_index.search(queries, k)

    faiss_distances, faiss_indices = theirs()
    variants = [("HammingIndex.search", ours_prepared, search._hamming_knn_prepared_jit.lower(
        search._pad_queries(queries_device), *prepared, num_items, k=k, num_bits=num_bits))]
    if with_function:
        variants.append(("hamming_knn (lays the database out per call)", ours_function,
                         search._hamming_knn_jit.lower(search._pad_queries(queries_device),
                                                       database_device, k=k, num_bits=num_bits)))
    for name, function, lowered in variants:
        distances, indices = function()
        identical = np.array_equal(np.asarray(distances), faiss_distances) and np.array_equal(
            np.asarray(indices), faiss_indices
        )
        temp_bytes = lowered.compile().memory_analysis().temp_size_in_bytes
        _row(f"{name}, {num_bits} bits, k={k}", num_queries,
             _paired_timings(function, theirs, repeats), identical, temp_bytes, database.nbytes)


def bench_pq(num_items, num_queries, k, repeats, rng):
    num_books, word_dim = 8, 16
    dimension = num_books * word_dim
    faiss_index = faiss.IndexPQ(dimension, num_books, 8)
    faiss_index.pq.cp.niter = 5  # training quality is irrelevant to search speed
    faiss_index.train(rng.normal(size=(20_000, dimension)).astype(np.float32))
    faiss_index.add(rng.normal(size=(num_items, dimension)).astype(np.float32))
    queries = rng.normal(size=(num_queries, dimension)).astype(np.float32)
    codebooks = faiss.vector_to_array(faiss_index.pq.centroids).reshape(num_books, 256, word_dim)
    codes = faiss.vector_to_array(faiss_index.codes).reshape(num_items, num_books)
    prepared = jax.block_until_ready(search.prepare_pq_database(jnp.asarray(codes, jnp.int32)))
    queries_device, codebooks_device = jnp.asarray(queries), jnp.asarray(codebooks)

    def ours():
        return jax.block_until_ready(search.pq_knn_prepared(
            queries_device, prepared, num_items, codebooks_device, k, distance="squared_l2"))

    def theirs():
        return faiss_index.search(queries, k)

    distances, indices = ours()
    faiss_distances, faiss_indices = theirs()
    same_ids = float(np.mean(np.asarray(indices) == faiss_indices))
    max_difference = float(np.max(np.abs(np.asarray(distances) - faiss_distances)))
    identical = f"ids {same_ids:.4%} equal, max |dD| {max_difference:.2e}"
    temp_bytes = search._pq_knn_prepared_jit.lower(
        search._pad_queries(queries_device), *prepared, codebooks_device, num_items, k=k,
        distance="squared_l2").compile().memory_analysis().temp_size_in_bytes
    _row(f"PQIndex.search, M=8 K=256 L=16, k={k}, squared_l2", num_queries,
         _paired_timings(ours, theirs, repeats), identical, temp_bytes, codes.nbytes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k items instead of 1M")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-pq", action="store_true")
    parser.add_argument("--configs", default="64:100,64:1000,32:100,128:100",
                        help="comma-separated num_bits:k Hamming configurations")
    parser.add_argument("--faiss-threads", type=int, default=0,
                        help="faiss OpenMP threads (0 = faiss's default, all cores)")
    arguments = parser.parse_args()
    if arguments.faiss_threads:
        faiss.omp_set_num_threads(arguments.faiss_threads)
    num_items = 100_000 if arguments.quick else 1_000_000
    num_queries = 1000
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()}")
    print(f"versions: python {platform.python_version()}, jax {jax.__version__}, "
          f"numpy {np.__version__}, faiss {faiss.__version__}, faiss threads "
          f"{faiss.omp_get_max_threads()}")
    print(f"{num_items:,} database items, {num_queries:,} queries, median of {arguments.repeats}\n")
    print("| configuration | ours q/s | faiss q/s | ratio (median of pairs) | CPU s ours / faiss "
          "| identical to faiss | search temp memory | database size |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    configs = [tuple(map(int, item.split(":"))) for item in arguments.configs.split(",")]
    for num_bits, k in configs:
        bench_hamming(num_items, num_queries, num_bits, k, arguments.repeats, rng,
                      with_function=(num_bits, k) == (64, 100))
    if not arguments.skip_pq:
        bench_pq(num_items, num_queries, 100, arguments.repeats, rng)
    print(f"\nload average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
