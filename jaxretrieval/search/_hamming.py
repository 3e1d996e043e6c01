"""Hamming search over packed codes: all-pairs distances, exact k-NN and range search.

Two exact ranking paths give the same answers (ascending distance, ties by ascending database index,
the order of faiss ``IndexBinaryFlat``):

- the blocked engine (:mod:`jaxretrieval.search._engine`) for ``k`` small against the database:
  block lower bounds, a few MiB of temporary memory whatever the database size;
- a sort of unique keys for deep rankings (``k`` at least the number of 64-item blocks, such as the
  rankings that mAP@1000 or mAP over the whole database need): each database item gets the 32-bit key
  ``distance << shift | index``, so sorting a row of keys is exactly the stable sort by
  ``(distance, index)``; ``np.partition`` keeps the ``k`` best keys first. Query chunks are sized so
  their keys stay within 64 MiB.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxretrieval.codes import pack_codes  # noqa: F401  (the doctests use it)
from jaxretrieval.search import _engine, _threads
from jaxretrieval._concrete import is_concrete
from jaxretrieval.search._checks import check_k, check_packed, check_queries_database

# A query chunk of the sorting path holds at most this many bytes of keys.
_SORT_CHUNK_BYTES = 64 << 20


def to_words(packed: jax.Array) -> jax.Array:
    """``[n, num_bytes]`` uint8 -> ``[n, ceil(num_bytes / 4)]`` uint32 (zero bytes pad the tail).

    Hamming distance only counts differing bits, so how bytes map into a word does not matter.
    """
    num_words = -(-packed.shape[1] // 4)
    padded = jnp.pad(packed, ((0, 0), (0, 4 * num_words - packed.shape[1])))
    return lax.bitcast_convert_type(padded.reshape(packed.shape[0], num_words, 4), jnp.uint32)


# ----------------------------------------------------------------------------------------------
# Brute-force distances
# ----------------------------------------------------------------------------------------------


@jax.jit
def distance_words(query_words, database_words):
    xor = query_words[:, None, :] ^ database_words[None, :, :]
    return lax.population_count(xor).astype(jnp.int32).sum(-1)


def hamming_distance(queries, database) -> jax.Array:
    """All pairwise Hamming distances between packed codes (a full matrix; for small inputs).

    Args:
      queries: ``[num_queries, num_bytes]`` ``uint8`` packed codes.
      database: ``[num_database, num_bytes]`` ``uint8`` packed codes.

    Returns:
      ``[num_queries, num_database]`` int32 distances (number of differing bits); symmetric:
      ``hamming_distance(a, b) == hamming_distance(b, a).T``.

    Example:
      >>> a = pack_codes(np.array([[1, 1, -1, -1]]))
      >>> b = pack_codes(np.array([[1, -1, -1, 1], [1, 1, -1, -1]]))
      >>> hamming_distance(a, b)
      Array([[2, 0]], dtype=int32)
    """
    queries = check_packed("queries", queries)
    database = check_packed("database", database)
    if queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"queries {queries.shape} and database {database.shape} differ in bytes per code"
        )
    return distance_words(to_words(queries), to_words(database))


# ----------------------------------------------------------------------------------------------
# Hamming k-NN
# ----------------------------------------------------------------------------------------------


# Popcount terms per fused min-chain. LLVM vectorises the fused XOR / popcount / min loop over the
# blocks only while its body stays small: 64 items x 2 words (64 bits) is vectorised, 64 items x 4
# words (128 bits) is not and runs ~12x slower, whether or not the chain is cut by optimization
# barriers (XLA fuses across them). So wider codes run their items in groups inside a loop, whose
# body is then one short, vectorised fusion.
_TERMS_PER_CHAIN = 128
_TERMS_PER_CHAIN_WIDE = 64


def _hamming_chain(query_words, group):
    """``[batch, W]``, ``[W, items, bpc]`` -> ``[batch, bpc]`` uint32 minimum over the items."""
    minimum = None
    for item in range(group.shape[1]):
        distance = None
        for word in range(group.shape[0]):
            bits = lax.population_count(query_words[:, word, None] ^ group[word, item][None, :])
            distance = bits if distance is None else distance + bits
        minimum = distance if minimum is None else jnp.minimum(minimum, distance)
    return minimum


def _hamming_pass(query_words, chunk):
    """Block minima of Hamming distances: ``[batch, W]``, ``[W, 64, bpc]`` -> ``[batch, bpc]`` float32."""
    num_words, num_items, blocks_per_chunk = chunk.shape
    terms = _TERMS_PER_CHAIN if num_words <= 2 else _TERMS_PER_CHAIN_WIDE
    group = min(num_items, _engine.power_of_two_at_most(terms // num_words))
    groups = chunk.reshape(num_words, num_items // group, group, blocks_per_chunk)
    minimum = _hamming_chain(query_words, groups[:, 0])
    if groups.shape[1] > 1:
        minimum = lax.fori_loop(
            1, groups.shape[1],
            lambda index, running: jnp.minimum(
                running, _hamming_chain(query_words, lax.dynamic_index_in_dim(groups, index, 1, False))
            ),
            minimum,
        )
    return minimum.astype(jnp.float32)


def _hamming_items(query_words, codes):
    """``[batch, W]``, ``[batch, C, W]`` -> ``[batch, C]`` float32 Hamming distances."""
    bits = lax.population_count(query_words[:, None, :] ^ codes)
    return bits.astype(jnp.int32).sum(-1).astype(jnp.float32)


def _hamming_knn_layout(query_words, planes, blocks, num_valid, *, k, num_bits):
    distances, ids = _engine.search_prepared(
        query_words, planes, blocks, num_valid, k=k, pass_fn=_hamming_pass,
        item_fn=_hamming_items, columns=blocks.shape[-1], pad_distance=num_bits + 1,
        distance_dtype=jnp.int32,
    )
    return distances, ids


def knn_of_words(query_words, database_words, num_valid, *, k, num_bits):
    planes, blocks = _engine.prepare(database_words)
    return _hamming_knn_layout(query_words, planes, blocks, num_valid, k=k, num_bits=num_bits)


@jax.jit
def prepare_hamming_database(database_bytes):
    """Lays packed codes out for the block pass once (used by :class:`jaxretrieval.index.HammingIndex`).

    Returns ``(planes, blocks)``; pass them to :func:`hamming_knn_prepared`. Costs about twice the
    database's memory (two copies in 32-bit words: one transposed for the block pass, one in item
    order for gathering candidates), once, instead of once per search.
    """
    return _engine.prepare(to_words(check_packed("database", database_bytes)))


@functools.partial(jax.jit, static_argnames=("k", "num_bits"))
def _hamming_knn_prepared_jit(query_bytes, planes, blocks, num_valid, *, k, num_bits):
    _engine.trace_counts["hamming_knn_prepared"] += 1
    return _hamming_knn_layout(
        to_words(query_bytes), planes, blocks, num_valid, k=k, num_bits=num_bits
    )


@functools.partial(jax.jit, static_argnames=("shift",))
def _ranking_keys(query_words, database_words, *, shift):
    """``[q, n]`` uint32 keys ``distance << shift | index``, unique per row (XOR + popcount, fused)."""
    distances = jnp.zeros((query_words.shape[0], database_words.shape[0]), jnp.uint32)
    for word in range(query_words.shape[1]):  # few words (2 for 64 bits): unrolled and fused
        distances += lax.population_count(query_words[:, word, None] ^ database_words[None, :, word])
    index = lax.broadcasted_iota(jnp.uint32, distances.shape, 1)
    return (distances << shift) | index


def _key_shift(num_items: int, num_bits: int) -> int | None:
    """Bits for the index in a 32-bit ranking key, or None when distance and index do not fit."""
    shift = max(1, (num_items - 1).bit_length())
    return shift if shift + num_bits.bit_length() <= 32 else None


def _sorted_knn(query_bytes, database_words, num_items: int, k: int, *, num_bits: int, shift: int, num_threads: int):
    """Exact top ``k`` by sorting every item's key, query chunk by query chunk (numpy, host threads)."""
    rows = int(np.clip(_engine.power_of_two_at_most(_SORT_CHUNK_BYTES // (4 * num_items)), 1, 512))
    query_words = np.asarray(to_words(query_bytes))
    num_queries, kept = query_words.shape[0], min(k, num_items)

    def rank(start: int) -> np.ndarray:
        chunk = np.zeros((rows, query_words.shape[1]), np.uint32)
        count = min(rows, num_queries - start)
        chunk[:count] = query_words[start : start + count]
        keys = np.asarray(_ranking_keys(chunk, database_words, shift=shift))[:count]
        if kept < num_items:  # a linear-time selection first: only the k best get sorted
            keys = np.partition(keys, kept - 1, axis=1)[:, :kept]
        return np.sort(keys, axis=1)

    keys = _threads.map_on_threads(rank, range(0, num_queries, rows), num_threads)
    keys = keys[0] if len(keys) == 1 else np.concatenate(keys or [np.zeros((0, kept), np.uint32)])
    # Distance and index fit 31 bits each: views as int32, no copy.
    distances = np.right_shift(keys, np.uint32(shift)).view(np.int32)
    indices = np.bitwise_and(keys, np.uint32((1 << shift) - 1), out=keys).view(np.int32)
    if kept < k:
        distances = np.pad(distances, ((0, 0), (0, k - kept)), constant_values=num_bits + 1)
        indices = np.pad(indices, ((0, 0), (0, k - kept)), constant_values=-1)
    return distances, indices


def ranking(queries, prepared, num_items: int, k: int, *, num_bits: int, num_threads: int):
    """:func:`hamming_knn_prepared` as host numpy arrays ``(distances, indices)`` (what the metrics
    read): the sorting path never leaves the host."""
    planes, blocks = prepared
    shift = _key_shift(num_items, num_bits)
    # Once k reaches the number of blocks the blocked engine keeps every block and gathers every item:
    # sorting keys is then faster (numpy's sort of uint32 against XLA's top_k over all items).
    if shift is not None and k >= blocks.shape[0] and is_concrete(queries, blocks):
        # The layout's item-order copy holds the database's words (plus padding copies at the end).
        database_words = blocks.reshape(-1, blocks.shape[-1])[:num_items]
        return _sorted_knn(queries, database_words, num_items, k, num_bits=num_bits, shift=shift, num_threads=num_threads)
    search_padded = lambda padded: _hamming_knn_prepared_jit(
        padded, planes, blocks, num_items, k=k, num_bits=num_bits
    )
    return _threads.search_queries(search_padded, queries, num_threads)


def hamming_knn_prepared(
    queries, prepared, num_items: int, k: int, *, num_bits: int, num_threads: int | None = None
):
    """:func:`hamming_knn` over a database laid out by :func:`prepare_hamming_database`.

    Args:
      queries: ``[num_queries, num_bytes]`` ``uint8`` packed codes.
      prepared: the ``(planes, blocks)`` pair.
      num_items: the number of real database items (the layout is padded).
      k, num_bits, num_threads: as :func:`hamming_knn`.
    """
    k = check_k(k)
    queries = check_packed("queries", queries)
    num_threads = _threads.check_num_threads(num_threads, prepared[0])
    distances, indices = ranking(queries, prepared, num_items, k, num_bits=num_bits, num_threads=num_threads)
    return jnp.asarray(distances), jnp.asarray(indices)


def hamming_knn(
    queries, database, k: int, *, num_bits: int | None = None, num_threads: int | None = None
):
    """Exact k nearest neighbours in Hamming distance, ties by ascending database index.

    Same answers as faiss ``IndexBinaryFlat.search``. The database is scanned in chunks with per-block
    lower bounds (see :mod:`jaxretrieval.search._engine`), so the search's temporary memory stays a
    few MiB, below the size of a million-item database, whatever the number of queries; a deep
    ranking (``k`` at least the database's number of 64-item blocks, outside a trace) sorts unique
    keys on the host instead, in query chunks of at most 64 MiB of keys. Each call first lays the
    database out (:func:`prepare_hamming_database`, about twice the database's memory while the call
    runs); to search one database many times, lay it out once with
    :class:`jaxretrieval.index.HammingIndex` or :func:`hamming_knn_prepared`. On the CPU the queries are split into
    chunks searched concurrently by ``num_threads`` host threads (one per core by default); the
    result does not depend on the split. One compilation per query shape (with one thread: the query
    count rounded up to a power of two, at least 8; with several: the chunk size, a power of two
    from 8 to 512), database shape, ``k`` and ``num_bits``.

    Args:
      queries: ``[num_queries, num_bytes]`` ``uint8`` packed codes (:func:`pack_codes`).
      database: ``[num_database, num_bytes]`` ``uint8`` packed codes, ``num_database >= 1``.
      k: number of neighbours, a positive int; may exceed ``num_database``.
      num_bits: code length; default ``8 * num_bytes``. Only used for the padding distance.
      num_threads: host threads that search query chunks concurrently; ``None`` (default): one per
        available core when the database is on the CPU, one on an accelerator or under a trace.

    Returns:
      ``(distances, indices)``, both ``[num_queries, k]`` int32: distances ascending; where ``k``
      exceeds the database the tail holds index ``-1`` and distance ``num_bits + 1``.

    Raises:
      TypeError: codes are not ``uint8``, or ``k`` or ``num_threads`` is not an int.
      ValueError: ``k <= 0``, ``num_threads < 1``, empty database, shapes that are not
        ``[n, num_bytes]`` or disagree.

    Example:
      >>> database = pack_codes(np.array([[1, 1, 1, 1], [-1, 1, 1, 1], [1, 1, 1, 1]]))
      >>> query = pack_codes(np.array([[1, 1, 1, -1]]))
      >>> distances, indices = hamming_knn(query, database, k=4)
      >>> distances
      Array([[1, 1, 2, 9]], dtype=int32)
      >>> indices
      Array([[ 0,  2,  1, -1]], dtype=int32)
    """
    k = check_k(k)
    queries, database, num_bits = check_queries_database(queries, database, num_bits)
    return hamming_knn_prepared(
        queries, prepare_hamming_database(database), database.shape[0], k, num_bits=num_bits,
        num_threads=num_threads,
    )


def hamming_range_search(queries, database, radius: int):
    """All database items within Hamming distance ``<= radius`` (inclusive) of each query.

    The hashing papers' "Hamming radius 2" lookup. Results come in a CSR layout like faiss
    ``range_search``: the items of query ``i`` are ``indices[lims[i]:lims[i + 1]]`` with their
    ``distances``, in ascending database index. Note faiss's binary ``range_search`` keeps
    ``distance < radius`` (strict); ``hamming_range_search(q, d, r)`` equals faiss with ``r + 1``.
    Work proceeds in ``256 x 16,384`` tiles, so memory is bounded by a tile plus the result.

    Args:
      queries: ``[num_queries, num_bytes]`` ``uint8`` packed codes.
      database: ``[num_database, num_bytes]`` ``uint8`` packed codes.
      radius: non-negative int.

    Returns:
      ``(lims, distances, indices)`` numpy arrays: ``lims`` ``[num_queries + 1]`` int64,
      ``distances`` and ``indices`` ``[lims[-1]]`` int32.

    Example:
      >>> database = pack_codes(np.array([[1, 1, 1], [-1, -1, -1], [1, 1, -1]]))
      >>> lims, distances, indices = hamming_range_search(database[:1], database, 1)
      >>> lims, distances, indices
      (array([0, 2]), array([0, 1], dtype=int32), array([0, 2], dtype=int32))
    """
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)):
        raise TypeError(f"radius must be an int, got {type(radius).__name__} {radius!r}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    queries, database, _ = check_queries_database(queries, database, None)
    return _engine.range_search(
        distance_words, to_words(queries), to_words(database), int(radius)
    )

