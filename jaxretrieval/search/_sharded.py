"""Sharded search: the database split over a mesh axis with ``jax.shard_map``, identical results."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxretrieval.search import _engine, _hamming, _pq
from jaxretrieval.search._checks import check_k, check_queries_database
from jaxretrieval.search._threads import pad_queries

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
    _engine.trace_counts["sharded_hamming_knn"] += 1

    def local(query_bytes, database_bytes):
        offset, num_valid = _shard_offsets(axis, database_bytes.shape[0], num_items)
        distances, ids = _hamming.knn_of_words(
            _hamming.to_words(query_bytes), _hamming.to_words(database_bytes), num_valid, k=k, num_bits=num_bits
        )
        return _merge_shards(distances, _globalise(ids, offset), axis, k)

    spec = jax.sharding.PartitionSpec
    return jax.shard_map(
        local, mesh=mesh, in_specs=(spec(), spec(axis)), out_specs=(spec(), spec()),
        check_vma=False,  # the merged result is the same on every device (all-gather + top-k)
    )(query_bytes, database_bytes)


@functools.partial(jax.jit, static_argnames=("k", "distance", "mesh", "axis", "num_items"))
def _sharded_pq_jit(queries, codes, codebooks, *, k, distance, mesh, axis, num_items):
    _engine.trace_counts["sharded_pq_knn"] += 1

    def local(queries, codes, codebooks):
        offset, num_valid = _shard_offsets(axis, codes.shape[0], num_items)
        distances, ids = _pq.knn_of_codes(
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
    k = check_k(k)
    queries, database, num_bits = check_queries_database(queries, database, num_bits)
    distances, ids = _sharded_hamming_jit(
        _replicate(pad_queries(queries), mesh), _shard_rows(database, mesh, axis), k=k,
        num_bits=num_bits, mesh=mesh, axis=axis, num_items=database.shape[0],
    )
    return distances[: queries.shape[0]], ids[: queries.shape[0]]


def sharded_pq_knn(queries, codes, codebooks, k: int, *, mesh, axis="data", distance="spq"):
    """:func:`pq_knn` with the codes split over the mesh axis ``axis``; identical results.

    Returns:
      ``(distances, indices)``: ``[num_queries, k]`` float32 / int32, replicated over the mesh.
    """
    k = check_k(k)
    _pq.check_distance(distance)
    codebooks = _pq.check_codebooks(codebooks)
    queries = _pq.check_features("queries", queries, codebooks)
    codes = _pq.check_pq_codes(codes, codebooks)
    distances, ids = _sharded_pq_jit(
        _replicate(pad_queries(queries), mesh), _shard_rows(codes, mesh, axis),
        _replicate(codebooks, mesh), k=k, distance=distance, mesh=mesh, axis=axis,
        num_items=codes.shape[0],
    )
    return distances[: queries.shape[0]], ids[: queries.shape[0]]
