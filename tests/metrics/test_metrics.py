"""jaxretrieval.metrics: golden values, a plain numpy stable-argsort reference, tie-aware expectation
against enumerated tie orders, the Revisited Oxford/Paris protocol, and bad input."""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxretrieval import metrics
from jaxretrieval.metrics import _common as metrics_common
from jaxretrieval.search import _threads as search_threads
from jaxretrieval.centers import hash_centers

# vectors.json["hamming_map"], also as literals so the case runs without ../shared.
GOLDEN_DB_CODES = [[1, 1, 1, 1], [1, 1, 1, -1], [1, 1, -1, -1], [-1, -1, -1, -1],
                   [1, -1, 1, -1], [-1, 1, -1, 1], [1, 1, 1, 1], [-1, -1, 1, 1]]
GOLDEN_DB_LABELS = [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]
GOLDEN_QUERY_CODES = [[1, 1, 1, 1], [-1, -1, -1, 1], [1, -1, -1, -1], [1, 1, 1, -1]]
GOLDEN_QUERY_LABELS = [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]]


# --- independent references (plain loops over a numpy stable argsort) ----------------------------


def reference_ranking(query_codes, db_codes):
    query_bits, db_bits = np.asarray(query_codes) >= 0, np.asarray(db_codes) >= 0
    distances = (query_bits[:, None, :] != db_bits[None, :, :]).sum(-1)
    return distances, np.argsort(distances, axis=1, kind="stable")


def reference_relevance(query_labels, db_labels):
    return (np.asarray(query_labels, float) @ np.asarray(db_labels, float).T) > 0


def reference_ap_of_order(relevant_in_order, top_k):
    """DeepHash-pytorch CalcTopMap for one query, without its off-by-one."""
    top = np.asarray(relevant_in_order[:top_k], bool)
    if not top.any():
        return 0.0
    positions = np.flatnonzero(top) + 1.0
    return float(np.mean(np.arange(1, top.sum() + 1) / positions))


def reference_map(query_codes, db_codes, query_labels, db_labels, top_k=None):
    distances, order = reference_ranking(query_codes, db_codes)
    relevance = reference_relevance(query_labels, db_labels)
    top_k = top_k or distances.shape[1]
    return float(np.mean([reference_ap_of_order(relevance[q][order[q]], top_k) for q in range(len(order))]))


def tie_order_average(distances, relevant, top_k):
    """Mean AP@k over every database order consistent with ascending distance (ties permuted)."""
    values = []
    for order in itertools.permutations(range(len(distances))):
        if all(distances[a] <= distances[b] for a, b in zip(order, order[1:])):
            values.append(reference_ap_of_order(relevant[list(order)], top_k))
    return float(np.mean(values))


# A few array sizes only: every new shape costs a jit compilation of the distance kernel.
codes_strategy = st.tuples(st.integers(1, 6), st.sampled_from([1, 3]), st.sampled_from([1, 5, 12])).flatmap(
    lambda sizes: st.tuples(
        st.lists(st.lists(st.sampled_from([-1, 1]), min_size=sizes[0], max_size=sizes[0]), min_size=sizes[1], max_size=sizes[1]),
        st.lists(st.lists(st.sampled_from([-1, 1]), min_size=sizes[0], max_size=sizes[0]), min_size=sizes[2], max_size=sizes[2]),
    )
)


def random_problem(seed, num_queries=7, num_database=40, num_bits=6, num_classes=4, multi_label=True):
    rng = np.random.default_rng(seed)
    query_codes = rng.standard_normal((num_queries, num_bits)).astype(np.float32)
    db_codes = rng.choice([-1, 1], size=(num_database, num_bits))
    if multi_label:
        query_labels = (rng.random((num_queries, num_classes)) < 0.3).astype(np.float32)
        db_labels = (rng.random((num_database, num_classes)) < 0.3).astype(np.float32)
    else:
        query_labels = np.eye(num_classes)[rng.integers(0, num_classes, num_queries)]
        db_labels = np.eye(num_classes)[rng.integers(0, num_classes, num_database)]
    return query_codes, db_codes, query_labels, db_labels


# --- golden values -----------------------------------------------------------------------------


