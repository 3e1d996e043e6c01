"""jaxretrieval.search inner-product / cosine k-NN and range search: numpy and faiss agree, ties by index."""
import faiss
import jax
import numpy as np
import pytest

from jaxretrieval import search


def _reference(queries, database, k):
    """Stable argsort of the negated similarities: descending, ties by ascending index, -1 / -inf padding."""
    similarities = queries.astype(np.float64) @ database.T.astype(np.float64)
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    pad = k - order.shape[1]
    values = np.take_along_axis(similarities, order, axis=1)
    return (np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf),
            np.pad(order, ((0, 0), (0, pad)), constant_values=-1))


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("k", [1, 7, 300, 305])
def test_inner_product_knn_equals_a_stable_sort_with_ties_by_index(k, num_threads):
    rng = np.random.default_rng(k)
    # Small integers: many exact ties, and float32 products are exact.
    database = rng.integers(-2, 3, (300, 6)).astype(np.float32)
    queries = rng.integers(-2, 3, (37, 6)).astype(np.float32)
    similarities, indices = search.inner_product_knn(queries, database, k, num_threads=num_threads)
    expected_similarities, expected_indices = _reference(queries, database, k)
    np.testing.assert_array_equal(np.asarray(indices), expected_indices)
    np.testing.assert_array_equal(np.asarray(similarities), expected_similarities.astype(np.float32))


def test_cosine_knn_equals_faiss_flat_ip_on_normalised_vectors_and_zero_vectors_score_zero():
    rng = np.random.default_rng(1)
    database = rng.standard_normal((500, 16)).astype(np.float32)
    database[3] = 0.0
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    similarities, indices = search.cosine_knn(queries, database, 10)
    unit = database / np.maximum(np.linalg.norm(database, axis=1, keepdims=True), 1e-30)
    flat = faiss.IndexFlatIP(16)
    flat.add(unit)
    faiss_similarities, faiss_indices = flat.search(queries / np.linalg.norm(queries, axis=1, keepdims=True), 10)
    np.testing.assert_array_equal(np.asarray(indices), faiss_indices)
    np.testing.assert_allclose(np.asarray(similarities), faiss_similarities, atol=1e-5)
    zero_query_similarities, _ = search.cosine_knn(np.zeros((1, 16), np.float32), database, 3)
    np.testing.assert_array_equal(np.asarray(zero_query_similarities), 0.0)


def test_inner_product_knn_under_jit_equals_eager():
    rng = np.random.default_rng(2)
    database, queries = rng.standard_normal((100, 8)), rng.standard_normal((9, 8))
    eager = search.inner_product_knn(queries, database, 5)
    traced = jax.jit(lambda q, d: search.inner_product_knn(q, d, 5))(queries, database)
    np.testing.assert_array_equal(np.asarray(eager[1]), np.asarray(traced[1]))


def test_inner_product_range_search_keeps_every_item_above_the_threshold():
    rng = np.random.default_rng(3)
    database, queries = rng.standard_normal((700, 4)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    lims, similarities, indices = search.inner_product_range_search(queries, database, 1.0)
    full = queries @ database.T
    for row in range(5):
        expected = np.flatnonzero(full[row] >= 1.0)
        np.testing.assert_array_equal(indices[lims[row] : lims[row + 1]], expected)
        np.testing.assert_allclose(similarities[lims[row] : lims[row + 1]], full[row, expected], rtol=1e-5)


def test_zero_queries_give_empty_results_in_every_search():
    rng = np.random.default_rng(4)
    database = rng.standard_normal((50, 8)).astype(np.float32)
    similarities, indices = search.inner_product_knn(database[:0], database, 3)
    assert similarities.shape == indices.shape == (0, 3)
    packed = search.pack_codes(database)
    for num_threads in (1, 2):
        distances, indices = search.hamming_knn(packed[:0], packed, 3, num_threads=num_threads)
        assert distances.shape == indices.shape == (0, 3)
    lims, distances, indices = search.hamming_range_search(packed[:0], packed, 2)
    assert lims.tolist() == [0] and distances.size == indices.size == 0
    codebooks = rng.standard_normal((2, 4, 4)).astype(np.float32)
    distances, indices = search.pq_knn(database[:0], search.pq_encode(database, codebooks), codebooks, 3)
    assert distances.shape == indices.shape == (0, 3)


def test_bad_float_input_is_named():
    database = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"queries must have shape \[n, 3\]"):
        search.inner_product_knn(np.ones((2, 4)), database, 1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        search.inner_product_knn(np.full((1, 3), np.nan), database, 1)
    with pytest.raises(ValueError, match="database is empty"):
        search.inner_product_knn(np.ones((1, 3)), database[:0], 1)
    with pytest.raises(TypeError, match="floating point"):
        search.inner_product_knn(np.ones((1, 3), np.int32), database, 1)
