"""Tests of jaxretrieval.search: packing, exact Hamming / PQ k-NN, range search, sharded search."""
import faiss
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval import search
from jaxretrieval.search import _hamming, _pq, _threads


def _random_codes(rng, count, num_bits, ones=0.5):
    return np.where(rng.random((count, num_bits)) < ones, 1, -1).astype(np.int8)


def _brute_hamming(queries, database, k, num_bits):
    """Reference: numpy popcount + stable argsort on (distance, index), -1 / num_bits + 1 padding."""
    distances = np.bitwise_count(queries[:, None, :] ^ database[None, :, :]).sum(-1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    sorted_distances = np.take_along_axis(distances, order, axis=1)
    pad = k - order.shape[1]
    return (
        np.pad(sorted_distances, ((0, 0), (0, pad)), constant_values=num_bits + 1),
        np.pad(order, ((0, 0), (0, pad)), constant_values=-1),
    )


def _brute_pq(queries, codes, codebooks, k, distance):
    """Reference ADC: per-book distances summed over books in order, stable argsort."""
    num_books, _, word_dim = codebooks.shape
    parts = queries.reshape(len(queries), num_books, 1, word_dim)
    tables = ((parts - codebooks[None]) ** 2).sum(-1)
    if distance == "spq":
        tables = np.sqrt(tables)
    distances = np.zeros((len(queries), len(codes)), np.float32)
    for book in range(num_books):
        distances = distances + tables[:, book, :][:, codes[:, book]]
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), order


# --------------------------------------------------------------------------------------- packing


@pytest.mark.parametrize("num_bits", [1, 12, 48, 64])
def test_pack_codes_matches_numpy_packbits_and_unpack_inverts(num_bits):
    rng = np.random.default_rng(num_bits)
    codes = rng.normal(size=(7, num_bits)).astype(np.float32)
    packed = search.pack_codes(codes)
    assert packed.dtype == jnp.uint8
    np.testing.assert_array_equal(packed, np.packbits(codes >= 0, axis=1))
    np.testing.assert_array_equal(search.unpack_codes(packed, num_bits), np.where(codes >= 0, 1, -1))
    np.testing.assert_array_equal(jax.jit(search.pack_codes)(codes), packed)


def test_pack_codes_rejects_nan_and_bad_shapes():
    with pytest.raises(ValueError, match="NaN"):
        search.pack_codes(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match=r"\[n, num_bits\]"):
        search.pack_codes(np.ones(5))


def test_hamming_distance_is_symmetric_and_counts_differing_bits():
    rng = np.random.default_rng(0)
    a = search.pack_codes(_random_codes(rng, 5, 40))
    b = search.pack_codes(_random_codes(rng, 9, 40))
    distances = np.asarray(search.hamming_distance(a, b))
    np.testing.assert_array_equal(distances, np.asarray(search.hamming_distance(b, a)).T)
    np.testing.assert_array_equal(
        distances, np.bitwise_count(np.asarray(a)[:, None] ^ np.asarray(b)[None]).sum(-1)
    )
    assert distances.dtype == np.int32


# ----------------------------------------------------------------------------------- hamming k-NN


# Few distinct shapes (each is one compilation); hypothesis varies the codes and tie structure.
@hypothesis.settings(max_examples=10)
@hypothesis.given(
    seed=st.integers(0, 2**31 - 1),
    num_database=st.just(300),
    num_bits=st.sampled_from([16, 64]),
    k=st.sampled_from([10, 500]),
    ones=st.sampled_from([0.5, 0.95]),
)
def test_hamming_knn_equals_brute_force(seed, num_database, num_bits, k, ones):
    rng = np.random.default_rng(seed)
    # ones=0.95 makes many codes identical: heavy ties exercise the index tie order.
    database = np.packbits(_random_codes(rng, num_database, num_bits, ones) >= 0, axis=1)
    queries = np.packbits(_random_codes(rng, 5, num_bits, ones) >= 0, axis=1)
    distances, indices = search.hamming_knn(queries, database, k)
    expected_distances, expected_indices = _brute_hamming(queries, database, k, num_bits)
    np.testing.assert_array_equal(distances, expected_distances)
    np.testing.assert_array_equal(indices, expected_indices)
    assert distances.dtype == jnp.int32 and indices.dtype == jnp.int32


