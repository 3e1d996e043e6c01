"""Queries in chunks on host threads: the one thread pool of the core (search and metrics use it).

XLA:CPU runs one search on about one core. On the CPU the queries are therefore cut into chunks
(powers of two from 8 to 512, one compiled shape each) that host threads search concurrently, one
thread per available core unless ``num_threads`` says otherwise; every query's answer is the same
whatever the split. Queries are padded to a power-of-two bucket, so a new query count inside a
bucket does not recompile.
"""
from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval._concrete import is_concrete

# A chunk costs about as much as this many more queries (dispatch, padding, the final merge), which
# decides between fewer large chunks and a better balance of many small ones.
_MIN_QUERY_CHUNK = 8
_MAX_QUERY_CHUNK = 512
_CHUNK_OVERHEAD_QUERIES = 32

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def query_bucket(num_queries: int) -> int:
    """The padded query count: the next power of two, at least 8."""
    return max(8, 1 << max(0, num_queries - 1).bit_length())


def pad_queries(queries: jax.Array, size: int | None = None) -> jax.Array:
    """Pads the query rows with zeros up to ``size`` (default: the power-of-two bucket)."""
    size = query_bucket(queries.shape[0]) if size is None else size
    return jnp.pad(queries, ((0, size - queries.shape[0]),) + ((0, 0),) * (queries.ndim - 1))


def available_cores() -> int:
    """The cores this process may run on (honours taskset and container CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_num_threads(num_threads, reference) -> int:
    """The number of host threads to search with; ``None``: one per core on the CPU, else one."""
    if num_threads is None:
        if not is_concrete(reference):
            return 1
        if isinstance(reference, jax.Array):
            platforms = {device.platform for device in reference.devices()}
        else:  # host data goes to the default device
            platforms = {jax.default_backend()}
        return available_cores() if platforms == {"cpu"} else 1
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
        raise TypeError(f"num_threads must be an int or None, got {type(num_threads).__name__}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return int(num_threads)


def query_chunk(num_queries: int, num_threads: int) -> int:
    """The chunk size (a power of two) that minimises the slowest thread's estimated work."""
    best_cost, best_size = None, _MIN_QUERY_CHUNK
    size = _MIN_QUERY_CHUNK
    while size <= _MAX_QUERY_CHUNK:
        num_chunks = -(-num_queries // size)
        rounds = -(-num_chunks // num_threads)  # chunks run one after another by the busiest thread
        cost = rounds * (size + _CHUNK_OVERHEAD_QUERIES)
        if best_cost is None or cost <= best_cost:  # ties go to the larger chunk
            best_cost, best_size = cost, size
        size *= 2
    return best_size


@functools.lru_cache(maxsize=None)
def _thread_pool(num_threads: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(num_threads, thread_name_prefix="jaxretrieval")


def map_on_threads(
    function: Callable[[_Item], _Result], items: Sequence[_Item], num_threads: int
) -> list[_Result]:
    """``[function(item) for item in items]``, on ``num_threads`` pool threads when there are several.

    ``function`` must not itself wait on this pool (call the search functions inside it with
    ``num_threads=1``). XLA and numpy's sorting release the GIL, so the threads run side by side.
    """
    if num_threads <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    return list(_thread_pool(num_threads).map(function, items))


def search_queries(search_padded, queries: jax.Array, num_threads: int):
    """Runs ``search_padded(padded_queries) -> (distances, ids)`` over all queries, sliced back.

    With one thread (accelerators, or under a trace) the queries are padded to their bucket and
    searched in one call; with several, chunks run concurrently on the thread pool (each thread
    blocks on its own result, which is what lets XLA:CPU run them side by side). Zero queries give
    ``[0, k]`` results.
    """
    num_queries = queries.shape[0]
    if num_threads == 1 or num_queries == 0 or not is_concrete(queries):
        distances, ids = search_padded(pad_queries(queries))
        return distances[:num_queries], ids[:num_queries]
    size = query_chunk(num_queries, num_threads)
    padded = pad_queries(queries, -(-num_queries // size) * size)
    chunks = [padded[start : start + size] for start in range(0, padded.shape[0], size)]
    results = map_on_threads(lambda chunk: jax.block_until_ready(search_padded(chunk)), chunks, num_threads)
    distances = jnp.concatenate([distances for distances, _ in results])
    ids = jnp.concatenate([ids for _, ids in results])
    return distances[:num_queries], ids[:num_queries]
