"""Exact Hamming and product-quantization (PQ) search in JAX.

Codes are ``+-1`` (or real, binarised at 0) for the math and packed bytes for storage and search:
:func:`pack_codes` turns ``[n, num_bits]`` codes into ``[n, ceil(num_bits / 8)]`` ``uint8`` bytes,
bit ``i`` of a code stored in byte ``i // 8`` at bit position ``7 - i % 8`` (most significant bit
first), a bit being 1 where the code is ``>= 0``. This is exactly ``np.packbits(codes >= 0, axis=1)``
(``bitorder="big"``), the layout faiss ``IndexBinaryFlat`` takes, so packed codes go to and from faiss
without conversion.

Every search here returns **distances** (smaller is nearer) in ascending order, ties broken by ascending
database index, which is exactly the order of faiss ``IndexBinaryFlat`` / ``IndexPQ``.

How the exact k-NN is fast: the database is laid out in blocks of 64 consecutive items and one pass
computes, per query, only the *minimum* distance inside each block (XOR + popcount + min, fused, no
``[queries, database]`` matrix ever stored). If blocks are ranked by ``(block minimum, block index)``,
the exact top ``k`` items (ties by index) lie inside the ``k`` best blocks: each of those blocks holds
one item that ranks before any item of a block left out. The same argument is applied again to
coarser super-blocks (to rank fewer blocks) and to finer sub-blocks (to rank fewer items), so the final
``lax.top_k`` runs over a few thousand candidates instead of the whole database. Queries are padded to
a power-of-two bucket (no recompilation for a new query count inside a bucket) and processed in
batches sized so that the temporary memory stays a few MiB whatever the query count.

XLA:CPU runs one such search on about one core. On the CPU the queries are therefore cut into chunks
(powers of two from 8 to 512) that host threads search concurrently, one thread per available core
unless ``num_threads`` says otherwise; every query's answer is the same whatever the split.
"""
from __future__ import annotations

import collections
import concurrent.futures
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "pack_codes",
    "unpack_codes",
    "hamming_distance",
    "hamming_knn",
    "hamming_range_search",
    "pq_encode",
    "pq_distance_tables",
    "pq_knn",
    "pq_range_search",
    "prepare_hamming_database",
    "hamming_knn_prepared",
    "prepare_pq_database",
    "pq_knn_prepared",
    "sharded_hamming_knn",
    "sharded_pq_knn",
]

# Items per block of the lower-bound pass. 64 items x 2 words keeps the fused min-chain short enough
# for LLVM to vectorise it over blocks.
_ITEMS_PER_BLOCK = 64
# Blocks per database chunk of the pass: 8,192 items (64 KiB of 64-bit codes) stay in cache while a
# whole query batch is scored against them.
_BLOCKS_PER_CHUNK = 128
_BLOCKS_PER_SUPERBLOCK = 16
_ITEMS_PER_SUBBLOCK = 8
# Target temporary memory of one query batch (block minima + gathered candidates).
_BATCH_BYTES = 1 << 20
_MAX_QUERY_BATCH = 32
# Host threads: XLA:CPU runs one search on about one core, so on the CPU the queries are cut into
# chunks (powers of two up to 512, one compiled shape each) that run concurrently, one per core.
# A chunk costs about as much as this many more queries (dispatch, padding, the final merge), which
# decides between fewer large chunks and a better balance of many small ones.
_MIN_QUERY_CHUNK = 8
_MAX_QUERY_CHUNK = 512
_CHUNK_OVERHEAD_QUERIES = 32
_PQ_TABLE_BYTES = 32 << 10

# Number of times each jitted search has been traced (= compiled), by name. Tests use it to check
# that a new query count inside a bucket does not recompile; it does not depend on jax internals.
trace_counts: collections.Counter = collections.Counter()


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be a Python int, got {type(k).__name__} {k!r}")
    if k <= 0:
        raise ValueError(f"k must be positive, got k={k}")
    return int(k)


def _check_packed(name: str, packed) -> jax.Array:
    packed = jnp.asarray(packed)
    if packed.dtype != jnp.uint8:
        raise TypeError(
            f"{name} must be packed uint8 codes (see pack_codes), got dtype {packed.dtype} "
            f"with shape {packed.shape}"
        )
    if packed.ndim != 2:
        raise ValueError(f"{name} must have shape [n, num_bytes], got shape {packed.shape}")
    return packed


def _check_queries_database(queries, database, num_bits):
    queries = _check_packed("queries", queries)
    database = _check_packed("database", database)
    if queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"queries and database must have the same number of bytes per code, got queries "
            f"{queries.shape} and database {database.shape}"
        )
    if database.shape[0] == 0:
        raise ValueError(f"database is empty (shape {database.shape}); add codes before searching")
    if queries.shape[1] == 0:
        raise ValueError(f"codes have zero bytes (queries {queries.shape})")
    num_bytes = queries.shape[1]
    if num_bits is None:
        num_bits = 8 * num_bytes
    elif not 8 * (num_bytes - 1) < num_bits <= 8 * num_bytes:
        raise ValueError(
            f"num_bits={num_bits} does not match {num_bytes} bytes per packed code "
            f"(expected {8 * (num_bytes - 1) + 1}..{8 * num_bytes})"
        )
    return queries, database, int(num_bits)


