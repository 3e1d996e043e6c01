"""Properties of every metric under hostile input: values in [0, 1], never NaN, bad input refused by name.

Codes: real values of any finite magnitude (including zeros and +-inf, which binarise), +-1 integers
or booleans; labels multi-hot with rows that have no label; batch sizes down to 1. NaN codes or
labels, 0/1 integer codes, and counts below what a ranking shows are errors, never a score.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxretrieval import metrics

FLOAT32_MAX = float(np.finfo(np.float32).max)


def _codes(rng, rows, bits, kind):
    values = rng.standard_normal((rows, bits))
    if kind == "huge":
        return (values * FLOAT32_MAX / 4).astype(np.float32)
    if kind == "infinite":
        values[rng.random(values.shape) < 0.3] = np.inf
        values[rng.random(values.shape) < 0.3] = -np.inf
        values[0, 0] = 0.0
        return values
    if kind == "signs":
        return np.where(values >= 0, 1, -1).astype(np.int8)
    return values >= 0  # booleans


def _labels(rng, rows, classes):
    labels = (rng.random((rows, classes)) < 0.4).astype(np.float32)
    labels[rng.integers(0, rows)] = 0.0  # a row with no label
    return labels


def _in_unit_interval(value):
    return np.isfinite(value).all() and (np.asarray(value) >= 0).all() and (np.asarray(value) <= 1 + 1e-12).all()


@settings(max_examples=12)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1, 6]), st.sampled_from([1, 30]), st.sampled_from([3, 40]),
       st.sampled_from(["huge", "infinite", "signs", "bits"]), st.sampled_from([None, 1, 5, 100]))
def test_hamming_metrics_stay_in_the_unit_interval(seed, num_queries, num_database, num_bits, kind, top_k):
    rng = np.random.default_rng(seed)
    query_codes, db_codes = _codes(rng, num_queries, num_bits, kind), _codes(rng, num_database, num_bits, kind)
    query_labels, db_labels = _labels(rng, num_queries, 3), _labels(rng, num_database, 3)
    arguments = (query_codes, db_codes, query_labels, db_labels)
    for tie_aware in (False, True):
        assert _in_unit_interval(metrics.mean_average_precision(*arguments, top_k=top_k, tie_aware=tie_aware))
    assert _in_unit_interval(metrics.precision_within_radius(*arguments, radius=2))
    for average in ("macro", "micro"):
        precision, recall = metrics.precision_recall_curve(*arguments, average=average)
        assert _in_unit_interval(precision) and _in_unit_interval(recall) and precision.shape == (num_bits + 1,)
    distances, indices = metrics.hamming_ranking(query_codes, db_codes, top_k=top_k)
    assert (np.diff(distances, axis=1) >= 0).all() and ((indices >= 0) & (indices < num_database)).all()


@settings(max_examples=20)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 30), st.integers(1, 35))
def test_ranked_metrics_stay_in_the_unit_interval(seed, num_queries, num_database, depth):
    rng = np.random.default_rng(seed)
    ranked = np.stack([rng.permutation(num_database)[: min(depth, num_database)] for _ in range(num_queries)])
    ranked = np.pad(ranked, ((0, 0), (0, depth - ranked.shape[1])), constant_values=-1)  # -1 padding
    query_labels, db_labels = _labels(rng, num_queries, 3), _labels(rng, num_database, 3)
    everything = (query_labels[:, None] * db_labels[None]).sum(-1).__gt__(0).sum(1)  # relevant in the database
    for top_k in (None, 1, depth):
        assert _in_unit_interval(metrics.ranked_mean_average_precision(ranked, query_labels, db_labels, top_k=top_k))
    assert _in_unit_interval(metrics.ranked_mean_average_precision(ranked, query_labels, db_labels, num_relevant=everything))
    for k in sorted({1, depth}):
        assert _in_unit_interval(metrics.precision_at_k(ranked, query_labels, db_labels, k=k))
        assert _in_unit_interval(metrics.recall_at_k(ranked, query_labels, db_labels, k=k))
    precision, recall = metrics.ranked_precision_recall(ranked, query_labels, db_labels, cutoffs=range(1, depth + 1))
    assert _in_unit_interval(precision) and _in_unit_interval(recall) and (np.diff(recall) >= 0).all()
    np.testing.assert_allclose(precision[-1], metrics.precision_at_k(ranked, query_labels, db_labels, k=depth))
    np.testing.assert_allclose(recall[0], metrics.recall_at_k(ranked, query_labels, db_labels, k=1))


@settings(max_examples=20)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 20))
def test_revisited_map_stays_in_the_unit_interval(seed, num_queries, num_database):
    rng = np.random.default_rng(seed)
    ranks = np.stack([rng.permutation(num_database) for _ in range(num_queries)])
    gnd = []
    for _ in range(num_queries):
        groups = rng.integers(0, 4, num_database)  # 0 easy, 1 hard, 2 junk, 3 negative
        gnd.append({name: np.flatnonzero(groups == value).tolist() for value, name in enumerate(("easy", "hard", "junk"))})
    result = metrics.revisited_map(ranks, gnd, kappas=(1, 5))
    for protocol in ("easy", "medium", "hard"):
        assert all(_in_unit_interval(value) for value in result[protocol].values())


def test_non_finite_or_ambiguous_input_is_refused_by_name():
    codes, labels = np.ones((2, 4)), np.eye(2)
    nan_codes = codes.copy()
    nan_codes[0, 0] = np.nan
    with pytest.raises(ValueError, match="query_codes .*NaN"):
        metrics.mean_average_precision(nan_codes, codes, labels, labels)
    with pytest.raises(ValueError, match="db_labels contains NaN"):
        metrics.mean_average_precision(codes, codes, labels, np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"integer codes must be -1 or \+1, found values \[0, 1\]"):
        metrics.mean_average_precision(np.array([[0, 1]]), np.array([[1, 1]]), [[1]], [[1]])
    with pytest.raises(TypeError, match="unsigned"):
        metrics.precision_within_radius(np.array([[0, 1]], np.uint8), np.array([[1, 1]], np.uint8), [[1]], [[1]])


def test_num_relevant_below_the_relevant_items_found_is_an_error_not_an_ap_above_one():
    ranked, query_labels, db_labels = [[0, 1, 2]], [[1, 0]], [[1, 0], [1, 0], [1, 0]]
    with pytest.raises(ValueError, match=r"num_relevant\[0\]=2 is below the 3 relevant items query 0 has"):
        metrics.ranked_mean_average_precision(ranked, query_labels, db_labels, num_relevant=[2])  # AP 1.5 before
    with pytest.raises(ValueError, match="whole numbers >= 0"):
        metrics.ranked_mean_average_precision(ranked, query_labels, db_labels, num_relevant=[0.3])
    with pytest.raises(ValueError, match="whole numbers >= 0"):
        metrics.ranked_mean_average_precision(ranked, query_labels, db_labels, num_relevant=[-1])
    assert metrics.ranked_mean_average_precision(ranked, query_labels, db_labels, num_relevant=[6]) == 0.5
