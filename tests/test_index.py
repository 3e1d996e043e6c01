"""Tests of jaxretrieval.index: add / search / remove / range search, files, faiss interop."""
import json
import os

import faiss
import numpy as np
import pytest

from jaxretrieval import index as index_module
from jaxretrieval import search
from jaxretrieval.index import HammingIndex, IndexFormatError, PQIndex

NUM_BITS = 16


def _codes(rng, count):
    return np.where(rng.random((count, NUM_BITS)) < 0.5, 1, -1).astype(np.int8)


def _brute_search(database_codes, ids, queries, k):
    """Reference: distances to every stored code, stable sort (insertion order breaks ties)."""
    database = np.packbits(database_codes >= 0, axis=1)
    packed_queries = np.packbits(queries >= 0, axis=1)
    distances = np.bitwise_count(packed_queries[:, None] ^ database[None]).sum(-1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), ids[order]


@pytest.fixture()
def filled_index():
    rng = np.random.default_rng(0)
    first, second = _codes(rng, 150), _codes(rng, 90)
    index = HammingIndex(NUM_BITS)
    index.add(first)  # ids 0..149
    index.add(np.packbits(second >= 0, axis=1), ids=np.arange(1000, 1090))  # already packed
    return index, np.concatenate([first, second]), np.concatenate(
        [np.arange(150), np.arange(1000, 1090)]
    ), _codes(rng, 6)


def test_hamming_index_add_search_remove_agree_with_brute_force(filled_index):
    index, codes, ids, queries = filled_index
    assert len(index) == 240
    distances, found = index.search(queries, 12)
    expected_distances, expected_ids = _brute_search(codes, ids, queries, 12)
    np.testing.assert_array_equal(distances, expected_distances)
    np.testing.assert_array_equal(found, expected_ids)

    removed = np.concatenate([np.arange(0, 150, 3), np.arange(1000, 1030)])
    assert index.remove(removed) == len(removed)
    keep = ~np.isin(ids, removed)
    assert len(index) == keep.sum()
    distances, found = index.search(queries, 12)
    expected_distances, expected_ids = _brute_search(codes[keep], ids[keep], queries, 12)
    np.testing.assert_array_equal(distances, expected_distances)
    np.testing.assert_array_equal(found, expected_ids)

    index.add(codes[:2])  # default ids continue after the largest id so far
    np.testing.assert_array_equal(index.ids[-2:], [1090, 1091])


def test_hamming_index_pads_missing_results():
    index = HammingIndex(NUM_BITS)
    index.add(np.ones((2, NUM_BITS)))
    distances, ids = index.search(np.ones((1, NUM_BITS)), 3)
    np.testing.assert_array_equal(ids, [[0, 1, -1]])
    np.testing.assert_array_equal(distances, [[0, 0, NUM_BITS + 1]])


def test_hamming_index_range_search_equals_brute_force(filled_index):
    index, codes, ids, queries = filled_index
    lims, distances, found = index.range_search(queries, 5)
    brute = np.bitwise_count(
        np.packbits(queries >= 0, axis=1)[:, None] ^ np.packbits(codes >= 0, axis=1)[None]
    ).sum(-1)
    for query in range(len(queries)):
        inside = np.nonzero(brute[query] <= 5)[0]
        np.testing.assert_array_equal(found[lims[query] : lims[query + 1]], ids[inside])
        np.testing.assert_array_equal(distances[lims[query] : lims[query + 1]], brute[query, inside])


def test_hamming_index_rejects_bad_use():
    index = HammingIndex(NUM_BITS)
    with pytest.raises(ValueError, match="empty"):
        index.search(np.ones((1, NUM_BITS)), 1)
    with pytest.raises(ValueError, match=r"\[n, 16\] codes or \[n, 2\] packed"):
        index.add(np.ones((3, 5)))
    with pytest.raises(TypeError, match="ambiguous"):
        index.add(np.ones((3, NUM_BITS), np.uint8))
    index.add(np.ones((3, NUM_BITS)))
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.ones((1, NUM_BITS)), ids=[2])
    with pytest.raises(ValueError, match="duplicates"):
        index.add(np.ones((2, NUM_BITS)), ids=[7, 7])
    with pytest.raises(ValueError, match="not in the index"):
        index.remove([99])
    with pytest.raises(ValueError, match="num_bits must be a positive int"):
        HammingIndex(0)


# ------------------------------------------------------------------------------------------ files