def test_hamming_knn_blocks_and_superblocks_on_a_larger_database():
    # 40,000 items: several chunks, super-block selection and sub-block refinement all run.
    rng = np.random.default_rng(1)
    database = rng.integers(0, 256, size=(40_000, 4), dtype=np.uint8)
    queries = rng.integers(0, 256, size=(3, 4), dtype=np.uint8)
    for k in (20, 700):
        distances, indices = search.hamming_knn(queries, database, k)
        expected_distances, expected_indices = _brute_hamming(queries, database, k, 32)
        np.testing.assert_array_equal(distances, expected_distances)
        np.testing.assert_array_equal(indices, expected_indices)


@pytest.mark.parametrize("num_bits", [96, 128, 256])
def test_wide_codes_run_the_grouped_pass_and_equal_brute_force(num_bits):
    # Codes of 3+ words take the pass that loops over groups of items (see _hamming_pass).
    rng = np.random.default_rng(num_bits)
    database = np.packbits(_random_codes(rng, 3000, num_bits, 0.9) >= 0, axis=1)
    queries = np.packbits(_random_codes(rng, 6, num_bits, 0.9) >= 0, axis=1)
    for k in (1, 70):
        distances, indices = search.hamming_knn(queries, database, k)
        expected_distances, expected_indices = _brute_hamming(queries, database, k, num_bits)
        np.testing.assert_array_equal(distances, expected_distances)
        np.testing.assert_array_equal(indices, expected_indices)


@pytest.mark.parametrize("num_queries", [1, 9, 100, 600])
def test_threaded_search_equals_one_thread(num_queries):
    # The query split over host threads must not change any answer, whatever the chunking.
    rng = np.random.default_rng(num_queries)
    database = np.packbits(_random_codes(rng, 2000, 32, 0.8) >= 0, axis=1)
    queries = np.packbits(_random_codes(rng, num_queries, 32, 0.8) >= 0, axis=1)
    single = search.hamming_knn(queries, database, 25, num_threads=1)
    prepared = search.prepare_hamming_database(database)
    for num_threads in (2, 3):
        for result in (
            search.hamming_knn(queries, database, 25, num_threads=num_threads),
            search.hamming_knn_prepared(
                queries, prepared, 2000, 25, num_bits=32, num_threads=num_threads
            ),
        ):
            np.testing.assert_array_equal(result[0], single[0])
            np.testing.assert_array_equal(result[1], single[1])
    codebooks, features, pq_queries = _integer_pq_problem(num_queries, 300, num_queries)
    codes = search.pq_encode(features, codebooks)
    single = search.pq_knn(pq_queries, codes, codebooks, 7, num_threads=1)
    threaded = search.pq_knn(pq_queries, codes, codebooks, 7, num_threads=2)
    np.testing.assert_array_equal(threaded[0], single[0])
    np.testing.assert_array_equal(threaded[1], single[1])