# ----------------------------------------------------------------------------------------------
# Packing
# ----------------------------------------------------------------------------------------------


def pack_codes(codes) -> jax.Array:
    """Packs real or ``+-1`` codes into bytes, bit = 1 where the code is ``>= 0``.

    Args:
      codes: ``[n, num_bits]`` real, integer or boolean codes (booleans: ``True`` is bit 1).

    Returns:
      ``[n, ceil(num_bits / 8)]`` ``uint8``: bit ``i`` in byte ``i // 8`` at position ``7 - i % 8``
      (most significant first), trailing bits of the last byte zero; identical to
      ``np.packbits(codes >= 0, axis=1)`` and to what faiss ``IndexBinaryFlat`` expects.

    Raises:
      ValueError: ``codes`` is not 2-D or (when concrete) contains NaN.

    Example:
      >>> import numpy as np
      >>> pack_codes(np.array([[1, -1, -1, -1, -1, -1, -1, 1, 1]]))
      Array([[129, 128]], dtype=uint8)
    """
    codes = jnp.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must have shape [n, num_bits], got shape {codes.shape}")
    if _is_concrete(codes) and jnp.issubdtype(codes.dtype, jnp.floating):
        if bool(jnp.isnan(codes).any()):
            raise ValueError(f"codes of shape {codes.shape} contain NaN; cannot binarise them")
    bits = codes if codes.dtype == jnp.bool_ else codes >= 0
    num_bits = bits.shape[1]
    num_bytes = -(-num_bits // 8)
    bits = jnp.pad(bits, ((0, 0), (0, 8 * num_bytes - num_bits)))
    weights = jnp.asarray([128, 64, 32, 16, 8, 4, 2, 1], jnp.uint8)
    return (bits.reshape(bits.shape[0], num_bytes, 8).astype(jnp.uint8) * weights).sum(
        -1, dtype=jnp.uint8
    )


def unpack_codes(packed, num_bits: int) -> jax.Array:
    """Inverse of :func:`pack_codes`: ``[n, num_bytes]`` ``uint8`` -> ``[n, num_bits]`` int8 ``+-1``.

    Example:
      >>> unpack_codes(np.array([[129, 128]], np.uint8), 9)
      Array([[ 1, -1, -1, -1, -1, -1, -1,  1,  1]], dtype=int8)
    """
    packed = _check_packed("packed", packed)
    if not 8 * (packed.shape[1] - 1) < num_bits <= 8 * packed.shape[1]:
        raise ValueError(
            f"num_bits={num_bits} does not match packed codes of shape {packed.shape}"
        )
    shifts = jnp.arange(7, -1, -1, dtype=jnp.uint8)
    bits = (packed[:, :, None] >> shifts) & 1
    bits = bits.reshape(packed.shape[0], -1)[:, :num_bits].astype(jnp.int8)
    return 2 * bits - 1


def _to_words(packed: jax.Array) -> jax.Array:
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
def _hamming_distance_words(query_words, database_words):
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
    queries = _check_packed("queries", queries)
    database = _check_packed("database", database)
    if queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"queries {queries.shape} and database {database.shape} differ in bytes per code"
        )
    return _hamming_distance_words(_to_words(queries), _to_words(database))


# ----------------------------------------------------------------------------------------------
# The blocked exact k-NN engine (shared by Hamming and PQ search)
# ----------------------------------------------------------------------------------------------


