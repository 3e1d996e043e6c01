"""Exact k-NN of real-valued vectors by inner product or cosine similarity (mAP_Q's descriptors).

Similarities **descend** (larger is nearer), ties by ascending database index, as faiss
``IndexFlatIP`` on the same vectors. Queries are scored against the whole database in batches sized
so that a batch's similarity matrix stays within 16 MiB, and the batches run under one compiled
function per query chunk (the chunks on host threads, as the other searches). On the CPU, for ``k``
of 64 and more, the similarities are ranked on the host instead: unique 64-bit keys
``order(-similarity) << 32 | index`` are partitioned and sorted (numpy), the same answers faster than
XLA's ``top_k``, which sorts whole rows there.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxretrieval.search import _engine, _threads
from jaxretrieval import _stable
from jaxretrieval._concrete import is_concrete
from jaxretrieval.search._checks import check_k

# One query batch's similarities stay within this many bytes.
_SIMILARITY_BATCH_BYTES = 16 << 20
# On the CPU, from this k on, rankings sort 64-bit keys on the host (XLA's top_k sorts the whole row
# there, which costs more than numpy's partition + sort of the k best).
_SORT_MIN_K = 64
# A query chunk of the sorting path holds at most this many bytes of keys.
_SORT_CHUNK_BYTES = 64 << 20


def check_vectors(name: str, vectors, dimension: int | None = None) -> jax.Array:
    """``[n, d]`` float vectors, finite (checked when concrete), as float32."""
    vectors = jnp.asarray(vectors)
    if vectors.ndim != 2 or (dimension is not None and vectors.shape[1] != dimension):
        expected = "[n, d]" if dimension is None else f"[n, {dimension}]"
        raise ValueError(f"{name} must have shape {expected}, got {vectors.shape}")
    if not jnp.issubdtype(vectors.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point, got dtype {vectors.dtype}")
    if is_concrete(vectors) and not np.isfinite(np.asarray(vectors)).all():
        raise ValueError(f"{name} of shape {vectors.shape} contain NaN or infinite values")
    return vectors.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("k",))
def _inner_product_top(queries, database, *, k):
    _engine.trace_counts["inner_product_knn"] += 1
    kept = min(k, database.shape[0])
    batch = int(np.clip(_engine.power_of_two_at_most(_SIMILARITY_BATCH_BYTES // (4 * database.shape[0])), 1, queries.shape[0]))

    def top(query_batch):
        # Rows scaled by powers of two, the product scaled back: the same rounding as the plain
        # product, +-inf (never inf - inf = NaN) where a similarity exceeds float32.
        return lax.top_k(_similarities(query_batch, database), kept)  # equal similarities: the lower index first

    values, indices = lax.map(top, queries.reshape(-1, batch, queries.shape[1]))
    values, indices = values.reshape(queries.shape[0], kept), indices.reshape(queries.shape[0], kept)
    extra = k - kept
    if extra:
        values = jnp.pad(values, ((0, 0), (0, extra)), constant_values=-jnp.inf)
        indices = jnp.pad(indices, ((0, 0), (0, extra)), constant_values=-1)
    return values, indices.astype(jnp.int32)


@jax.jit
def _similarities(queries, database):
    """``[q, n]`` inner products of power-of-two-scaled rows, scaled back (``jaxretrieval._stable.scaled_rows``)."""
    (queries, query_exponent), (database, database_exponent) = _stable.scaled_rows(queries), _stable.scaled_rows(database)
    products = jnp.matmul(queries, database.T, precision=lax.Precision.HIGHEST)
    return jnp.ldexp(products, query_exponent[:, None] + database_exponent[None, :])


@jax.jit
def _similarity_ranks(queries, database):
    """``(similarities, order)`` ``[q, n]``: float32 similarities and uint32 keys that ascend as the
    similarities descend (a float's bits with the sign flipped sort as the float; ``-0.0`` ties ``0.0``)."""
    similarities = _similarities(queries, database)
    bits = lax.bitcast_convert_type(similarities + 0.0, jnp.uint32)
    ascending = jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(1 << 31))
    return similarities, ~ascending