def test_hamming_map_golden_literal():
    """mAP@3 = 0.625 (vectors.json): tie order by index, the unlabelled query counts as 0."""
    value = metrics.mean_average_precision(GOLDEN_QUERY_CODES, GOLDEN_DB_CODES, GOLDEN_QUERY_LABELS, GOLDEN_DB_LABELS, top_k=3)
    assert value == pytest.approx(0.625, abs=1e-12)
    # The CSQ convention drops the unlabelled query: 0.625 * 4 / 3.
    dropped = metrics.mean_average_precision(
        GOLDEN_QUERY_CODES, GOLDEN_DB_CODES, GOLDEN_QUERY_LABELS, GOLDEN_DB_LABELS, top_k=3, drop_unlabelled_queries=True
    )
    assert dropped == pytest.approx(0.625 * 4 / 3, abs=1e-12)


def test_hamming_map_golden_vectors(reference_vectors):
    case = reference_vectors["hamming_map"]
    value = metrics.mean_average_precision(
        case["query_codes"], case["db_codes"], case["query_labels"], case["db_labels"], top_k=3
    )
    assert value == pytest.approx(case["map_at_3"], abs=1e-6)


def test_hand_computed_map_and_ranking():
    # Query 1111; database distances [4, 1, 0, 1, 1] -> order 2, 1, 3, 4, 0; relevant: 0, 2, 3.
    db_codes = [[-1, -1, -1, -1], [1, 1, 1, -1], [1, 1, 1, 1], [1, 1, -1, 1], [-1, 1, 1, 1]]
    db_labels = [[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]]
    distances, indices = metrics.hamming_ranking([[1, 1, 1, 1]], db_codes)
    assert distances.tolist() == [[0, 1, 1, 1, 4]] and indices.tolist() == [[2, 1, 3, 4, 0]]
    assert distances.dtype == np.int32 and indices.dtype == np.int32
    value = lambda **kw: metrics.mean_average_precision([[1, 1, 1, 1]], db_codes, [[1, 0]], db_labels, **kw)  # noqa: E731
    assert value(top_k=1) == 1.0
    assert value(top_k=3) == pytest.approx((1 + 2 / 3) / 2)
    assert value() == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert value(top_k=100) == value()  # beyond the database = all of it, no item dropped
    # Real-valued codes binarise at 0 (0 -> +1).
    assert metrics.mean_average_precision([[0.0, 0.2, 3.0, 1e-9]], db_codes, [[1, 0]], db_labels, top_k=3) == value(top_k=3)


def test_perfect_ranking_has_map_one():
    centers = hash_centers(10, 16)
    classes = np.arange(60) % 10
    codes, labels = centers[classes], np.eye(10)[classes]
    assert metrics.mean_average_precision(codes, codes, labels, labels) == 1.0
    assert metrics.mean_average_precision(codes, codes, labels, labels, top_k=3, tie_aware=True) == 1.0


# --- properties against the numpy reference ----------------------------------------------------


@given(codes_strategy, st.integers(0, 2**32 - 1), st.sampled_from([None, 1, 2, 5, 50]))
def test_map_equals_stable_argsort_reference(codes, seed, top_k):
    query_codes, db_codes = np.asarray(codes[0]), np.asarray(codes[1])
    rng = np.random.default_rng(seed)
    query_labels = (rng.random((len(query_codes), 3)) < 0.4).astype(np.float32)
    db_labels = (rng.random((len(db_codes), 3)) < 0.4).astype(np.float32)
    expected = reference_map(query_codes, db_codes, query_labels, db_labels, top_k)
    assert metrics.mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=top_k) == pytest.approx(expected, abs=1e-12)
    distances, order = reference_ranking(query_codes, db_codes)
    got_distances, got_indices = metrics.hamming_ranking(query_codes, db_codes, top_k=top_k)
    k = min(top_k or len(db_codes), len(db_codes))
    np.testing.assert_array_equal(got_indices, order[:, :k])
    np.testing.assert_array_equal(got_distances, np.take_along_axis(distances, order, 1)[:, :k])


