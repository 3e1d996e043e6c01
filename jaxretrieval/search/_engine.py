"""The blocked exact k-NN engine shared by Hamming and PQ search, and the tiled range-search scan.

How the exact k-NN is fast: the database is laid out in blocks of 64 consecutive items and one pass
computes, per query, only the *minimum* distance inside each block (fused, no ``[queries, database]``
matrix ever stored). If blocks are ranked by ``(block minimum, block index)``, the exact top ``k``
items (ties by index) lie inside the ``k`` best blocks: each of those blocks holds one item that
ranks before any item of a block left out. The same argument is applied again to coarser
super-blocks (to rank fewer blocks) and to finer sub-blocks (to rank fewer items), so the final
``lax.top_k`` runs over a few thousand candidates instead of the whole database. Queries are
processed in batches sized so that the temporary memory stays a few MiB whatever the query count.
"""
from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

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


# Number of times each jitted search has been traced (= compiled), by name. Tests use it to check
# that a new query count inside a bucket does not recompile; it does not depend on jax internals.
trace_counts: collections.Counter = collections.Counter()


class _Layout:
    """Static geometry of a database laid out for the block pass."""

    def __init__(self, num_items: int):
        self.num_items = num_items
        num_blocks = -(-num_items // _ITEMS_PER_BLOCK)
        self.blocks_per_chunk = min(_BLOCKS_PER_CHUNK, num_blocks)
        self.num_chunks = -(-num_blocks // self.blocks_per_chunk)
        self.num_blocks = self.num_chunks * self.blocks_per_chunk
        self.num_padded = self.num_blocks * _ITEMS_PER_BLOCK


def prepare(columns: jax.Array):
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


def power_of_two_at_most(value: int) -> int:
    return 1 << (max(1, value).bit_length() - 1)


def _query_batches(
    bucket: int, num_blocks: int, k: int, columns: int, max_pass_batch: int
) -> tuple[int, int]:
    """(queries per block-minima pass, queries per selection step), powers of two.

    The pass wants many queries per database chunk (fewer, larger fused loops); the selection's
    gathered candidates grow with ``k``, so it runs over smaller slices of the same batch.
    """
    pass_batch = min(bucket, max_pass_batch,
                     power_of_two_at_most(_BATCH_BYTES // (4 * num_blocks)))
    candidate_bytes = 8 * min(k, num_blocks) * _ITEMS_PER_BLOCK * (columns + 1)
    select_batch = min(pass_batch, power_of_two_at_most(_BATCH_BYTES // candidate_bytes))
    return pass_batch, select_batch


def search_prepared(
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
        bucket, blocks.shape[0], k, columns, power_of_two_at_most(max_pass_batch)
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
    """Marks missing results (``-1`` / ``pad_distance``) and pads the columns up to ``k``.

    Only positions past the database are missing: an item whose distance overflowed to ``+inf`` is
    still a result (the farthest), and a NaN distance (from NaN input under a trace) is returned as
    it is, never passed off as "no item".
    """
    missing = ids >= num_valid
    distances = jnp.where(missing, pad_distance, distances)
    ids = jnp.where(missing, -1, ids)
    extra = k - ids.shape[1]
    if extra > 0:
        distances = jnp.pad(distances, ((0, 0), (0, extra)), constant_values=pad_distance)
        ids = jnp.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
    return distances, ids


# ----------------------------------------------------------------------------------------------
# Range search: all pairs within a radius, tile by tile
# ----------------------------------------------------------------------------------------------

_RANGE_QUERY_BATCH = 256
_RANGE_DATABASE_CHUNK = 16384


def range_search(distance_fn, queries, database, radius):
    """CSR results of all ``distance <= radius`` pairs, scanning ``256 x 16,384`` tiles.

    ``distance_fn(query_tile, database_chunk)`` returns the tile's distances.
    """
    num_queries, num_database = queries.shape[0], database.shape[0]
    if num_queries == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.asarray(distance_fn(queries[:0], database[:1])).dtype), np.zeros(0, np.int32)
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