def test_query_chunks_cover_all_queries_and_keep_shapes_few():
    for num_threads in (1, 2, 3, 16):
        for num_queries in (1, 7, 8, 9, 500, 1000, 1100, 100_000):
            size = _threads.query_chunk(num_queries, num_threads)
            assert size in (8, 16, 32, 64, 128, 256, 512)
            chunks = -(-num_queries // size)
            assert chunks * size - num_queries < size  # only the last chunk is padded
    # 1,000 queries on 2 threads: two chunks of 512 (balanced); 1,100: small chunks for balance.
    assert _threads.query_chunk(1000, 2) == 512
    assert _threads.query_chunk(1100, 2) == 128


def test_threaded_search_compiles_once_per_chunk_size():
    rng = np.random.default_rng(4)
    database = rng.integers(0, 256, size=(100, 8), dtype=np.uint8)
    queries = rng.integers(0, 256, size=(3000, 8), dtype=np.uint8)
    search.hamming_knn(queries[:2000], database, 3, num_threads=2)  # chunks of 512
    before = search.trace_counts["hamming_knn_prepared"]
    for count in (1000, 1900, 2048, 3000):  # every one of these picks chunks of 512
        assert _threads.query_chunk(count, 2) == 512
        search.hamming_knn(queries[:count], database, 3, num_threads=2)
    assert search.trace_counts["hamming_knn_prepared"] == before


def test_num_threads_is_checked():
    database = np.zeros((10, 2), np.uint8)
    with pytest.raises(ValueError, match="num_threads must be >= 1, got 0"):
        search.hamming_knn(database, database, 1, num_threads=0)
    with pytest.raises(TypeError, match="num_threads must be an int or None"):
        search.hamming_knn(database, database, 1, num_threads=1.5)
    with pytest.raises(TypeError, match="num_threads must be an int or None"):
        search.hamming_knn(database, database, 1, num_threads=True)


def test_hamming_knn_equals_faiss_index_binary_flat():
    rng = np.random.default_rng(2)
    database = np.packbits(_random_codes(rng, 5000, 16) >= 0, axis=1)  # 16 bits: many ties
    queries = np.packbits(_random_codes(rng, 20, 16) >= 0, axis=1)
    index = faiss.IndexBinaryFlat(16)
    index.add(database)
    faiss_distances, faiss_indices = index.search(queries, 50)
    distances, indices = search.hamming_knn(queries, database, 50)
    np.testing.assert_array_equal(distances, faiss_distances)
    np.testing.assert_array_equal(indices, faiss_indices)


def test_hamming_knn_pads_when_k_exceeds_database():
    database = search.pack_codes(np.array([[1, 1, 1, 1], [-1, 1, 1, 1]]))
    distances, indices = search.hamming_knn(database[:1], database, 4, num_bits=4)
    np.testing.assert_array_equal(distances, [[0, 1, 5, 5]])
    np.testing.assert_array_equal(indices, [[0, 1, -1, -1]])


def test_hamming_knn_rejects_bad_input_with_clear_errors():
    database = np.zeros((4, 8), np.uint8)
    with pytest.raises(ValueError, match="k must be positive"):
        search.hamming_knn(database, database, 0)
    with pytest.raises(ValueError, match="k must be positive"):
        search.hamming_knn(database, database, -3)
    with pytest.raises(TypeError, match="k must be a Python int"):
        search.hamming_knn(database, database, 2.0)
    with pytest.raises(ValueError, match="database is empty"):
        search.hamming_knn(database, database[:0], 1)
    with pytest.raises(TypeError, match="queries must be packed uint8"):
        search.hamming_knn(database.astype(np.int32), database, 1)
    with pytest.raises(ValueError, match="same number of bytes"):
        search.hamming_knn(database[:, :4], database, 1)
    with pytest.raises(ValueError, match=r"database must have shape \[n, num_bytes\]"):
        search.hamming_knn(database, database[0], 1)
    with pytest.raises(ValueError, match="num_bits=70"):
        search.hamming_knn(database, database, 1, num_bits=70)


def test_hamming_knn_does_not_recompile_for_new_query_counts_in_a_bucket():
    rng = np.random.default_rng(3)
    database = rng.integers(0, 256, size=(1000, 8), dtype=np.uint8)  # 16 blocks > k: the blocked engine
    # One thread (what accelerators use): queries padded to power-of-two buckets.
    search.hamming_knn(database[:9], database, 3, num_threads=1)
    before = search.trace_counts["hamming_knn_prepared"]
    for count in (10, 13, 16):  # same bucket (16) as 9 queries
        search.hamming_knn(database[:count], database, 3, num_threads=1)
    assert search.trace_counts["hamming_knn_prepared"] == before
    search.hamming_knn(database[:17], database, 3, num_threads=1)  # next bucket: one compilation
    assert search.trace_counts["hamming_knn_prepared"] == before + 1


@pytest.mark.parametrize("num_items", [64 * 5, 64 * 5 + 17, 1000])
def test_the_sorting_and_the_blocked_paths_give_the_same_ranking(num_items):
    rng = np.random.default_rng(num_items)
    database = search.pack_codes(rng.standard_normal((num_items, 24)))  # 24 bits: many ties
    queries = search.pack_codes(rng.standard_normal((37, 24)))
    prepared = search.prepare_hamming_database(database)
    num_blocks = prepared[1].shape[0]
    for k in (1, num_blocks - 1, num_blocks, num_blocks + 3, num_items, num_items + 5):
        sorted_path = search.hamming_knn_prepared(queries, prepared, num_items, k, num_bits=24)  # k >= blocks: sorts
        blocked = _hamming._hamming_knn_prepared_jit(
            _threads.pad_queries(queries), *prepared, num_items, k=k, num_bits=24
        )
        np.testing.assert_array_equal(np.asarray(sorted_path[0]), np.asarray(blocked[0])[:37], err_msg=f"k={k}")
        np.testing.assert_array_equal(np.asarray(sorted_path[1]), np.asarray(blocked[1])[:37], err_msg=f"k={k}")
        expected_distances, expected_indices = _brute_hamming(np.asarray(queries), np.asarray(database), k, 24)
        np.testing.assert_array_equal(np.asarray(sorted_path[1]), expected_indices, err_msg=f"k={k}")
        np.testing.assert_array_equal(np.asarray(sorted_path[0]), expected_distances, err_msg=f"k={k}")


def test_search_temporary_memory_is_bounded():
    # The prepared (index) path must not materialise anything near [queries, database].
    database = jnp.zeros((200_000, 8), jnp.uint8)
    planes, blocks = search.prepare_hamming_database(database)
    queries = jnp.zeros((1024, 8), jnp.uint8)
    compiled = _hamming._hamming_knn_prepared_jit.lower(
        queries, planes, blocks, 200_000, k=100, num_bits=64
    ).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:  # a backend without memory analysis: nothing to check against
        pytest.fail("memory_analysis() unavailable on the CPU backend")
    assert analysis.temp_size_in_bytes < database.nbytes


# -------------------------------------------------------------------------------- range search


def test_hamming_range_search_equals_brute_force_and_faiss():
    rng = np.random.default_rng(4)
    database = np.packbits(_random_codes(rng, 600, 16) >= 0, axis=1)
    queries = np.packbits(_random_codes(rng, 7, 16) >= 0, axis=1)
    radius = 4
    lims, distances, indices = search.hamming_range_search(queries, database, radius)
    brute = np.bitwise_count(queries[:, None] ^ database[None]).sum(-1)
    for query in range(len(queries)):
        expected = np.nonzero(brute[query] <= radius)[0]
        np.testing.assert_array_equal(indices[lims[query] : lims[query + 1]], expected)
        np.testing.assert_array_equal(distances[lims[query] : lims[query + 1]], brute[query, expected])
    index = faiss.IndexBinaryFlat(16)
    index.add(database)
    faiss_lims, faiss_distances, faiss_indices = index.range_search(queries, radius + 1)
    np.testing.assert_array_equal(lims, faiss_lims)
    for query in range(len(queries)):
        span = slice(lims[query], lims[query + 1])
        order = np.argsort(faiss_indices[span])
        np.testing.assert_array_equal(indices[span], faiss_indices[span][order])
        np.testing.assert_array_equal(distances[span], faiss_distances[span][order])


def test_hamming_range_search_rejects_negative_radius():
    database = np.zeros((3, 2), np.uint8)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        search.hamming_range_search(database, database, -1)


# ------------------------------------------------------------------------------------------- PQ


def _integer_pq_problem(seed, num_database, num_queries=6):
    """Integer-valued codebooks and queries: every ADC sum is exact, so order is comparable bitwise."""
    rng = np.random.default_rng(seed)
    codebooks = rng.integers(-3, 4, size=(4, 16, 2)).astype(np.float32)
    features = rng.integers(-3, 4, size=(num_database, 8)).astype(np.float32)
    queries = rng.integers(-3, 4, size=(num_queries, 8)).astype(np.float32)
    return codebooks, features, queries


def test_pq_encode_picks_the_nearest_codeword_per_book():
    rng = np.random.default_rng(5)
    codebooks = rng.normal(size=(4, 16, 3)).astype(np.float32)
    features = rng.normal(size=(50, 12)).astype(np.float32)
    codes = np.asarray(search.pq_encode(features, codebooks))
    expected = ((features.reshape(50, 4, 1, 3) - codebooks[None]) ** 2).sum(-1).argmin(-1)
    np.testing.assert_array_equal(codes, expected)
    assert codes.dtype == np.int32


@pytest.mark.parametrize("distance", ["spq", "squared_l2"])
@pytest.mark.parametrize("k", [5, 400])
def test_pq_knn_equals_brute_force(distance, k):
    codebooks, features, queries = _integer_pq_problem(6, 300)
    codes = np.asarray(search.pq_encode(features, codebooks))
    distances, indices = search.pq_knn(queries, codes, codebooks, k, distance=distance)
    expected_distances, expected_indices = _brute_pq(queries, codes, codebooks, k, distance)
    found = min(k, len(codes))
    np.testing.assert_array_equal(indices[:, :found], expected_indices)
    np.testing.assert_allclose(distances[:, :found], expected_distances, rtol=1e-6)
    assert (np.asarray(indices[:, found:]) == -1).all()
    assert np.isinf(np.asarray(distances[:, found:])).all()


def test_pq_knn_spq_and_squared_l2_rank_differently_and_reference_sums_unsquared():
    codebooks = np.array([[[0.0], [3.0]], [[0.0], [3.0]]], np.float32)
    codes = np.array([[1, 1], [0, 0]])  # item 0 at (3, 3), item 1 at (0, 0)
    query = np.array([[1.0, 4.0]], np.float32)
    # spq: |1-3| + |4-3| = 3 vs 1 + 4 = 5; squared: 4 + 1 = 5 vs 1 + 16 = 17.
    distances, indices = search.pq_knn(query, codes, codebooks, 2, distance="spq")
    np.testing.assert_allclose(distances, [[3.0, 5.0]])
    distances, indices = search.pq_knn(query, codes, codebooks, 2, distance="squared_l2")
    np.testing.assert_allclose(distances, [[5.0, 17.0]])


def test_pq_knn_matches_faiss_index_pq():
    rng = np.random.default_rng(7)
    num_books, word_dim = 4, 4
    training = rng.normal(size=(3000, num_books * word_dim)).astype(np.float32)
    faiss_index = faiss.IndexPQ(num_books * word_dim, num_books, 8)
    faiss_index.train(training)
    faiss_index.add(training)
    codebooks = faiss.vector_to_array(faiss_index.pq.centroids).reshape(num_books, 256, word_dim)
    codes = faiss.vector_to_array(faiss_index.codes).reshape(-1, num_books).astype(np.int32)
    queries = rng.normal(size=(10, num_books * word_dim)).astype(np.float32)
    faiss_distances, faiss_indices = faiss_index.search(queries, 20)
    distances, indices = search.pq_knn(queries, codes, codebooks, 20, distance="squared_l2")
    np.testing.assert_array_equal(indices, faiss_indices)
    np.testing.assert_allclose(distances, faiss_distances, rtol=1e-4, atol=1e-4)


def test_pq_search_with_faiss_tables_is_bit_identical_to_faiss():
    # Our ADC tables round differently from faiss's (BLAS), so near-ties may swap; given faiss's
    # own tables, the search itself (summation order, bounds, tie order) must equal faiss exactly.
    # faiss's scalar ADC code sums the books in order, as we do (so does its AVX-512 kernel; its
    # AVX2 kernel uses another order), so faiss runs at its scalar level, on every machine alike.
    previous_level = faiss.SIMDConfig.get_level()
    faiss.SIMDConfig.set_level(faiss.SIMDLevel_NONE)
    try:
        _check_pq_search_with_faiss_tables()
    finally:
        faiss.SIMDConfig.set_level(previous_level)


def _check_pq_search_with_faiss_tables():
    rng = np.random.default_rng(8)
    num_books, word_dim, num_queries = 4, 4, 12
    faiss_index = faiss.IndexPQ(num_books * word_dim, num_books, 8)
    faiss_index.train(rng.normal(size=(3000, num_books * word_dim)).astype(np.float32))
    faiss_index.add(rng.normal(size=(20_000, num_books * word_dim)).astype(np.float32))
    queries = rng.normal(size=(num_queries, num_books * word_dim)).astype(np.float32)
    tables = np.zeros((num_queries, num_books, 256), np.float32)
    faiss_index.pq.compute_distance_tables(
        num_queries, faiss.swig_ptr(queries), faiss.swig_ptr(tables)
    )
    codes = faiss.vector_to_array(faiss_index.codes).reshape(-1, num_books)
    planes, blocks = search.prepare_pq_database(jnp.asarray(codes, jnp.int32))
    distances, indices = _pq._pq_tables_search(
        _threads.pad_queries(jnp.asarray(tables)), planes, blocks, 20_000, k=50,
        table_shape=(num_books, 256),
    )
    faiss_distances, faiss_indices = faiss_index.search(queries, 50)
    np.testing.assert_array_equal(distances[:num_queries], faiss_distances)
    np.testing.assert_array_equal(indices[:num_queries], faiss_indices)


def test_pq_rejects_bad_input():
    codebooks, features, queries = _integer_pq_problem(8, 20)
    codes = search.pq_encode(features, codebooks)
    with pytest.raises(ValueError, match="distance must be one of"):
        search.pq_knn(queries, codes, codebooks, 3, distance="l1")
    with pytest.raises(ValueError, match=r"queries must have shape \[n, num_books \* word_dim\]"):
        search.pq_knn(queries[:, :5], codes, codebooks, 3)
    with pytest.raises(ValueError, match="codes must lie in"):
        search.pq_knn(queries, np.full((3, 4), 99), codebooks, 3)
    with pytest.raises(TypeError, match="codes must be integers"):
        search.pq_knn(queries, np.zeros((3, 4), np.float32), codebooks, 3)
    with pytest.raises(ValueError, match="empty"):
        search.pq_knn(queries, np.zeros((0, 4), np.int32), codebooks, 3)
    with pytest.raises(ValueError, match="NaN"):
        search.pq_encode(np.full((2, 8), np.nan, np.float32), codebooks)


def test_pq_range_search_equals_brute_force():
    codebooks, features, queries = _integer_pq_problem(9, 200)
    codes = np.asarray(search.pq_encode(features, codebooks))
    distances_all, _ = _brute_pq(queries, codes, codebooks, len(codes), "squared_l2")
    lims, distances, indices = search.pq_range_search(
        queries, codes, codebooks, 6.0, distance="squared_l2"
    )
    _, order = _brute_pq(queries, codes, codebooks, len(codes), "squared_l2")
    for query in range(len(queries)):
        expected = np.sort(order[query][distances_all[query] <= 6.0])
        np.testing.assert_array_equal(indices[lims[query] : lims[query + 1]], expected)


# -------------------------------------------------------------------------------------- sharded


def _mesh():
    return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))


@pytest.mark.parametrize("k", [9, 1500])
def test_sharded_hamming_knn_equals_single_device(k):
    assert jax.device_count() == 8
    rng = np.random.default_rng(10)
    # 1,003 items: not a multiple of 8 devices; 16 bits: many ties across shard borders.
    database = np.packbits(_random_codes(rng, 1003, 16) >= 0, axis=1)
    queries = np.packbits(_random_codes(rng, 5, 16) >= 0, axis=1)
    single = search.hamming_knn(queries, database, k)
    sharded = search.sharded_hamming_knn(queries, database, k, mesh=_mesh())
    np.testing.assert_array_equal(sharded[0], single[0])
    np.testing.assert_array_equal(sharded[1], single[1])


def test_sharded_pq_knn_equals_single_device():
    codebooks, features, queries = _integer_pq_problem(11, 501)
    codes = search.pq_encode(features, codebooks)
    single = search.pq_knn(queries, codes, codebooks, 30, distance="squared_l2")
    sharded = search.sharded_pq_knn(
        queries, codes, codebooks, 30, mesh=_mesh(), distance="squared_l2"
    )
    np.testing.assert_array_equal(sharded[0], single[0])
    np.testing.assert_array_equal(sharded[1], single[1])
