"""Exact Hamming, product-quantization (PQ) and float-vector search in JAX: one ranking engine.

Codes are ``+-1`` (or real, binarised at 0) for the math and packed bytes for storage and search;
:func:`pack_codes` / :func:`unpack_codes` are :mod:`jaxretrieval.codes`'s, the one bit layout
(``np.packbits(codes >= 0, axis=1)``, the layout faiss ``IndexBinaryFlat`` takes).

Every Hamming and PQ search returns **distances** (smaller is nearer) in ascending order, ties broken
by ascending database index, which is exactly the order of faiss ``IndexBinaryFlat`` / ``IndexPQ``.
The float searches (:func:`inner_product_knn`, :func:`cosine_knn`) return **similarities** in
descending order, ties likewise by ascending index.

- Hamming (:mod:`._hamming`): all-pairs distances, exact k-NN (the blocked engine for small ``k``,
  a key sort for deep rankings; same answers), range search.
- PQ (:mod:`._pq`): hard assignment, ADC tables, exact k-NN by asymmetric distance, range search.
- Float vectors (:mod:`._float`): inner product and cosine k-NN.
- Sharded (:mod:`._sharded`): the database split over a mesh axis, identical results.

How the exact k-NN is fast is told in :mod:`._engine` (block lower bounds, bounded memory). XLA:CPU
runs one search on about one core, so on the CPU the queries are cut into chunks that host threads
search concurrently (:mod:`._threads`, the one thread pool, which the metrics use too); every query's
answer is the same whatever the split.
"""
from jaxretrieval.codes import pack_codes, unpack_codes
from jaxretrieval.search._engine import trace_counts
from jaxretrieval.search._float import cosine_knn, inner_product_knn, inner_product_range_search
from jaxretrieval.search._hamming import (
    hamming_distance,
    hamming_knn,
    hamming_knn_prepared,
    hamming_range_search,
    prepare_hamming_database,
)
from jaxretrieval.search._pq import (
    pq_distance_tables,
    pq_encode,
    pq_knn,
    pq_knn_prepared,
    pq_range_search,
    prepare_pq_database,
)
from jaxretrieval.search._sharded import sharded_hamming_knn, sharded_pq_knn

__all__ = [
    "cosine_knn",
    "hamming_distance",
    "hamming_knn",
    "hamming_knn_prepared",
    "hamming_range_search",
    "inner_product_knn",
    "inner_product_range_search",
    "pack_codes",
    "pq_distance_tables",
    "pq_encode",
    "pq_knn",
    "pq_knn_prepared",
    "pq_range_search",
    "prepare_hamming_database",
    "prepare_pq_database",
    "sharded_hamming_knn",
    "sharded_pq_knn",
    "trace_counts",
    "unpack_codes",
]