def _sorted_knn(queries, database, k: int, num_threads: int):
    """Exact top ``k`` by sorting keys on the host, query chunk by query chunk (host threads)."""
    num_queries, num_items = queries.shape[0], database.shape[0]
    kept = min(k, num_items)
    rows = int(np.clip(_engine.power_of_two_at_most(_SORT_CHUNK_BYTES // (8 * num_items)), 1, 512))

    host_queries = np.asarray(queries)

    def rank(start: int) -> tuple[np.ndarray, np.ndarray]:
        count = min(rows, num_queries - start)
        chunk = np.zeros((rows, host_queries.shape[1]), np.float32)  # one compiled shape for every chunk
        chunk[:count] = host_queries[start : start + count]
        similarities, order = (np.asarray(array)[:count] for array in _similarity_ranks(chunk, database))
        # Unique 64-bit keys: the similarity's order, then the index (ties by ascending index).
        keys = np.left_shift(order, np.uint64(32), dtype=np.uint64)
        np.bitwise_or(keys, np.arange(num_items, dtype=np.uint64), out=keys)
        if kept < num_items:  # a linear-time selection first: only the k best get sorted
            keys = np.partition(keys, kept - 1, axis=1)[:, :kept]
        indices = (np.sort(keys, axis=1) & np.uint64(0xFFFFFFFF)).astype(np.int32)
        return np.take_along_axis(similarities, indices, axis=1), indices

    parts = _threads.map_on_threads(rank, range(0, num_queries, rows), num_threads) or [
        (np.zeros((0, kept), np.float32), np.zeros((0, kept), np.int32))
    ]
    similarities = np.concatenate([values for values, _ in parts])
    indices = np.concatenate([ids for _, ids in parts])
    if kept < k:
        similarities = np.pad(similarities, ((0, 0), (0, k - kept)), constant_values=-np.inf)
        indices = np.pad(indices, ((0, 0), (0, k - kept)), constant_values=-1)
    return jnp.asarray(similarities), jnp.asarray(indices)


def inner_product_knn(queries, database, k: int, *, num_threads: int | None = None):
    """Exact k nearest neighbours by inner product ``<q, x>`` (descending), ties by ascending index.

    Args:
      queries: ``[num_queries, d]`` float vectors.
      database: ``[num_database, d]`` float vectors, ``num_database >= 1``.
      k: number of neighbours, a positive int; may exceed ``num_database``.
      num_threads: host threads for query chunks, as :func:`hamming_knn`.

    Returns:
      ``(similarities, indices)``: ``[num_queries, k]`` float32 **descending** and int32; where
      ``k`` exceeds the database, index ``-1`` and similarity ``-inf``.

    Raises:
      ValueError / TypeError: shapes that are not ``[n, d]`` or disagree, an empty database,
        non-finite values (when concrete), a non-positive ``k``.

    Example:
      >>> database = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
      >>> similarities, indices = inner_product_knn(np.array([[2.0, 1.0]]), database, k=4)
      >>> similarities, indices
      (Array([[ 2.,  2.,  1., -inf]], dtype=float32), Array([[ 0,  2,  1, -1]], dtype=int32))
    """
    k = check_k(k)
    database = check_vectors("database", database)
    queries = check_vectors("queries", queries, database.shape[1])
    if database.shape[0] == 0:
        raise ValueError(f"database is empty (shape {database.shape}); add vectors before searching")
    threads = _threads.check_num_threads(num_threads, database)
    if k >= _SORT_MIN_K and is_concrete(queries, database) and {device.platform for device in database.devices()} == {"cpu"}:
        return _sorted_knn(queries, database, k, threads)
    search_padded = lambda padded: _inner_product_top(padded, database, k=k)
    return _threads.search_queries(search_padded, queries, threads)


def cosine_knn(queries, database, k: int, *, num_threads: int | None = None):
    """:func:`inner_product_knn` of the L2-normalised vectors: cosine similarity, descending.

    An all-zero vector has similarity 0 to every vector.

    Example:
      >>> database = np.array([[3.0, 0.0], [1.0, 1.0]])
      >>> similarities, indices = cosine_knn(np.array([[1.0, 0.0]]), database, k=2)
      >>> np.round(np.asarray(similarities), 4), indices
      (array([[1.    , 0.7071]], dtype=float32), Array([[0, 1]], dtype=int32))
    """
    database = _stable.unit_rows(check_vectors("database", database))
    queries = _stable.unit_rows(check_vectors("queries", queries, database.shape[1]))
    return inner_product_knn(queries, database, k, num_threads=num_threads)


@jax.jit
def _negated_similarity_tile(queries, database):
    return -_similarities(queries, database)


def inner_product_range_search(queries, database, threshold: float):
    """All items with inner product ``>= threshold`` for each query, CSR as :func:`hamming_range_search`.

    Returns:
      ``(lims, similarities, indices)`` numpy arrays: ``lims`` ``[num_queries + 1]`` int64, then the
      items of query ``i`` at ``lims[i]:lims[i + 1]`` in ascending database index, their
      similarities float32.

    Example:
      >>> lims, similarities, indices = inner_product_range_search(
      ...     np.array([[1.0, 0.0]]), np.array([[0.5, 0.0], [-1.0, 0.0], [2.0, 1.0]]), 0.5)
      >>> lims, similarities, indices
      (array([0, 2]), array([0.5, 2. ], dtype=float32), array([0, 2], dtype=int32))
    """
    database = check_vectors("database", database)
    queries = check_vectors("queries", queries, database.shape[1])
    if database.shape[0] == 0:
        raise ValueError(f"database is empty (shape {database.shape}); add vectors before searching")
    if isinstance(threshold, bool) or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    lims, negated, indices = _engine.range_search(_negated_similarity_tile, queries, database, -float(threshold))
    return lims, -negated, indices
