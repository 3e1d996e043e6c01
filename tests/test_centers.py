"""jaxretrieval.centers: Hadamard rows, random balanced centers with a checked minimum distance,
distance statistics, and the multi-label vote."""
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxretrieval.centers import center_distance_stats, hash_centers, multilabel_centers

H8_FIRST_ROWS = [
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, -1, 1, -1, 1, -1, 1, -1],
    [1, 1, -1, -1, 1, 1, -1, -1],
    [1, -1, -1, 1, 1, -1, -1, 1],
]
GOLDEN_TIE_BREAKER = [1, -1, -1, 1, 1, -1, 1, -1]
GOLDEN_LABELS = [[0, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1]]
GOLDEN_CENTERS_OUT = [[1, -1, -1, -1, 1, -1, 1, -1], [1, 1, 1, -1, 1, 1, 1, -1], [1, -1, -1, 1, 1, -1, -1, 1]]


def brute_force_distances(centers):
    centers = np.asarray(centers)
    distances = (centers[:, None, :] != centers[None, :, :]).sum(-1)
    return distances[np.triu_indices(len(centers), 1)]


# --- Hadamard ----------------------------------------------------------------------------------


def test_hadamard_rows_are_sylvester_order():
    centers = hash_centers(4, 8)
    assert centers.dtype == np.int8
    np.testing.assert_array_equal(centers, H8_FIRST_ROWS)
    both = hash_centers(16, 8)  # [H; -H]
    np.testing.assert_array_equal(both[8:], -both[:8])
    np.testing.assert_array_equal(both[:4], H8_FIRST_ROWS)
    assert center_distance_stats(both)["min_distance"] == 4
    assert set(brute_force_distances(both).tolist()) == {4, 8}


def test_hadamard_ignores_key_and_checks_min_distance():
    np.testing.assert_array_equal(hash_centers(10, 32, key=jax.random.key(3)), hash_centers(10, 32))
    assert center_distance_stats(hash_centers(64, 32))["min_distance"] == 16
    with pytest.raises(ValueError, match="only 4 apart, below min_distance=5"):
        hash_centers(3, 8, min_distance=5)