class _Layout:
    """Static geometry of a database laid out for the block pass."""

    def __init__(self, num_items: int):
        self.num_items = num_items
        num_blocks = -(-num_items // _ITEMS_PER_BLOCK)
        self.blocks_per_chunk = min(_BLOCKS_PER_CHUNK, num_blocks)
        self.num_chunks = -(-num_blocks // self.blocks_per_chunk)
        self.num_blocks = self.num_chunks * self.blocks_per_chunk
        self.num_padded = self.num_blocks * _ITEMS_PER_BLOCK


def _prepare(columns: jax.Array):
    """``[n, C]`` per-item columns -> (planes ``[chunks, C, 64, blocks_per_chunk]``, blocks ``[blocks, 64, C]``).

    The tail is padded with copies of the last item: a block's minimum then never comes from an item
    that does not exist (the copy ties with a real item of the same block), and items at or past
    ``num_valid`` are masked out of the final ranking.
    """
    layout = _Layout(columns.shape[0])
    pad = layout.num_padded - columns.shape[0]
    padded = jnp.concatenate([columns, jnp.broadcast_to(columns[-1:], (pad, columns.shape[1]))])
    blocks = padded.reshape(layout.num_blocks, _ITEMS_PER_BLOCK, columns.shape[1])
    planes = padded.reshape(
        layout.num_chunks, layout.blocks_per_chunk, _ITEMS_PER_BLOCK, columns.shape[1]
    ).transpose(0, 3, 2, 1)
    return planes, blocks


def _select(values, candidates, count):
    """The ``count`` best candidates by ``(value, candidate id)``; ``values`` are in ascending id order.

    Returns the chosen ids sorted ascending (so they can be expanded again in id order).
    """
    _, positions = lax.top_k(-values, count)
    return jnp.sort(jnp.take_along_axis(candidates, positions, axis=1), axis=1)


def _expand(units, group):
    """Ids of the ``group`` children of each unit, ascending: ``[q, u] -> [q, u * group]``."""
    children = units[:, :, None] * group + jnp.arange(group, dtype=units.dtype)
    return children.reshape(units.shape[0], -1)


def _block_minima(query_repr, planes, num_valid, pass_fn):
    """``[batch, num_blocks]`` float32 block minima; blocks past ``num_valid`` items are ``inf``."""
    batch = query_repr.shape[0]
    minima = lax.map(lambda chunk: pass_fn(query_repr, chunk), planes)  # [chunks, batch, bpc]
    num_blocks = minima.shape[0] * minima.shape[2]
    minima = minima.transpose(1, 0, 2).reshape(batch, num_blocks)
    num_valid_blocks = (num_valid + _ITEMS_PER_BLOCK - 1) // _ITEMS_PER_BLOCK
    return jnp.where(jnp.arange(num_blocks) < num_valid_blocks, minima, jnp.inf)


def _top_items(query_repr, minima, blocks, num_valid, *, k, item_fn):
    """Exact top ``k`` from block minima; returns float distances (inf = no item) and int32 ids."""
    batch, num_blocks = minima.shape
    num_selected = min(k, num_blocks)
    num_super = num_blocks // _BLOCKS_PER_SUPERBLOCK
    block_ids = jnp.broadcast_to(jnp.arange(num_blocks, dtype=jnp.int32), (batch, num_blocks))
    if num_blocks % _BLOCKS_PER_SUPERBLOCK == 0 and num_super > num_selected:
        super_minima = minima.reshape(batch, num_super, _BLOCKS_PER_SUPERBLOCK).min(-1)
        chosen_super = _select(super_minima, block_ids[:, :num_super], num_selected)
        candidate_blocks = _expand(chosen_super, _BLOCKS_PER_SUPERBLOCK)
        chosen_blocks = _select(
            jnp.take_along_axis(minima, candidate_blocks, axis=1), candidate_blocks, num_selected
        )
    else:
        chosen_blocks = _select(minima, block_ids, num_selected)

    codes = blocks[chosen_blocks]  # [batch, selected, 64, C]
    codes = codes.reshape(batch, num_selected * _ITEMS_PER_BLOCK, codes.shape[-1])
    item_ids = _expand(chosen_blocks, _ITEMS_PER_BLOCK)
    distances = jnp.where(item_ids < num_valid, item_fn(query_repr, codes), jnp.inf)

    num_final = min(k, item_ids.shape[1])
    num_sub = item_ids.shape[1] // _ITEMS_PER_SUBBLOCK
    if num_sub > num_final:
        # Rank sub-blocks of 8 first so the last top_k sees ~8k candidates, not 64k.
        sub_minima = distances.reshape(batch, num_sub, _ITEMS_PER_SUBBLOCK).min(-1)
        sub_ids = jnp.broadcast_to(jnp.arange(num_sub, dtype=jnp.int32), (batch, num_sub))
        item_positions = _expand(_select(sub_minima, sub_ids, num_final), _ITEMS_PER_SUBBLOCK)
        distances = jnp.take_along_axis(distances, item_positions, axis=1)
        item_ids = jnp.take_along_axis(item_ids, item_positions, axis=1)
    negative, positions = lax.top_k(-distances, num_final)
    return -negative, jnp.take_along_axis(item_ids, positions, axis=1)


def _query_bucket(num_queries: int) -> int:
    return max(8, 1 << max(0, num_queries - 1).bit_length())


def _power_of_two_at_most(value: int) -> int:
    return 1 << (max(1, value).bit_length() - 1)


def _query_batches(
    bucket: int, num_blocks: int, k: int, columns: int, max_pass_batch: int
) -> tuple[int, int]:
    """(queries per block-minima pass, queries per selection step), powers of two.

    The pass wants many queries per database chunk (fewer, larger fused loops); the selection's
    gathered candidates grow with ``k``, so it runs over smaller slices of the same batch.
    """
    pass_batch = min(bucket, max_pass_batch,
                     _power_of_two_at_most(_BATCH_BYTES // (4 * num_blocks)))
    candidate_bytes = 8 * min(k, num_blocks) * _ITEMS_PER_BLOCK * (columns + 1)
    select_batch = min(pass_batch, _power_of_two_at_most(_BATCH_BYTES // candidate_bytes))
    return pass_batch, select_batch


def _search_prepared(
    queries, planes, blocks, num_valid, *, k, pass_fn, item_fn, columns, pad_distance,
    distance_dtype=jnp.float32, query_fn=lambda q: q, max_pass_batch=_MAX_QUERY_BATCH,
):
    """Top ``k`` for all (bucket-padded) queries, in query batches under ``lax.map``.

    ``query_fn`` turns a batch of queries into what ``pass_fn`` / ``item_fn`` take (PQ: the lookup
    tables), so that only one batch of it is alive at a time. Each batch is finished (padding,
    ``-1`` ids) inside the loop so the stacked loop output is the result itself, not a copy of it.
    """
    bucket = queries.shape[0]
    pass_batch, select_batch = _query_batches(
        bucket, blocks.shape[0], k, columns, _power_of_two_at_most(max_pass_batch)
    )
    steps = pass_batch // select_batch

    def select(step_inputs):
        distances, ids = _top_items(*step_inputs, blocks, num_valid, k=k, item_fn=item_fn)
        distances, ids = _finish(distances, ids, num_valid, k, pad_distance)
        return distances.astype(distance_dtype), ids

    def search_batch(query_batch):
        query_repr = query_fn(query_batch)
        minima = _block_minima(query_repr, planes, num_valid, pass_fn)
        split = lambda x: x.reshape(steps, select_batch, *x.shape[1:])
        distances, ids = lax.map(select, (split(query_repr), split(minima)))
        return distances.reshape(pass_batch, k), ids.reshape(pass_batch, k)

    batched = queries.reshape(bucket // pass_batch, pass_batch, *queries.shape[1:])
    distances, ids = lax.map(search_batch, batched)
    return distances.reshape(bucket, k), ids.reshape(bucket, k)


def _finish(distances, ids, num_valid, k, pad_distance):
    """Marks missing results (``-1`` / ``pad_distance``) and pads the columns up to ``k``."""
    missing = ~jnp.isfinite(distances) | (ids >= num_valid)
    distances = jnp.where(missing, pad_distance, distances)
    ids = jnp.where(missing, -1, ids)
    extra = k - ids.shape[1]
    if extra > 0:
        distances = jnp.pad(distances, ((0, 0), (0, extra)), constant_values=pad_distance)
        ids = jnp.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
    return distances, ids


def _pad_queries(queries: jax.Array, size: int | None = None) -> jax.Array:
    """Pads the query rows with zeros up to ``size`` (default: the power-of-two bucket)."""
    size = _query_bucket(queries.shape[0]) if size is None else size
    return jnp.pad(queries, ((0, size - queries.shape[0]),) + ((0, 0),) * (queries.ndim - 1))


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset and CPU affinity (containers)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_num_threads(num_threads, reference) -> int:
    """The number of host threads to search with; ``None``: one per core on the CPU, else one."""
    if num_threads is None:
        if not _is_concrete(reference):
            return 1
        if isinstance(reference, jax.Array):
            platforms = {device.platform for device in reference.devices()}
        else:  # host data goes to the default device
            platforms = {jax.default_backend()}
        return _available_cores() if platforms == {"cpu"} else 1
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
        raise TypeError(f"num_threads must be an int or None, got {type(num_threads).__name__}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return int(num_threads)


def _query_chunk(num_queries: int, num_threads: int) -> int:
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


def _search_queries(search_padded, queries: jax.Array, num_threads: int):
    """Runs ``search_padded(padded_queries) -> (distances, ids)`` over all queries, sliced back.

    With one thread (accelerators, or under a trace) the queries are padded to their bucket and
    searched in one call; with several, chunks run concurrently on a thread pool (each thread
    blocks on its own result, which is what lets XLA:CPU run them side by side).
    """
    num_queries = queries.shape[0]
    if num_threads == 1 or not _is_concrete(queries):
        distances, ids = search_padded(_pad_queries(queries))
        return distances[:num_queries], ids[:num_queries]
    size = _query_chunk(num_queries, num_threads)
    padded = _pad_queries(queries, -(-num_queries // size) * size)
    chunks = [padded[start : start + size] for start in range(0, padded.shape[0], size)]
    if len(chunks) == 1:
        results = [search_padded(chunks[0])]
    else:
        results = list(
            _thread_pool(num_threads).map(
                lambda chunk: jax.block_until_ready(search_padded(chunk)), chunks
            )
        )
    distances = jnp.concatenate([distances for distances, _ in results])
    ids = jnp.concatenate([ids for _, ids in results])
    return distances[:num_queries], ids[:num_queries]


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
    group = min(num_items, _power_of_two_at_most(terms // num_words))
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
    distances, ids = _search_prepared(
        query_words, planes, blocks, num_valid, k=k, pass_fn=_hamming_pass,
        item_fn=_hamming_items, columns=blocks.shape[-1], pad_distance=num_bits + 1,
        distance_dtype=jnp.int32,
    )
    return distances, ids


def _hamming_knn_words(query_words, database_words, num_valid, *, k, num_bits):
    planes, blocks = _prepare(database_words)
    return _hamming_knn_layout(query_words, planes, blocks, num_valid, k=k, num_bits=num_bits)


@jax.jit
def prepare_hamming_database(database_bytes):
    """Lays packed codes out for the block pass once (used by :class:`jaxretrieval.index.HammingIndex`).

    Returns ``(planes, blocks)``; pass them to :func:`hamming_knn_prepared`. Costs about twice the
    database's memory (two copies in 32-bit words: one transposed for the block pass, one in item
    order for gathering candidates), once, instead of once per search.
    """
    return _prepare(_to_words(_check_packed("database", database_bytes)))


@functools.partial(jax.jit, static_argnames=("k", "num_bits"))
def _hamming_knn_prepared_jit(query_bytes, planes, blocks, num_valid, *, k, num_bits):
    trace_counts["hamming_knn_prepared"] += 1
    return _hamming_knn_layout(
        _to_words(query_bytes), planes, blocks, num_valid, k=k, num_bits=num_bits
    )


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
    k = _check_k(k)
    queries = _check_packed("queries", queries)
    planes, blocks = prepared
    search_padded = lambda padded: _hamming_knn_prepared_jit(
        padded, planes, blocks, num_items, k=k, num_bits=num_bits
    )
    return _search_queries(search_padded, queries, _check_num_threads(num_threads, planes))


def hamming_knn(
    queries, database, k: int, *, num_bits: int | None = None, num_threads: int | None = None
):
    """Exact k nearest neighbours in Hamming distance, ties by ascending database index.

    Same answers as faiss ``IndexBinaryFlat.search``. The database is scanned in chunks with per-block
    lower bounds (see the module docstring), so the search's temporary memory stays a few MiB, below
    the size of a million-item database, whatever the number of queries. Each call first lays the
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
    k = _check_k(k)
    queries, database, num_bits = _check_queries_database(queries, database, num_bits)
    return hamming_knn_prepared(
        queries, prepare_hamming_database(database), database.shape[0], k, num_bits=num_bits,
        num_threads=num_threads,
    )


# ----------------------------------------------------------------------------------------------
# Hamming range search
# ----------------------------------------------------------------------------------------------

_RANGE_QUERY_BATCH = 256
_RANGE_DATABASE_CHUNK = 16384


def _range_search(distance_fn, queries, database, radius):
    """CSR results of all ``distance <= radius`` pairs, scanning ``256 x 16,384`` tiles.

    ``distance_fn(query_tile, database_chunk)`` returns the tile's distances.
    """
    num_queries, num_database = queries.shape[0], database.shape[0]
    chunk = min(_RANGE_DATABASE_CHUNK, num_database)
    found_queries, found_indices, found_distances = [], [], []
    for query_start in range(0, num_queries, _RANGE_QUERY_BATCH):
        query_block = queries[query_start : query_start + _RANGE_QUERY_BATCH]
        rows = query_block.shape[0]
        query_block = jnp.pad(
            query_block, ((0, _RANGE_QUERY_BATCH - rows),) + ((0, 0),) * (queries.ndim - 1)
        )
        for covered in range(0, num_database, chunk):
            # The last chunk is shifted back (overlapping) to keep one compiled shape; items it
            # shares with the previous chunk are dropped below.
            start = min(covered, num_database - chunk)
            distances = np.asarray(distance_fn(query_block, database[start : start + chunk]))
            inside = distances[:rows] <= radius
            inside[:, : covered - start] = False
            row, column = np.nonzero(inside)
            found_queries.append(row + query_start)
            found_indices.append(column + start)
            found_distances.append(distances[row, column])
    found_queries = np.concatenate(found_queries)
    found_indices = np.concatenate(found_indices)
    order = np.lexsort((found_indices, found_queries))
    lims = np.zeros(num_queries + 1, np.int64)
    lims[1:] = np.cumsum(np.bincount(found_queries, minlength=num_queries))
    return lims, np.concatenate(found_distances)[order], found_indices[order].astype(np.int32)


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
    queries, database, _ = _check_queries_database(queries, database, None)
    return _range_search(
        _hamming_distance_words, _to_words(queries), _to_words(database), int(radius)
    )


# ----------------------------------------------------------------------------------------------
# Product quantization
# ----------------------------------------------------------------------------------------------

_DISTANCES = ("spq", "squared_l2")


def _check_codebooks(codebooks) -> jax.Array:
    codebooks = jnp.asarray(codebooks)
    if codebooks.ndim != 3:
        raise ValueError(
            f"codebooks must have shape [num_books, num_words, word_dim], got {codebooks.shape}"
        )
    if not jnp.issubdtype(codebooks.dtype, jnp.floating):
        raise TypeError(f"codebooks must be floating point, got dtype {codebooks.dtype}")
    return codebooks.astype(jnp.float32)


def _check_features(name: str, features, codebooks: jax.Array) -> jax.Array:
    features = jnp.asarray(features)
    num_books, _, word_dim = codebooks.shape
    if features.ndim != 2 or features.shape[1] != num_books * word_dim:
        raise ValueError(
            f"{name} must have shape [n, num_books * word_dim] = [n, {num_books * word_dim}] for "
            f"codebooks {codebooks.shape}, got {features.shape}"
        )
    if not jnp.issubdtype(features.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point, got dtype {features.dtype}")
    if _is_concrete(features) and bool(jnp.isnan(features).any()):
        raise ValueError(f"{name} of shape {features.shape} contain NaN")
    return features.astype(jnp.float32)


def _check_distance(distance: str) -> str:
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
    return distance


def _squared_distances(features, codebooks):
    """``[n, M * L]``, ``[M, K, L]`` -> ``[n, M, K]`` squared distances per book (clamped at 0)."""
    num_books, _, word_dim = codebooks.shape
    parts = features.reshape(features.shape[0], num_books, word_dim)
    cross = jnp.einsum("nml,mkl->nmk", parts, codebooks, precision=lax.Precision.HIGHEST)
    squared = (
        jnp.sum(parts * parts, -1)[:, :, None] - 2.0 * cross + jnp.sum(codebooks**2, -1)[None]
    )
    return jnp.maximum(squared, 0.0)


def pq_distance_tables(queries, codebooks, *, distance: str = "spq") -> jax.Array:
    """Per-query lookup tables of asymmetric distance computation (ADC).

    .. math:: T_{q,m,k} = \\lVert x_{q,m} - c_{m,k} \\rVert_2 \\ (\\text{spq}) \\quad\\text{or}\\quad
       \\lVert x_{q,m} - c_{m,k} \\rVert_2^2 \\ (\\text{squared\\_l2})

    Args:
      queries: ``[num_queries, M * L]`` float features.
      codebooks: ``[M, K, L]`` float codebooks.
      distance: ``"spq"`` (unsquared, the SPQ reference) or ``"squared_l2"`` (faiss ``IndexPQ``).

    Returns:
      ``[num_queries, M, K]`` float32 distances (smaller is nearer).
    """
    _check_distance(distance)
    codebooks = _check_codebooks(codebooks)
    return _tables(_check_features("queries", queries, codebooks), codebooks, distance)


def _tables(queries, codebooks, distance):
    squared = _squared_distances(queries, codebooks)
    return jnp.sqrt(squared) if distance == "spq" else squared


@jax.jit
def _pq_encode_jit(features, codebooks):
    rows = 1024
    count = features.shape[0]
    padded = jnp.pad(features, ((0, -count % rows), (0, 0)))
    encode = lambda chunk: jnp.argmin(_squared_distances(chunk, codebooks), axis=-1)
    codes = lax.map(encode, padded.reshape(-1, rows, features.shape[1]))
    return codes.reshape(-1, codebooks.shape[0])[:count].astype(jnp.int32)


def pq_encode(features, codebooks) -> jax.Array:
    """Hard PQ assignment: per book, the index of the nearest codeword in squared distance.

    .. math:: i_m(x) = \\arg\\min_k \\lVert x_m - c_{m,k} \\rVert_2^2

    Args:
      features: ``[n, M * L]`` float features (``x_m`` is the m-th slice of length ``L``).
      codebooks: ``[M, K, L]`` float codebooks.

    Returns:
      ``[n, M]`` int32 codes in ``[0, K)``; ties go to the lowest codeword index.

    Example:
      >>> codebooks = np.array([[[0.0], [1.0]], [[0.0], [5.0]]])  # M=2 books, K=2 words, L=1
      >>> pq_encode(np.array([[0.9, 0.2], [0.1, 4.0]]), codebooks)
      Array([[1, 0],
             [0, 1]], dtype=int32)
    """
    codebooks = _check_codebooks(codebooks)
    features = _check_features("features", features, codebooks)
    return _pq_encode_jit(features, codebooks)


def _check_pq_codes(codes, codebooks: jax.Array) -> jax.Array:
    codes = jnp.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != codebooks.shape[0]:
        raise ValueError(
            f"codes must have shape [n, num_books] = [n, {codebooks.shape[0]}], got {codes.shape}"
        )
    if not jnp.issubdtype(codes.dtype, jnp.integer):
        raise TypeError(f"codes must be integers (from pq_encode), got dtype {codes.dtype}")
    if codes.shape[0] == 0:
        raise ValueError(f"codes (the database) is empty, shape {codes.shape}")
    if _is_concrete(codes) and codes.size:
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= codebooks.shape[1]:
            raise ValueError(
                f"codes must lie in [0, {codebooks.shape[1]}) for codebooks {codebooks.shape}, "
                f"found values in [{low}, {high}]"
            )
    return codes.astype(jnp.int32)


def _pq_pass(tables, chunk):
    """Block minima of ADC distances: ``[batch, M, K]``, ``[M, 64, bpc]`` -> ``[batch, bpc]``.

    Table lookups dominate here, so the chunk's ``[batch, 64, bpc]`` distances are formed (a small,
    cache-resident array) and reduced, which compiles much faster than an unrolled chain.
    """
    distance = None
    for book in range(chunk.shape[0]):  # the same summation order as _pq_items
        part = jnp.take(tables[:, book, :], chunk[book], axis=1)
        distance = part if distance is None else distance + part
    return distance.min(axis=1)


def _pq_items(tables, codes):
    """``[batch, M, K]``, ``[batch, C, M]`` -> ``[batch, C]``; same summation order as the pass."""
    distance = None
    for book in range(codes.shape[-1]):
        part = jnp.take_along_axis(tables[:, book, :], codes[..., book], axis=1)
        distance = part if distance is None else distance + part
    return distance


def _pq_knn_layout(queries, planes, blocks, codebooks, num_valid, *, k, distance):
    return _pq_tables_search(
        queries, planes, blocks, num_valid, k=k, table_shape=codebooks.shape[:2],
        query_fn=lambda batch: _tables(batch, codebooks, distance),
    )


def _pq_tables_search(queries, planes, blocks, num_valid, *, k, table_shape, query_fn=None):
    """ADC search with the ``[batch, M, K]`` tables that ``query_fn`` makes from a query batch
    (``None``: the queries are such tables already; the benchmark feeds faiss's own tables)."""
    num_books, num_words = table_shape
    return _search_prepared(
        queries, planes, blocks, num_valid, k=k, pass_fn=_pq_pass, item_fn=_pq_items,
        columns=blocks.shape[-1], pad_distance=jnp.inf,
        **({} if query_fn is None else {"query_fn": query_fn}),
        # Table lookups are random access: keep one pass batch's tables within ~32 KiB (L1).
        max_pass_batch=_PQ_TABLE_BYTES // (4 * num_books * num_words),
    )


def _pq_knn_codes(queries, codes, codebooks, num_valid, *, k, distance):
    planes, blocks = _prepare(codes)
    return _pq_knn_layout(queries, planes, blocks, codebooks, num_valid, k=k, distance=distance)


@jax.jit
def prepare_pq_database(codes):
    """Lays PQ codes out for the block pass once; see :func:`pq_knn_prepared`."""
    return _prepare(codes.astype(jnp.int32))


@functools.partial(jax.jit, static_argnames=("k", "distance"))
def _pq_knn_prepared_jit(queries, planes, blocks, codebooks, num_valid, *, k, distance):
    trace_counts["pq_knn_prepared"] += 1
    return _pq_knn_layout(queries, planes, blocks, codebooks, num_valid, k=k, distance=distance)


def pq_knn_prepared(
    queries, prepared, num_items: int, codebooks, k: int, *, distance="spq",
    num_threads: int | None = None,
):
    """:func:`pq_knn` over codes laid out by :func:`prepare_pq_database`."""
    k = _check_k(k)
    _check_distance(distance)
    codebooks = _check_codebooks(codebooks)
    queries = _check_features("queries", queries, codebooks)
    planes, blocks = prepared
    search_padded = lambda padded: _pq_knn_prepared_jit(
        padded, planes, blocks, codebooks, num_items, k=k, distance=distance
    )
    return _search_queries(search_padded, queries, _check_num_threads(num_threads, planes))


def pq_knn(
    queries, codes, codebooks, k: int, *, distance: str = "spq", num_threads: int | None = None
):
    """Exact k-NN over PQ codes by asymmetric distance (ADC), ties by ascending database index.

    .. math:: d(x, i) = \\sum_m T_{m, i_m}, \\quad T \\text{ from } :func:`pq_distance_tables`

    ``distance="squared_l2"`` ranks exactly as faiss ``IndexPQ``; ``"spq"`` (default) sums unsquared
    per-book distances, as the SPQ reference evaluation does. Same blocked engine as
    :func:`hamming_knn` (block lower bounds, bounded memory, query chunks on host threads; each call
    lays the codes out first, :class:`jaxretrieval.index.PQIndex` keeps that layout).

    Args:
      queries: ``[num_queries, M * L]`` float features.
      codes: ``[num_database, M]`` integer codes from :func:`pq_encode`.
      codebooks: ``[M, K, L]`` float codebooks.
      k: number of neighbours (positive int; may exceed ``num_database``).
      distance: ``"spq"`` or ``"squared_l2"``.
      num_threads: as :func:`hamming_knn`.

    Returns:
      ``(distances, indices)``: ``[num_queries, k]`` float32 ascending and int32; where ``k``
      exceeds the database, index ``-1`` and distance ``inf``.

    Example:
      >>> codebooks = np.array([[[0.0], [1.0]], [[0.0], [5.0]]])
      >>> codes = pq_encode(np.array([[0.0, 0.0], [1.0, 5.0], [1.0, 0.0]]), codebooks)
      >>> distances, indices = pq_knn(np.array([[1.0, 1.0]]), codes, codebooks, k=2,
      ...                             distance="squared_l2")
      >>> distances, indices
      (Array([[1., 2.]], dtype=float32), Array([[2, 0]], dtype=int32))
    """
    k = _check_k(k)
    _check_distance(distance)
    codebooks = _check_codebooks(codebooks)
    queries = _check_features("queries", queries, codebooks)
    codes = _check_pq_codes(codes, codebooks)
    return pq_knn_prepared(
        queries, prepare_pq_database(codes), codes.shape[0], codebooks, k, distance=distance,
        num_threads=num_threads,
    )


@functools.partial(jax.jit, static_argnames=("distance",))
def _pq_distance_tile(queries, codes, codebooks, *, distance):
    tables = _tables(queries, codebooks, distance)
    distance_sum = None
    for book in range(codes.shape[1]):  # same summation order as pq_knn
        part = jnp.take(tables[:, book, :], codes[:, book], axis=1)
        distance_sum = part if distance_sum is None else distance_sum + part
    return distance_sum


def pq_range_search(queries, codes, codebooks, radius: float, *, distance: str = "spq"):
    """All items with ADC distance ``<= radius`` of each query, CSR layout as
    :func:`hamming_range_search` (``distances`` float32, items in ascending index)."""
    _check_distance(distance)
    codebooks = _check_codebooks(codebooks)
    queries = _check_features("queries", queries, codebooks)
    codes = _check_pq_codes(codes, codebooks)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite number >= 0, got {radius}")
    tile = functools.partial(_pq_distance_tile, codebooks=codebooks, distance=distance)
    return _range_search(tile, queries, codes, float(radius))


# ----------------------------------------------------------------------------------------------
# Sharded search: the database split over a mesh axis
# ----------------------------------------------------------------------------------------------


def _merge_shards(distances, ids, axis, k):
    """Gathers every shard's ``[q, k]`` results and keeps the global top ``k``.

    Shards hold consecutive index ranges in device order and each shard's list is sorted by
    (distance, index), so concatenating in device order and taking a stable top-k keeps ties in
    ascending global index.
    """
    all_distances = lax.all_gather(distances, axis, axis=1, tiled=True)
    all_ids = lax.all_gather(ids, axis, axis=1, tiled=True)
    _, positions = lax.top_k(-all_distances.astype(jnp.float32), k)
    return (
        jnp.take_along_axis(all_distances, positions, axis=1),
        jnp.take_along_axis(all_ids, positions, axis=1),
    )


def _shard_offsets(axis, local_count, num_items):
    offset = lax.axis_index(axis) * local_count
    return offset, jnp.clip(num_items - offset, 0, local_count)


def _globalise(ids, offset):
    return jnp.where(ids >= 0, ids + offset, -1)


@functools.partial(jax.jit, static_argnames=("k", "num_bits", "mesh", "axis", "num_items"))
def _sharded_hamming_jit(query_bytes, database_bytes, *, k, num_bits, mesh, axis, num_items):
    trace_counts["sharded_hamming_knn"] += 1

    def local(query_bytes, database_bytes):
        offset, num_valid = _shard_offsets(axis, database_bytes.shape[0], num_items)
        distances, ids = _hamming_knn_words(
            _to_words(query_bytes), _to_words(database_bytes), num_valid, k=k, num_bits=num_bits
        )
        return _merge_shards(distances, _globalise(ids, offset), axis, k)

    spec = jax.sharding.PartitionSpec
    return jax.shard_map(
        local, mesh=mesh, in_specs=(spec(), spec(axis)), out_specs=(spec(), spec()),
        check_vma=False,  # the merged result is the same on every device (all-gather + top-k)
    )(query_bytes, database_bytes)


@functools.partial(jax.jit, static_argnames=("k", "distance", "mesh", "axis", "num_items"))
def _sharded_pq_jit(queries, codes, codebooks, *, k, distance, mesh, axis, num_items):
    trace_counts["sharded_pq_knn"] += 1

    def local(queries, codes, codebooks):
        offset, num_valid = _shard_offsets(axis, codes.shape[0], num_items)
        distances, ids = _pq_knn_codes(
            queries, codes, codebooks, num_valid, k=k, distance=distance
        )
        return _merge_shards(distances, _globalise(ids, offset), axis, k)

    spec = jax.sharding.PartitionSpec
    return jax.shard_map(
        local, mesh=mesh, in_specs=(spec(), spec(axis), spec()), out_specs=(spec(), spec()),
        check_vma=False,  # the merged result is the same on every device (all-gather + top-k)
    )(queries, codes, codebooks)


def _shard_rows(rows: jax.Array, mesh, axis: str) -> jax.Array:
    """Pads rows to a multiple of the axis size (copies of the last row) and shards them.

    Built from host data with ``make_array_from_callback`` so that it also works when the mesh spans
    several processes (each process passes the same rows and supplies its own shards).
    """
    if axis not in mesh.axis_names:
        raise ValueError(f"axis {axis!r} is not in the mesh axes {mesh.axis_names}")
    host_rows = np.asarray(rows)
    pad = -host_rows.shape[0] % mesh.shape[axis]
    host_rows = np.concatenate([host_rows, np.repeat(host_rows[-1:], pad, axis=0)])
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))
    return jax.make_array_from_callback(host_rows.shape, sharding, lambda index: host_rows[index])


def _replicate(array: jax.Array, mesh) -> jax.Array:
    host_array = np.asarray(array)
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.make_array_from_callback(host_array.shape, sharding, lambda index: host_array[index])


def sharded_hamming_knn(queries, database, k: int, *, mesh, axis: str = "data", num_bits=None):
    """:func:`hamming_knn` with the database split over the mesh axis ``axis`` (``jax.shard_map``).

    Each device ranks its consecutive slice of the database with the blocked engine; the per-device
    top ``k`` lists are all-gathered and merged with the same tie order, so the result is identical
    to :func:`hamming_knn` on one device (also across processes, given the same inputs on each).

    Args:
      queries, database, k, num_bits: as :func:`hamming_knn`.
      mesh: a ``jax.sharding.Mesh``.
      axis: the mesh axis that splits the database.

    Returns:
      ``(distances, indices)``, ``[num_queries, k]`` int32, replicated over the mesh.
    """
    k = _check_k(k)
    queries, database, num_bits = _check_queries_database(queries, database, num_bits)
    distances, ids = _sharded_hamming_jit(
        _replicate(_pad_queries(queries), mesh), _shard_rows(database, mesh, axis), k=k,
        num_bits=num_bits, mesh=mesh, axis=axis, num_items=database.shape[0],
    )
    return distances[: queries.shape[0]], ids[: queries.shape[0]]


def sharded_pq_knn(queries, codes, codebooks, k: int, *, mesh, axis="data", distance="spq"):
    """:func:`pq_knn` with the codes split over the mesh axis ``axis``; identical results.

    Returns:
      ``(distances, indices)``: ``[num_queries, k]`` float32 / int32, replicated over the mesh.
    """
    k = _check_k(k)
    _check_distance(distance)
    codebooks = _check_codebooks(codebooks)
    queries = _check_features("queries", queries, codebooks)
    codes = _check_pq_codes(codes, codebooks)
    distances, ids = _sharded_pq_jit(
        _replicate(_pad_queries(queries), mesh), _shard_rows(codes, mesh, axis),
        _replicate(codebooks, mesh), k=k, distance=distance, mesh=mesh, axis=axis,
        num_items=codes.shape[0],
    )
    return distances[: queries.shape[0]], ids[: queries.shape[0]]
