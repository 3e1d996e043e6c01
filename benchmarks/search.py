"""Exact Hamming and PQ k-NN: jaxretrieval.search against faiss, same process, same CPU.

Run by hand (not part of the test suite):

    nice .venv/bin/python benchmarks/search.py            # full: 1M items, 1,000 queries
    nice .venv/bin/python benchmarks/search.py --quick    # 100k items, smoke run
    # Both libraries limited to AVX2 (as on a CPU without AVX-512):
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 nice .venv/bin/python benchmarks/search.py --faiss-simd AVX2

Prints, per configuration, queries per second (median wall time of ``--repeats`` alternating
runs) for jaxretrieval and faiss, the throughput ratio (jaxretrieval / faiss, > 1 means faster; the
median of adjacent-pair ratios), our queries per second with one host thread (``num_threads=1``: what
the algorithm does on one core), process CPU seconds per 1,000 queries, whether distances and ids are
identical, and the search's peak temporary memory (the compiled executable's ``memory_analysis()`` of
one query chunk, times the number of chunks in flight at once) next to the database's own size.
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time

import faiss
import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval import search
from jaxretrieval.search import _hamming, _pq, _threads


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


def _one_thread_rate(function, num_queries, repeats):
    """Queries per second of ``function(num_threads=1)``, median of ``repeats`` after a warm-up."""
    function(num_threads=1)
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(num_threads=1)
        walls.append(time.perf_counter() - start)
    return num_queries / statistics.median(walls)


def _peak_temp_bytes(jitted, queries, *args, **kwargs):
    """Temporary bytes of the searches in flight at once with the default threads.

    Each host thread runs one compiled chunk at a time, so the peak is one chunk's temporaries times
    the number of chunks running together.
    """
    num_threads = _threads.check_num_threads(None, queries)
    if num_threads == 1:
        size, in_flight = _threads.query_bucket(queries.shape[0]), 1
    else:
        size = _threads.query_chunk(queries.shape[0], num_threads)
        in_flight = min(num_threads, -(-queries.shape[0] // size))
    padded = _threads.pad_queries(queries[:size], size)
    analysis = jitted.lower(padded, *args, **kwargs).compile().memory_analysis()
    return in_flight * analysis.temp_size_in_bytes


def _layout_bytes(prepare, database):
    """Memory a per-call layout holds while the search runs (its outputs plus its temporaries)."""
    analysis = prepare.lower(database).compile().memory_analysis()
    return analysis.output_size_in_bytes + analysis.temp_size_in_bytes


def _mib(num_bytes):
    return f"{num_bytes / 2**20:.1f} MiB"


def _row(name, num_queries, timings, one_thread_rate, identical, temp_bytes, database_bytes):
    ours, theirs, ratio, ours_cpu, theirs_cpu = timings
    print(
        f"| {name} | {num_queries / ours:,.0f} | {num_queries / theirs:,.0f} | {ratio:.2f}x | "
        f"{one_thread_rate:,.0f} | {ours_cpu:.2f} / {theirs_cpu:.2f} | {identical} | "
        f"{temp_bytes} | {_mib(database_bytes)} |",
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

    def ours_prepared(num_threads=None):
        return jax.block_until_ready(search.hamming_knn_prepared(
            queries_device, prepared, num_items, k, num_bits=num_bits, num_threads=num_threads))

    def ours_function(num_threads=None):
        return jax.block_until_ready(
            search.hamming_knn(queries_device, database_device, k, num_threads=num_threads))

    def theirs():
        return faiss_index.search(queries, k)

    faiss_distances, faiss_indices = theirs()
    search_bytes = _peak_temp_bytes(_hamming._hamming_knn_prepared_jit, queries_device, *prepared,
                                    num_items, k=k, num_bits=num_bits)
    variants = [("HammingIndex.search", ours_prepared, _mib(search_bytes))]
    if with_function:
        layout = _layout_bytes(search.prepare_hamming_database, database_device)
        variants.append(("hamming_knn (lays the database out per call)", ours_function,
                         f"{_mib(search_bytes)} + layout {_mib(layout)}"))
    for name, function, temp_bytes in variants:
        distances, indices = function()
        identical = np.array_equal(np.asarray(distances), faiss_distances) and np.array_equal(
            np.asarray(indices), faiss_indices
        )
        _row(f"{name}, {num_bits} bits, k={k}", num_queries,
             _paired_timings(function, theirs, repeats),
             _one_thread_rate(function, num_queries, repeats), identical, temp_bytes,
             database.nbytes)


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

    def ours(num_threads=None):
        return jax.block_until_ready(search.pq_knn_prepared(
            queries_device, prepared, num_items, codebooks_device, k, distance="squared_l2",
            num_threads=num_threads))

    def theirs():
        return faiss_index.search(queries, k)

    distances, indices = ours()
    faiss_distances, faiss_indices = theirs()
    same_ids = float(np.mean(np.asarray(indices) == faiss_indices))
    max_difference = float(np.max(np.abs(np.asarray(distances) - faiss_distances)))
    # Our lookup tables and faiss's (a BLAS sgemm) round differently, which swaps a few near-tied
    # ids. Given faiss's own tables, our search (same summation order) must match it exactly.
    faiss_tables = np.zeros((num_queries, num_books, 256), np.float32)
    faiss_index.pq.compute_distance_tables(
        num_queries, faiss.swig_ptr(queries), faiss.swig_ptr(faiss_tables))
    search_tables = jax.jit(functools.partial(
        _pq._pq_tables_search, k=k, table_shape=(num_books, 256)))
    table_distances, table_indices = search_tables(
        _threads.pad_queries(jnp.asarray(faiss_tables)), *prepared, num_items)
    exact = (np.array_equal(np.asarray(table_distances[:num_queries]), faiss_distances)
             and np.array_equal(np.asarray(table_indices[:num_queries]), faiss_indices))
    identical = (f"ids {same_ids:.4%} equal, max abs distance difference {max_difference:.1e}; "
                 f"with faiss's tables: {exact}")
    temp_bytes = _peak_temp_bytes(_pq._pq_knn_prepared_jit, queries_device, *prepared,
                                  codebooks_device, num_items, k=k, distance="squared_l2")
    _row(f"PQIndex.search, M=8 K=256 L=16, k={k}, squared_l2", num_queries,
         _paired_timings(ours, theirs, repeats), _one_thread_rate(ours, num_queries, repeats),
         identical, _mib(temp_bytes), codes.nbytes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k items instead of 1M")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-pq", action="store_true")
    parser.add_argument("--configs", default="64:100,64:1000,32:100,128:100",
                        help="comma-separated num_bits:k Hamming configurations")
    parser.add_argument("--faiss-threads", type=int, default=0,
                        help="faiss OpenMP threads (0 = faiss's default, all cores)")
    parser.add_argument("--faiss-simd", default=None,
                        help="force faiss's SIMD level (e.g. AVX2); default: what it detects")
    arguments = parser.parse_args()
    if arguments.faiss_simd:
        faiss.SIMDConfig.set_level(getattr(faiss, f"SIMDLevel_{arguments.faiss_simd.upper()}"))
    if arguments.faiss_threads:
        faiss.omp_set_num_threads(arguments.faiss_threads)
    num_items = 100_000 if arguments.quick else 1_000_000
    num_queries = 1000
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()}")
    print(f"versions: python {platform.python_version()}, jax {jax.__version__}, "
          f"numpy {np.__version__}, faiss {faiss.__version__}, faiss threads "
          f"{faiss.omp_get_max_threads()}, faiss SIMD {faiss.SIMDConfig.get_level_name()}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"{num_items:,} database items, {num_queries:,} queries, median of {arguments.repeats}\n")
    print(f"our search threads: {_threads.check_num_threads(None, jnp.zeros(1))}\n")
    print("| configuration | ours q/s | faiss q/s | ratio (median of pairs) | ours q/s, 1 thread "
          "| CPU s ours / faiss | identical to faiss | search temp memory (peak) | database size |")
    print("|---|---|---|---|---|---|---|---|---|")
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