def test_hamming_index_save_load_round_trip(filled_index, tmp_path):
    index, _, _, queries = filled_index
    index.remove([5, 1001])
    path = tmp_path / "codes.index"
    index.save(path)
    assert sorted(os.listdir(tmp_path)) == ["codes.index"]  # no temporary file left behind
    loaded = HammingIndex.load(path)
    assert len(loaded) == len(index) and loaded.num_bits == NUM_BITS
    for got, expected in zip(loaded.search(queries, 9), index.search(queries, 9)):
        np.testing.assert_array_equal(got, expected)
    loaded.add(np.ones((1, NUM_BITS)))
    assert loaded.ids[-1] == index.ids.max() + 1


def test_pq_index_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    codebooks = rng.integers(-3, 4, size=(4, 16, 2)).astype(np.float32)
    features = rng.integers(-3, 4, size=(120, 8)).astype(np.float32)
    queries = rng.integers(-3, 4, size=(5, 8)).astype(np.float32)
    index = PQIndex(codebooks, distance="spq")
    index.add(features, ids=np.arange(120) * 2)
    index.remove([0, 2, 4])
    index.save(tmp_path / "pq.npz")
    loaded = PQIndex.load(tmp_path / "pq.npz")
    assert loaded.distance == "spq"
    np.testing.assert_array_equal(loaded.codebooks, codebooks)
    for got, expected in zip(loaded.search(queries, 7), index.search(queries, 7)):
        np.testing.assert_array_equal(got, expected)
    # Search results are the user's ids; brute force through pq_knn on the remaining codes.
    distances, positions = search.pq_knn(queries, index._codes, codebooks, 7)
    np.testing.assert_array_equal(index.search(queries, 7)[1], index.ids[np.asarray(positions)])
    lims, _, found = index.range_search(queries, 3.0)
    assert lims.shape == (6,) and set(found) <= set(index.ids)


def _saved(tmp_path):
    index = HammingIndex(NUM_BITS)
    index.add(_codes(np.random.default_rng(2), 50))
    path = tmp_path / "saved.npz"
    index.save(path)
    return path


def test_truncated_file_is_rejected_with_its_path(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match="saved.npz.*truncated or corrupted"):
        HammingIndex.load(path)


def test_corrupted_array_bytes_fail_the_checksum(tmp_path):
    path = _saved(tmp_path)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["codes"] = arrays["codes"].copy()
    arrays["codes"][3, 0] ^= 1  # one flipped bit
    np.savez(path, **arrays)
    with pytest.raises(IndexFormatError, match="checksum mismatch"):
        HammingIndex.load(path)


