"""Product-quantization (PQ) search: hard assignment, ADC lookup tables, exact k-NN and range search."""
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

# Table lookups are random access: one pass batch's tables stay within this many bytes (L1).
_PQ_TABLE_BYTES = 32 << 10

_DISTANCES = ("spq", "squared_l2")


def check_codebooks(codebooks) -> jax.Array:
    codebooks = jnp.asarray(codebooks)
    if codebooks.ndim != 3:
        raise ValueError(
            f"codebooks must have shape [num_books, num_words, word_dim], got {codebooks.shape}"
        )
    if not jnp.issubdtype(codebooks.dtype, jnp.floating):
        raise TypeError(f"codebooks must be floating point, got dtype {codebooks.dtype}")
    return codebooks.astype(jnp.float32)


def check_features(name: str, features, codebooks: jax.Array) -> jax.Array:
    features = jnp.asarray(features)
    num_books, _, word_dim = codebooks.shape
    if features.ndim != 2 or features.shape[1] != num_books * word_dim:
        raise ValueError(
            f"{name} must have shape [n, num_books * word_dim] = [n, {num_books * word_dim}] for "
            f"codebooks {codebooks.shape}, got {features.shape}"
        )
    if not jnp.issubdtype(features.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point, got dtype {features.dtype}")
    if is_concrete(features) and np.isnan(np.asarray(features)).any():
        raise ValueError(f"{name} of shape {features.shape} contain NaN")
    return features.astype(jnp.float32)


def check_distance(distance: str) -> str:
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
    return distance


def _squared_distances(features, codebooks):
    """``[n, M * L]``, ``[M, K, L]`` -> ``[n, M, K]`` squared distances per book (clamped at 0).

    ``|x|^2 - 2 x.c + |c|^2`` with every term scaled by a power of two first (per query: the larger
    of its own and the codebooks' magnitude), so that nothing overflows on the way: features and
    codewords up to float32's limit give the true distance, or ``+inf`` where it exceeds the dtype,
    never ``inf - inf = NaN``. Scaling by powers of two is exact, so inputs of ordinary size get
    bit for bit the distances of the unscaled formula.
    """
    num_books, _, word_dim = codebooks.shape
    parts = features.reshape(features.shape[0], num_books, word_dim)
    codebook_exponent = _stable.exponent_above(jnp.max(jnp.abs(codebooks)))
    query_exponent = jnp.maximum(_stable.exponent_above(jnp.max(jnp.abs(parts), axis=(1, 2))), codebook_exponent)[:, None, None]
    scaled_parts = jnp.ldexp(parts, -query_exponent)
    unit_codebooks = jnp.ldexp(codebooks, -codebook_exponent)
    shift = codebook_exponent - query_exponent  # <= 0: brings the codebooks to the query's scale
    cross = jnp.ldexp(
        jnp.einsum("nml,mkl->nmk", scaled_parts, unit_codebooks, precision=lax.Precision.HIGHEST), shift
    )
    codebook_norms = jnp.ldexp(jnp.sum(unit_codebooks**2, -1)[None], 2 * shift)
    squared = jnp.sum(scaled_parts * scaled_parts, -1)[:, :, None] - 2.0 * cross + codebook_norms
    return jnp.ldexp(jnp.maximum(squared, 0.0), 2 * query_exponent)


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
    check_distance(distance)
    codebooks = check_codebooks(codebooks)
    return _tables(check_features("queries", queries, codebooks), codebooks, distance)


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
    codebooks = check_codebooks(codebooks)
    features = check_features("features", features, codebooks)
    return _pq_encode_jit(features, codebooks)


def check_pq_codes(codes, codebooks: jax.Array) -> jax.Array:
    codes = jnp.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != codebooks.shape[0]:
        raise ValueError(
            f"codes must have shape [n, num_books] = [n, {codebooks.shape[0]}], got {codes.shape}"
        )
    if not jnp.issubdtype(codes.dtype, jnp.integer):
        raise TypeError(f"codes must be integers (from pq_encode), got dtype {codes.dtype}")
    if codes.shape[0] == 0:
        raise ValueError(f"codes (the database) is empty, shape {codes.shape}")
    if is_concrete(codes) and codes.size:
        host = np.asarray(codes)
        low, high = int(host.min()), int(host.max())
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
    return _engine.search_prepared(
        queries, planes, blocks, num_valid, k=k, pass_fn=_pq_pass, item_fn=_pq_items,
        columns=blocks.shape[-1], pad_distance=jnp.inf,
        **({} if query_fn is None else {"query_fn": query_fn}),
        # Table lookups are random access: keep one pass batch's tables within ~32 KiB (L1).
        max_pass_batch=_PQ_TABLE_BYTES // (4 * num_books * num_words),
    )


def knn_of_codes(queries, codes, codebooks, num_valid, *, k, distance):
    planes, blocks = _engine.prepare(codes)
    return _pq_knn_layout(queries, planes, blocks, codebooks, num_valid, k=k, distance=distance)


@jax.jit
def prepare_pq_database(codes):
    """Lays PQ codes out for the block pass once; see :func:`pq_knn_prepared`."""
    return _engine.prepare(codes.astype(jnp.int32))


@functools.partial(jax.jit, static_argnames=("k", "distance"))
def _pq_knn_prepared_jit(queries, planes, blocks, codebooks, num_valid, *, k, distance):
    _engine.trace_counts["pq_knn_prepared"] += 1
    return _pq_knn_layout(queries, planes, blocks, codebooks, num_valid, k=k, distance=distance)


def pq_knn_prepared(
    queries, prepared, num_items: int, codebooks, k: int, *, distance="spq",
    num_threads: int | None = None,
):
    """:func:`pq_knn` over codes laid out by :func:`prepare_pq_database`."""
    k = check_k(k)
    check_distance(distance)
    codebooks = check_codebooks(codebooks)
    queries = check_features("queries", queries, codebooks)
    planes, blocks = prepared
    search_padded = lambda padded: _pq_knn_prepared_jit(
        padded, planes, blocks, codebooks, num_items, k=k, distance=distance
    )
    return _threads.search_queries(search_padded, queries, _threads.check_num_threads(num_threads, planes))


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
    k = check_k(k)
    check_distance(distance)
    codebooks = check_codebooks(codebooks)
    queries = check_features("queries", queries, codebooks)
    codes = check_pq_codes(codes, codebooks)
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
    check_distance(distance)
    codebooks = check_codebooks(codebooks)
    queries = check_features("queries", queries, codebooks)
    codes = check_pq_codes(codes, codebooks)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite number >= 0, got {radius}")
    tile = functools.partial(_pq_distance_tile, codebooks=codebooks, distance=distance)
    return _engine.range_search(tile, queries, codes, float(radius))