def test_hamming_ranking_equals_faiss_binary_flat():
    """The tie order is faiss IndexBinaryFlat's (ascending id among equal distances)."""
    import faiss  # part of the [test] extra: a missing faiss fails here rather than skipping
    rng = np.random.default_rng(6)
    query_codes, db_codes = rng.choice([-1, 1], size=(9, 64)), rng.choice([-1, 1], size=(700, 64))
    index = faiss.IndexBinaryFlat(64)
    index.add(np.packbits(db_codes >= 0, axis=1))
    for top_k in (10, 700):
        faiss_distances, faiss_indices = index.search(np.packbits(query_codes >= 0, axis=1), top_k)
        distances, indices = metrics.hamming_ranking(query_codes, db_codes, top_k=top_k)
        np.testing.assert_array_equal(indices, faiss_indices)
        np.testing.assert_array_equal(distances, faiss_distances)


@given(codes_strategy)
def test_distances_symmetric(codes):
    query_codes, db_codes = np.asarray(codes[0]), np.asarray(codes[1])
    forward_d, forward_i = metrics.hamming_ranking(query_codes, db_codes)
    backward_d, backward_i = metrics.hamming_ranking(db_codes, query_codes)
    forward = np.empty_like(forward_d)
    np.put_along_axis(forward, forward_i, forward_d, axis=1)
    backward = np.empty_like(backward_d)
    np.put_along_axis(backward, backward_i, backward_d, axis=1)
    np.testing.assert_array_equal(forward, backward.T)


def test_chunked_threaded_and_wide_paths_equal_reference(monkeypatch):
    """Several query chunks (last one padded), worker threads, codes wider than 255 bits."""
    query_codes, db_codes, query_labels, db_labels = random_problem(0, num_queries=37, num_database=50, num_bits=300)
    expected = reference_map(query_codes, db_codes, query_labels, db_labels, 7)
    monkeypatch.setattr(metrics_common, "CHUNK_ENTRIES", 8 * 50)  # 8 queries per chunk
    monkeypatch.setattr(search_threads, "available_cores", lambda: 2)
    assert metrics.mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=7) == pytest.approx(expected, abs=1e-12)
    _, order = reference_ranking(query_codes, db_codes)
    np.testing.assert_array_equal(metrics.hamming_ranking(query_codes, db_codes, top_k=7)[1], order[:, :7])


def test_many_classes_use_several_label_words():
    query_codes, db_codes, query_labels, db_labels = random_problem(1, num_classes=80)
    for top_k in (None, 9):
        expected = reference_map(query_codes, db_codes, query_labels, db_labels, top_k)
        assert metrics.mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=top_k) == pytest.approx(expected, abs=1e-12)


# --- tie-aware ---------------------------------------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.sampled_from([None, 1, 2, 3, 4, 6]))
def test_tie_aware_equals_mean_over_tie_orders(seed, top_k):
    rng = np.random.default_rng(seed)
    num_database = int(rng.integers(1, 7))
    db_codes = rng.choice([-1, 1], size=(num_database, 2))  # 2 bits: heavy ties
    query_codes = rng.choice([-1, 1], size=(2, 2))
    db_labels = (rng.random((num_database, 2)) < 0.5).astype(float)
    query_labels = np.array([[1.0, 0.0], [0.0, 1.0]])
    distances, _ = reference_ranking(query_codes, db_codes)
    relevance = reference_relevance(query_labels, db_labels)
    k = top_k or num_database
    expected = np.mean([tie_order_average(distances[q], relevance[q], k) for q in range(2)])
    got = metrics.mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=top_k, tie_aware=True)
    assert got == pytest.approx(expected, abs=1e-10)


def test_tie_aware_hand_value_and_without_ties():
    db_codes = [[-1, -1, -1, -1], [1, 1, 1, -1], [1, 1, 1, 1], [1, 1, -1, 1]]
    db_labels = [[1, 0], [0, 1], [1, 0], [1, 0]]
    # Distances 4, 1, 0, 1: the tie {1, 3} in either order -> AP@3 = (1 + 2/3)/2 or 1; mean 11/12.
    got = metrics.mean_average_precision([[1, 1, 1, 1]], db_codes, [[1, 0]], db_labels, top_k=3, tie_aware=True)
    assert got == pytest.approx(11 / 12)
    # Distinct distances: tie-aware equals the exact value.
    query_codes, db_codes, query_labels, db_labels = [[1, 1, 1]], [[1, 1, 1], [1, 1, -1], [1, -1, -1], [-1, -1, -1]], [[1]], [[0], [1], [1], [0]]
    for top_k in (1, 2, 3, None):
        assert metrics.mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=top_k, tie_aware=True) == pytest.approx(
            metrics.mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=top_k)
        )


