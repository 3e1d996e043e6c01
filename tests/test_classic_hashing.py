"""jaxretrieval.classic_hashing: LSH and PCA-ITQ shapes, determinism, ITQ's monotone objective."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval import metrics
from jaxretrieval.classic_hashing import LinearHash, itq_fit, lsh_fit


def clustered_features(seed=0, num_per_class=60, dim=16, num_classes=4):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (num_classes, dim)) + 5.0  # off-centre, as ReLU features are
    classes = np.repeat(np.arange(num_classes), num_per_class)
    return (means[classes] + rng.normal(0, 1, (classes.size, dim))).astype(np.float32), np.eye(num_classes)[classes]


def test_lsh_shapes_determinism_and_center():
    features, _ = clustered_features()
    hash_ = lsh_fit(jax.random.key(0), 16, 32, center=features.mean(0))
    codes = hash_.encode(features)
    assert codes.shape == (240, 32) and codes.dtype == jnp.int8
    assert set(np.unique(codes).tolist()) == {-1, 1}
    np.testing.assert_array_equal(codes, lsh_fit(jax.random.key(0), 16, 32, center=features.mean(0)).encode(features))
    assert not np.array_equal(codes, lsh_fit(jax.random.key(1), 16, 32, center=features.mean(0)).encode(features))
    # Through the origin, every bit of these all-positive features is nearly constant; centred, not.
    origin = lsh_fit(jax.random.key(0), 16, 32).encode(features)
    assert np.abs(np.asarray(codes, float).mean(0)).mean() < np.abs(np.asarray(origin, float).mean(0)).mean()
    # sign(0) = +1, and encode runs under jit (LinearHash is a pytree).
    np.testing.assert_array_equal(hash_.encode(features.mean(0)[None]), 1)
    np.testing.assert_array_equal(jax.jit(lambda h, x: h.encode(x))(hash_, features), codes)


def test_itq_rotation_orthogonal_and_error_decreases():
    features, _ = clustered_features()
    key = jax.random.key(0)
    errors = [itq_fit(features, 8, key=key, num_iterations=n).quantization_error(features) for n in (0, 1, 2, 5, 20)]
    assert all(later <= earlier + 1e-4 for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0]
    hash_ = itq_fit(features, 8, key=key)
    # projection = P R with orthonormal P columns and orthogonal R: its columns are orthonormal.
    np.testing.assert_allclose(np.asarray(hash_.projection).T @ np.asarray(hash_.projection), np.eye(8), atol=1e-5)
    np.testing.assert_allclose(hash_.mean, features.mean(0), rtol=1e-5)
    np.testing.assert_array_equal(hash_.encode(features), itq_fit(features, 8, key=key).encode(features))
    # ITQ balances the bits of centred data better than chance would and ranks clusters well.
    codes = np.asarray(hash_.encode(features), float)
    assert np.abs(codes.mean(0)).max() < 0.9


def test_itq_beats_lsh_on_clustered_features():
    features, labels = clustered_features(num_per_class=80)
    itq_codes = itq_fit(features, 8, key=jax.random.key(0)).encode(features)
    lsh_codes = lsh_fit(jax.random.key(0), 16, 8, center=features.mean(0)).encode(features)
    itq_map = metrics.mean_average_precision(itq_codes, itq_codes, labels, labels, top_k=50)
    lsh_map = metrics.mean_average_precision(lsh_codes, lsh_codes, labels, labels, top_k=50)
    assert itq_map > lsh_map


def test_bad_input():
    with pytest.raises(ValueError, match="num_bits must be a positive int"):
        lsh_fit(jax.random.key(0), 4, 0)
    with pytest.raises(ValueError, match=r"center must be a finite \[4\] vector"):
        lsh_fit(jax.random.key(0), 4, 8, center=np.zeros(3))
    with pytest.raises(ValueError, match="dim >= num_bits=8"):
        itq_fit(np.zeros((10, 4)), 8, key=jax.random.key(0))
    with pytest.raises(ValueError, match="NaN"):
        itq_fit(np.full((10, 4), np.nan), 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"features must have shape \[n, 4\]"):
        lsh_fit(jax.random.key(0), 4, 8).encode(np.zeros((2, 5)))
    assert isinstance(lsh_fit(jax.random.key(0), 4, 8), LinearHash)