def test_wrong_version_and_wrong_kind_are_rejected(tmp_path):
    path = _saved(tmp_path)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays["header"].tobytes())
    header["format_version"] = index_module.FORMAT_VERSION + 1
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(IndexFormatError, match="format version 2; .* reads version 1"):
        HammingIndex.load(tmp_path / "future.npz")
    with pytest.raises(IndexFormatError, match="holds a 'hamming' index, not 'pq'"):
        PQIndex.load(path)
    (tmp_path / "garbage.npz").write_bytes(b"not an archive at all")
    with pytest.raises(IndexFormatError, match="garbage.npz"):
        HammingIndex.load(tmp_path / "garbage.npz")


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    before = path.read_bytes()
    index = HammingIndex(NUM_BITS)
    index.add(np.ones((3, NUM_BITS)))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(index_module.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["saved.npz"]


# ------------------------------------------------------------------------------------------ faiss


def test_hamming_index_faiss_export_and_import_give_identical_results(filled_index):
    index, _, _, queries = filled_index
    packed_queries = np.packbits(queries >= 0, axis=1)
    exported = index.to_faiss()  # custom ids -> IndexBinaryIDMap
    faiss_distances, faiss_ids = exported.search(packed_queries, 10)
    distances, ids = index.search(queries, 10)
    np.testing.assert_array_equal(distances, faiss_distances)
    np.testing.assert_array_equal(ids, faiss_ids)
    imported = HammingIndex.from_faiss(exported)
    for got, expected in zip(imported.search(queries, 10), (distances, ids)):
        np.testing.assert_array_equal(got, expected)
    flat = faiss.IndexBinaryFlat(NUM_BITS)
    flat.add(np.packbits(queries >= 0, axis=1))
    assert isinstance(HammingIndex.from_faiss(flat).to_faiss(), faiss.IndexBinaryFlat)


def test_pq_index_faiss_export_and_import_give_identical_results():
    rng = np.random.default_rng(3)
    training = rng.normal(size=(2000, 8)).astype(np.float32)
    faiss_index = faiss.IndexPQ(8, 2, 8)
    faiss_index.train(training)
    faiss_index.add(training)
    queries = rng.normal(size=(6, 8)).astype(np.float32)
    imported = PQIndex.from_faiss(faiss_index)
    assert imported.distance == "squared_l2" and len(imported) == 2000
    faiss_distances, faiss_ids = faiss_index.search(queries, 15)
    distances, ids = imported.search(queries, 15)
    np.testing.assert_array_equal(ids, faiss_ids)
    np.testing.assert_allclose(distances, faiss_distances, rtol=1e-4, atol=1e-4)
    exported = imported.to_faiss()
    exported_distances, exported_ids = exported.search(queries, 15)
    np.testing.assert_array_equal(exported_ids, faiss_ids)
    np.testing.assert_array_equal(exported_distances, faiss_distances)


# ------------------------------------------------------------------------------ flat index, load_index


def test_flat_index_searches_by_similarity_with_the_users_ids_and_round_trips(tmp_path):
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((40, 6)).astype(np.float32)
    queries = rng.standard_normal((5, 6)).astype(np.float32)
    ids = np.arange(100, 140)
    for metric in ("inner_product", "cosine"):
        flat = index_module.FlatIndex(6, metric=metric)
        flat.add(vectors, ids=ids)
        similarities, found = flat.search(queries, 4)
        database = vectors / np.linalg.norm(vectors, axis=1, keepdims=True) if metric == "cosine" else vectors
        query_rows = queries / np.linalg.norm(queries, axis=1, keepdims=True) if metric == "cosine" else queries
        expected_similarities, expected_positions = search.inner_product_knn(query_rows, database, 4)
        np.testing.assert_array_equal(found, ids[np.asarray(expected_positions)])
        np.testing.assert_allclose(similarities, np.asarray(expected_similarities), rtol=1e-6)
        flat.save(tmp_path / f"{metric}.npz")
        loaded = index_module.load_index(tmp_path / f"{metric}.npz")
        assert isinstance(loaded, index_module.FlatIndex) and loaded.metric == metric
        np.testing.assert_array_equal(loaded.search(queries, 4)[1], found)
        faiss_similarities, faiss_ids = flat.to_faiss().search(query_rows, 4)
        np.testing.assert_array_equal(faiss_ids, found)
        np.testing.assert_allclose(faiss_similarities, similarities, atol=1e-5)
    lims, similarities, found = flat.range_search(queries[:1], 0.5)
    full = (queries[:1] / np.linalg.norm(queries[:1])) @ (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(found, ids[np.flatnonzero(full[0] >= 0.5)])


def test_load_index_reads_every_kind_and_refuses_a_wrong_one(tmp_path):
    hamming = index_module.HammingIndex(16)
    hamming.add(np.where(np.random.default_rng(0).standard_normal((9, 16)) >= 0, 1, -1))
    hamming.save(tmp_path / "hamming.npz")
    pq = index_module.PQIndex(np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32))
    pq.add(np.random.default_rng(2).standard_normal((9, 6)).astype(np.float32))
    pq.save(tmp_path / "pq.npz")
    assert isinstance(index_module.load_index(tmp_path / "hamming.npz"), index_module.HammingIndex)
    assert isinstance(index_module.load_index(tmp_path / "pq.npz"), index_module.PQIndex)
    with pytest.raises(index_module.IndexFormatError, match="holds a 'pq' index, not 'flat'"):
        index_module.FlatIndex.load(tmp_path / "pq.npz")
    (tmp_path / "bad.npz").write_bytes(b"not an index")
    with pytest.raises(index_module.IndexFormatError, match="not a readable index archive"):
        index_module.load_index(tmp_path / "bad.npz")


def test_flat_index_refuses_bad_vectors():
    flat = index_module.FlatIndex(3)
    with pytest.raises(ValueError, match=r"vectors must have shape \[n, 3\]"):
        flat.add(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        flat.add(np.full((1, 3), np.inf, np.float32))
    with pytest.raises(ValueError, match="empty"):
        flat.search(np.ones((1, 3), np.float32), 1)
    with pytest.raises(ValueError, match="metric must be one of"):
        index_module.FlatIndex(3, metric="l2")