# --- metrics over explicit rankings ------------------------------------------------------------


def test_ranked_metrics_hand_values_and_padding():
    db_labels = [[1, 0], [0, 1], [1, 0], [1, 0]]
    ranking = [[2, 1, 0, -1]]  # relevant, not, relevant, padding
    assert metrics.ranked_mean_average_precision(ranking, [[1, 0]], db_labels) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.ranked_mean_average_precision(ranking, [[1, 0]], db_labels, top_k=2) == 1.0
    # Information-retrieval AP: 3 relevant items exist in the database.
    assert metrics.ranked_mean_average_precision(ranking, [[1, 0]], db_labels, num_relevant=[3]) == pytest.approx((1 + 2 / 3) / 3)
    assert metrics.precision_at_k(ranking, [[1, 0]], db_labels, k=4) == 0.5
    assert metrics.recall_at_k(ranking, [[1, 0]], db_labels, k=3) == pytest.approx(2 / 3)
    assert metrics.recall_at_k([[1]], [[0, 0]], db_labels, k=1) == 0.0  # nothing relevant: 0, counted


@pytest.mark.parametrize("top_k", [None, 1, 8])
def test_ranked_map_of_hamming_ranking_equals_map(top_k):
    query_codes, db_codes, query_labels, db_labels = random_problem(2)
    _, indices = metrics.hamming_ranking(query_codes, db_codes, top_k=top_k)
    assert metrics.ranked_mean_average_precision(indices, query_labels, db_labels) == pytest.approx(
        metrics.mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=top_k), abs=1e-12
    )
    relevance = reference_relevance(query_labels, db_labels)
    found = np.take_along_axis(relevance, indices, 1)[:, :1].sum(1)
    assert metrics.precision_at_k(indices, query_labels, db_labels, k=1) == pytest.approx(found.mean())
    expected_recall = np.where(relevance.sum(1) > 0, found / np.maximum(relevance.sum(1), 1), 0).mean()
    assert metrics.recall_at_k(indices, query_labels, db_labels, k=1) == pytest.approx(expected_recall)


# --- radius precision and precision-recall curves ------------------------------------------------


def test_precision_within_radius_and_curve_hand_values():
    query_codes, db_codes = [[1, 1, 1, 1], [-1, -1, -1, -1]], [[1, 1, 1, -1], [1, -1, -1, 1], [1, 1, 1, 1]]
    query_labels, db_labels = [[1, 0], [0, 1]], [[1, 0], [1, 0], [0, 1]]
    # Query 0 within radius 1: items 0 (rel), 2 (not) -> 1/2. Query 1: nothing within 1 -> 0, counted.
    assert metrics.precision_within_radius(query_codes, db_codes, query_labels, db_labels, radius=1) == 0.25
    assert metrics.precision_within_radius(query_codes, db_codes, query_labels, db_labels, radius=0) == 0.0
    precision, recall = metrics.precision_recall_curve(query_codes, db_codes, query_labels, db_labels, average="micro")
    # Distances: query 0 -> [1, 2, 0], query 1 -> [3, 2, 4]. Retrieved by radius (both queries):
    # 1, 2, 4, 5, 6; relevant among them: 0, 1, 2, 2, 3 (of 3 relevant in all).
    np.testing.assert_allclose(precision, [0, 1 / 2, 2 / 4, 2 / 5, 3 / 6])
    np.testing.assert_allclose(recall, [0, 1 / 3, 2 / 3, 2 / 3, 1])
    precision, recall = metrics.precision_recall_curve(query_codes, db_codes, query_labels, db_labels)
    # Macro: r0 q0 0/1 (q1 retrieves nothing: left out); r1 q0 1/2; r2 mean(2/3, 0/1); r3 mean(2/3, 0/2);
    # r4 mean(2/3, 1/3). Recall: mean over both queries of 0/2 & 0/1, 1/2 & 0, 1 & 0, 1 & 0, 1 & 1.
    np.testing.assert_allclose(precision, [0, 1 / 2, 1 / 3, 1 / 3, 1 / 2])
    np.testing.assert_allclose(recall, [0, 1 / 4, 1 / 2, 1 / 2, 1])