# --- random centers ----------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes,num_bits", [(100, 48), (40, 16), (30, 7), (20, 12)])
def test_random_centers_balanced_and_far_apart(num_classes, num_bits):
    centers = hash_centers(num_classes, num_bits, key=jax.random.key(0))
    assert centers.shape == (num_classes, num_bits) and centers.dtype == np.int8
    assert set(np.unique(centers).tolist()) == {-1, 1}
    # Exactly num_bits // 2 entries are -1 (odd num_bits: one more +1).
    np.testing.assert_array_equal((centers == -1).sum(1), num_bits // 2)
    assert brute_force_distances(centers).min() >= num_bits // 4


def test_random_centers_deterministic_from_key():
    first = hash_centers(50, 48, key=jax.random.key(7))
    np.testing.assert_array_equal(first, hash_centers(50, 48, key=jax.random.key(7)))
    assert not np.array_equal(first, hash_centers(50, 48, key=jax.random.key(8)))


@given(st.integers(2, 40), st.integers(4, 20), st.integers(0, 2**31 - 1))
def test_random_centers_meet_requested_distance(num_classes, num_bits, seed):
    min_distance = num_bits // 3
    try:
        centers = hash_centers(num_classes, num_bits, key=jax.random.key(seed), min_distance=min_distance)
    except ValueError as error:  # only allowed with the best distance named
        assert "best minimum distance reached was" in str(error)
        return
    assert brute_force_distances(centers).min() >= min_distance
    assert center_distance_stats(centers)["min_distance"] == brute_force_distances(centers).min()


def test_unreachable_distance_names_best():
    # Only C(8, 4) = 70 balanced 8-bit vectors exist: 100 distinct centers are impossible.
    with pytest.raises(ValueError, match=r"best minimum distance reached was 0"):
        hash_centers(100, 8, key=jax.random.key(0), min_distance=2)
    with pytest.raises(ValueError, match="pass key="):
        hash_centers(100, 48)
    with pytest.raises(ValueError, match="num_bits must be a positive int"):
        hash_centers(3, 0)
    with pytest.raises(ValueError, match="min_distance must lie in"):
        hash_centers(3, 48, key=jax.random.key(0), min_distance=49)


def test_forty_thousand_classes_in_seconds():
    start = time.perf_counter()
    centers = hash_centers(40_000, 64, key=jax.random.key(0))
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"hash_centers(40000, 64) took {elapsed:.1f} s"
    np.testing.assert_array_equal(centers.sum(1), 0)
    sample = centers[np.random.default_rng(0).choice(40_000, 1_500, replace=False)]
    assert brute_force_distances(sample).min() >= 16


def test_center_distance_stats_equal_brute_force():
    rng = np.random.default_rng(0)
    centers = rng.choice([-1, 1], size=(700, 10))  # more than one 512-row block, duplicates likely
    distances = brute_force_distances(centers)
    stats = center_distance_stats(centers)
    assert stats["min_distance"] == distances.min() == 0
    assert stats["mean_distance"] == pytest.approx(distances.mean(), rel=1e-12)
    with pytest.raises(ValueError, match="only -1 and \\+1"):
        center_distance_stats([[0, 1], [1, 1]])


# --- multi-label vote --------------------------------------------------------------------------


def test_multilabel_centers_golden_literal():
    out = multilabel_centers(jnp.array(GOLDEN_LABELS), jnp.asarray(hash_centers(4, 8)), tie_breaker=jnp.array(GOLDEN_TIE_BREAKER))
    np.testing.assert_array_equal(out, GOLDEN_CENTERS_OUT)
    jitted = jax.jit(lambda labels: multilabel_centers(labels, hash_centers(4, 8), tie_breaker=jnp.array(GOLDEN_TIE_BREAKER)))
    np.testing.assert_array_equal(jitted(jnp.array(GOLDEN_LABELS)), GOLDEN_CENTERS_OUT)


def test_multilabel_centers_golden_vectors(reference_vectors):
    case = reference_vectors["multilabel_centers"]
    out = multilabel_centers(np.array(case["labels"]), hash_centers(4, 8), tie_breaker=np.array(case["tie_breaker"]))
    np.testing.assert_array_equal(out, case["centers_out"])
    # vectors.json["csq"] uses the first 4 rows of H8 as its class centers.
    assert "first 4 rows of the 8x8 Sylvester Hadamard" in reference_vectors["csq"]["_about"]


def test_multilabel_vote_equals_loop_over_label_sets():
    centers = hash_centers(5, 8)
    tie_breaker = np.array(GOLDEN_TIE_BREAKER)
    for labels in itertools.product([0, 1], repeat=5):
        if not any(labels):
            continue
        vote = np.asarray(labels) @ centers.astype(int)
        expected = np.where(vote > 0, 1, np.where(vote < 0, -1, tie_breaker))
        np.testing.assert_array_equal(multilabel_centers(np.array([labels], float), centers, tie_breaker=tie_breaker)[0], expected)


def test_multilabel_without_label_raises_or_is_masked():
    centers, tie_breaker = hash_centers(4, 8), jnp.array(GOLDEN_TIE_BREAKER)
    labels = jnp.array([[0, 1, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"rows \[1\] have no positive label"):
        multilabel_centers(labels, centers, tie_breaker=tie_breaker)
    out = multilabel_centers(labels, centers, tie_breaker=tie_breaker, where=jnp.array([True, False]))
    np.testing.assert_array_equal(out[1], GOLDEN_TIE_BREAKER)
    # Under jit nothing can be checked: the row is the tie-breaker, never NaN.
    jitted = jax.jit(lambda labels: multilabel_centers(labels, centers, tie_breaker=tie_breaker))(labels)
    np.testing.assert_array_equal(jitted, out)
    with pytest.raises(ValueError, match="labels .* and centers .* must agree"):
        multilabel_centers(jnp.ones((2, 3)), centers, tie_breaker=tie_breaker)
    with pytest.raises(ValueError, match="tie_breaker must have shape"):
        multilabel_centers(labels, centers, tie_breaker=jnp.ones(4))
