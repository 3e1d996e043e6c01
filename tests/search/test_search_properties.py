"""Properties of every search function under hostile input: batch size 1, zeros, huge magnitudes, jit.

Asserted: no NaN for finite input, distances ascending (similarities descending), each item at most
once per row, padding only past the database, jit == eager, and the Hamming results equal a brute
force. Non-finite input is refused eagerly with an error that names it.
"""
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxretrieval import search

FLOAT32_MAX = float(np.finfo(np.float32).max)


def _hostile_vectors(rng, rows, dim, scale):
    """Random rows, one of them zero, at magnitudes up to ``scale`` (the dtype's limit included)."""
    vectors = rng.uniform(-1.0, 1.0, (rows, dim)) * scale
    vectors[rng.integers(0, rows)] = 0.0
    return vectors.astype(np.float32)


def _check_rows(values, indices, num_items, k, *, ascending):
    values, indices = np.asarray(values), np.asarray(indices)
    assert values.shape == indices.shape == (values.shape[0], k)
    assert not np.isnan(values).any()
    real = indices >= 0
    kept = min(k, num_items)
    assert real[:, :kept].all() and not real[:, kept:].any()  # padding only past the database
    for row_values, row_indices in zip(values[:, :kept], indices[:, :kept]):
        assert len(set(row_indices.tolist())) == kept and row_indices.max() < num_items
        later, earlier = row_values[1:], row_values[:-1]  # compared, not subtracted: inf - inf is NaN
        assert (later >= earlier).all() if ascending else (later <= earlier).all()


# Shapes from small sets: every new shape compiles, the values are what varies.
@settings(max_examples=15)
@given(st.integers(0, 2**31 - 1), st.sampled_from([5, 64]), st.sampled_from([1, 9]), st.sampled_from([1, 70, 200]),
       st.sampled_from([1, 4, 80]))
def test_hamming_knn_is_a_brute_force_stable_sort(seed, num_bits, num_queries, num_items, k):
    rng = np.random.default_rng(seed)
    database = search.pack_codes(rng.standard_normal((num_items, num_bits)))
    queries = search.pack_codes(rng.standard_normal((num_queries, num_bits)))
    distances, indices = search.hamming_knn(queries, database, k, num_bits=num_bits)
    _check_rows(distances, indices, num_items, k, ascending=True)
    brute = np.bitwise_count(np.asarray(queries)[:, None] ^ np.asarray(database)[None]).sum(-1)
    order = np.argsort(brute, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(np.asarray(indices)[:, : order.shape[1]], order)
    assert (np.asarray(distances)[:, num_items:] == num_bits + 1).all()
    traced = jax.jit(lambda q, d: search.hamming_knn(q, d, k, num_bits=num_bits))(queries, database)
    np.testing.assert_array_equal(np.asarray(traced[1]), np.asarray(indices))


@settings(max_examples=8)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1.0, 1e19, 1e30, FLOAT32_MAX]), st.sampled_from([1, 5]),
       st.sampled_from([1, 40]))
def test_pq_knn_gives_no_nan_for_any_finite_magnitude(seed, scale, num_queries, num_items):
    rng = np.random.default_rng(seed)
    codebooks = _hostile_vectors(rng, 2 * 4, 3, scale).reshape(2, 4, 3)
    features = _hostile_vectors(rng, num_items + num_queries, 6, scale)
    codes = search.pq_encode(features[:num_items], codebooks)
    assert (np.asarray(codes) >= 0).all() and (np.asarray(codes) < 4).all()
    for distance in ("spq", "squared_l2"):
        k = num_items + 2
        values, indices = search.pq_knn(features[num_items:], codes, codebooks, k, distance=distance)
        _check_rows(values, indices, num_items, k, ascending=True)
        assert (np.asarray(values)[:, :num_items] >= 0).all()
        traced = jax.jit(lambda q: search.pq_knn(q, codes, codebooks, k, distance=distance))(features[num_items:])
        np.testing.assert_array_equal(np.asarray(traced[1]), np.asarray(indices))


def test_pq_distances_of_huge_but_close_vectors_are_exact_not_nan():
    # |x|^2 and |c|^2 overflow float32 on their own; the distance between x and c does not.
    codebooks = np.array([[[2e19, 2e19]], [[-2e19, 2e19]]], np.float32).reshape(2, 1, 2)
    features = np.array([[2e19, 2e19, -2e19, 2e19]], np.float32)
    np.testing.assert_array_equal(np.asarray(search.pq_distance_tables(features, codebooks, distance="squared_l2")), 0.0)
    far = np.array([[-2e19, -2e19, 2e19, -2e19]], np.float32)
    assert np.isposinf(np.asarray(search.pq_distance_tables(far, codebooks, distance="squared_l2"))).all()


@settings(max_examples=8)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1.0, 1e19, 1e30, FLOAT32_MAX]), st.sampled_from([1, 5]),
       st.sampled_from([1, 40]), st.sampled_from([3, 64]))
def test_float_knn_gives_no_nan_for_any_finite_magnitude(seed, scale, num_queries, num_items, k):
    rng = np.random.default_rng(seed)
    vectors = _hostile_vectors(rng, num_items + num_queries, 4, scale)
    database, queries = vectors[:num_items], vectors[num_items:]
    for knn in (search.inner_product_knn, search.cosine_knn):
        values, indices = knn(queries, database, k)
        _check_rows(values, indices, num_items, k, ascending=False)
        traced = jax.jit(lambda q, d: knn(q, d, k))(queries, database)  # the XLA path (no host sort)
        np.testing.assert_array_equal(np.asarray(traced[1]), np.asarray(indices))
    values, _ = search.cosine_knn(queries, database, k)
    real = np.asarray(values)[:, : min(k, num_items)]
    assert (np.abs(real) <= 1.0 + 1e-6).all()


def test_inner_products_beyond_float32_are_infinite_with_the_right_sign():
    database = np.array([[FLOAT32_MAX, FLOAT32_MAX], [-FLOAT32_MAX, FLOAT32_MAX], [1.0, 0.0]], np.float32)
    similarities, indices = search.inner_product_knn(np.array([[FLOAT32_MAX, FLOAT32_MAX]], np.float32), database, 3)
    np.testing.assert_array_equal(np.asarray(indices), [[0, 2, 1]])  # +inf, then 3.4e38, then 0 (not NaN)
    assert np.isposinf(np.asarray(similarities)[0, 0]) and np.asarray(similarities)[0, 2] == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_input_is_refused_eagerly(bad):
    database = np.ones((4, 4), np.float32)
    queries = np.ones((1, 4), np.float32)
    queries[0, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        search.inner_product_knn(queries, database, 2)
    codebooks = np.ones((2, 2, 2), np.float32)
    if np.isnan(bad):
        with pytest.raises(ValueError, match="NaN"):
            search.pq_knn(queries, np.zeros((3, 2), np.int32), codebooks, 2)