@pytest.mark.parametrize("seed", [3, 4])
def test_radius_metrics_equal_brute_force(seed):
    query_codes, db_codes, query_labels, db_labels = random_problem(seed)
    distances, _ = reference_ranking(query_codes, db_codes)
    relevance = reference_relevance(query_labels, db_labels)
    for radius in (0, 2, 6):
        inside = distances <= radius
        per_query = np.where(inside.sum(1) > 0, (inside & relevance).sum(1) / np.maximum(inside.sum(1), 1), 0)
        assert metrics.precision_within_radius(query_codes, db_codes, query_labels, db_labels, radius=radius) == pytest.approx(per_query.mean())
    precision, recall = metrics.precision_recall_curve(query_codes, db_codes, query_labels, db_labels, average="micro")
    for radius in range(7):
        inside = distances <= radius
        assert precision[radius] == pytest.approx((inside & relevance).sum() / max(inside.sum(), 1))
        assert recall[radius] == pytest.approx((inside & relevance).sum() / relevance.sum())


# --- Revisited Oxford / Paris ------------------------------------------------------------------


def test_trapezoid_average_precision_golden(reference_vectors):
    case = reference_vectors["revisited_ap"]
    assert metrics.trapezoid_average_precision([0, 2, 5], 3) == pytest.approx(case["compute_ap([0,2,5],3)"], abs=1e-9)
    assert metrics.trapezoid_average_precision([1, 2], 4) == pytest.approx(case["compute_ap([1,2],4)"], abs=1e-9)


def test_trapezoid_average_precision_literals():
    assert metrics.trapezoid_average_precision([0, 2, 5], 3) == pytest.approx(0.6777777778, abs=1e-9)
    assert metrics.trapezoid_average_precision([1, 2], 4) == pytest.approx(0.2083333333, abs=1e-9)
    assert metrics.trapezoid_average_precision([], 2) == 0.0
    assert metrics.trapezoid_average_precision([0, 1], 2) == 1.0


def reference_revisited(ranks_db_by_query, gnd, kappas):
    """revisitop compute_map, as a direct loop over its own (transposed) ranks layout."""
    ranks = np.asarray(ranks_db_by_query)
    aps, precisions = [], []
    for i, entry in enumerate(gnd):
        positives = np.asarray(entry["ok"])
        if positives.size == 0:
            continue
        pos = np.arange(ranks.shape[0])[np.isin(ranks[:, i], positives)]
        junk = np.arange(ranks.shape[0])[np.isin(ranks[:, i], entry["junk"])]
        k = ij = 0
        for ip in range(len(pos)):
            while ij < len(junk) and pos[ip] > junk[ij]:
                k, ij = k + 1, ij + 1
            pos[ip] -= k
        ap = 0.0
        for j, rank in enumerate(pos):
            ap += ((j / rank if rank else 1.0) + (j + 1) / (rank + 1)) / (2 * len(positives))
        aps.append(ap)
        pos = pos + 1
        precisions.append([(pos <= min(pos.max(), kappa)).sum() / min(pos.max(), kappa) for kappa in kappas])
    return float(np.mean(aps)), np.mean(precisions, axis=0)


def test_revisited_map_equals_revisitop_loop():
    rng = np.random.default_rng(5)
    num_queries, num_database = 4, 30
    ranks = np.stack([rng.permutation(num_database) for _ in range(num_queries)])
    gnd = []
    for _ in range(num_queries):
        items = rng.permutation(num_database)
        gnd.append({"easy": items[:3].tolist(), "hard": items[3:6].tolist(), "junk": items[6:9].tolist()})
    gnd[3]["easy"] = []  # no easy positive: excluded from the easy protocol
    result = metrics.revisited_map(ranks, gnd, kappas=(1, 5, 10))
    setups = {
        "easy": lambda g: {"ok": g["easy"], "junk": g["junk"] + g["hard"]},
        "medium": lambda g: {"ok": g["easy"] + g["hard"], "junk": g["junk"]},
        "hard": lambda g: {"ok": g["hard"], "junk": g["junk"] + g["easy"]},
    }
    for protocol, setup in setups.items():
        expected_map, expected_precision = reference_revisited(ranks.T, [setup(g) for g in gnd], (1, 5, 10))
        assert result[protocol]["mAP"] == pytest.approx(expected_map, abs=1e-12)
        for column, kappa in enumerate((1, 5, 10)):
            assert result[protocol][f"mP@{kappa}"] == pytest.approx(expected_precision[column], abs=1e-12)


def test_revisited_map_hand_value():
    result = metrics.revisited_map([[3, 0, 2, 1]], [{"easy": [0], "hard": [1], "junk": [2]}], kappas=(1, 2))
    # Medium: junk 2 removed -> [3, 0, 1], positives at ranks 1, 2 -> (0 + 1/2 + 1/2 + 2/3) / 4.
    assert result["medium"]["mAP"] == pytest.approx((0.5 + 0.5 + 2 / 3) / 4)
    assert result["medium"]["mP@2"] == 0.5 and result["easy"]["mP@1"] == 0.0
    assert set(result) == {"easy", "medium", "hard"}


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_is_named():
    q, d, ql, dl = [[1, -1]], [[1, 1], [-1, 1]], [[1, 0]], [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match="query_codes .* different numbers of bits"):
        metrics.mean_average_precision([[1, -1, 1]], d, ql, dl)
    with pytest.raises(ValueError, match="NaN"):
        metrics.mean_average_precision([[np.nan, 1.0]], d, ql, dl)
    with pytest.raises(ValueError, match="db_codes must be a non-empty"):
        metrics.mean_average_precision(q, np.zeros((0, 2)), ql, np.zeros((0, 2)))
    with pytest.raises(ValueError, match="db_labels has 3 classes"):
        metrics.mean_average_precision(q, d, ql, [[1, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match=r"query_labels must have shape \[1, num_classes\]"):
        metrics.mean_average_precision(q, d, [[1, 0], [0, 1]], dl)
    with pytest.raises(ValueError, match="top_k must be positive"):
        metrics.mean_average_precision(q, d, ql, dl, top_k=0)
    with pytest.raises(TypeError, match="top_k must be an int"):
        metrics.mean_average_precision(q, d, ql, dl, top_k=2.5)
    with pytest.raises(TypeError, match="query_codes must hold real numbers"):
        metrics.mean_average_precision([["a", "b"]], d, ql, dl)
    with pytest.raises(ValueError, match="no query has a label"):
        metrics.mean_average_precision(q, d, [[0, 0]], dl, drop_unlabelled_queries=True)
    with pytest.raises(ValueError, match="ranked_indices must lie in"):
        metrics.precision_at_k([[0, 5]], ql, dl, k=1)
    with pytest.raises(ValueError, match="top_k=3 exceeds"):
        metrics.ranked_mean_average_precision([[0, 1]], ql, dl, top_k=3)
    with pytest.raises(ValueError, match="k must be positive"):
        metrics.recall_at_k([[0, 1]], ql, dl, k=0)
    with pytest.raises(TypeError, match="ranked_indices must be integers"):
        metrics.precision_at_k([[0.0, 1.0]], ql, dl, k=1)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        metrics.precision_within_radius(q, d, ql, dl, radius=-1)
    with pytest.raises(ValueError, match="average must be"):
        metrics.precision_recall_curve(q, d, ql, dl, average="weighted")
    with pytest.raises(ValueError, match="gnd has 2 entries"):
        metrics.revisited_map([[0, 1]], [{"easy": [], "hard": [], "junk": []}] * 2)
    with pytest.raises(ValueError, match="positive_ranks must be"):
        metrics.trapezoid_average_precision([2, 1], 3)
