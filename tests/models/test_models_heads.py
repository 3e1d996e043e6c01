"""Heads: GeM pooling, L2 normalisation, hash-head dropout, PQ codebooks, AP whitening."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.decomposition
from flax import nnx

from jaxretrieval import models
from jaxretrieval.models import heads


def _uniform(shape, low=0.0, high=1.0, seed=0):
    """numpy draws: unlike jax.random, they cost no compilation per shape."""
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def test_gem_with_p_one_is_average_pooling_and_large_p_tends_to_max():
    maps = _uniform((3, 4, 5, 6), 0.1, 2.0)
    gem = jax.jit(heads.generalized_mean_pool)
    np.testing.assert_allclose(gem(maps, 1.0), maps.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(gem(maps, 60.0), maps.max(axis=(1, 2)), rtol=0.05)
    # Exact value at p = 3 (eager, so jit == eager is checked too): ((1 + 8 + 27 + 64) / 4) ** (1 / 3).
    known = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(1, 2, 2, 1)
    np.testing.assert_allclose(heads.generalized_mean_pool(known, 3.0), [[25.0 ** (1 / 3)]], rtol=1e-6)
    np.testing.assert_allclose(gem(np.tile(known, (3, 2, 3, 6)), 3.0), np.full((3, 6), 25.0 ** (1 / 3)), rtol=1e-6)


def test_gem_is_finite_with_dead_activations_and_differentiable_in_p():
    maps = jnp.zeros((2, 3, 3, 4))  # all-zero ReLU output: clamped at epsilon, not 0 ** (1 / p)
    gradient = jax.grad(lambda p: heads.generalized_mean_pool(maps, p).sum())(jnp.array(3.0))
    assert np.all(np.isfinite(heads.generalized_mean_pool(maps, jnp.array(3.0))))
    assert np.isfinite(gradient)


def test_l2_normalize_unit_norm_and_zero_vector_stays_zero_with_finite_gradient():
    x = jnp.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(heads.l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    gradient = jax.grad(lambda x: heads.l2_normalize(x).sum())(x)
    assert np.all(np.isfinite(gradient))


def test_hash_head_dropout_only_in_train_mode(concrete_module):
    head = concrete_module(lambda: heads.HashHead(8, 6, hidden_dim=64, dropout=0.5, rngs=nnx.Rngs(0)))
    maps = _uniform((4, 1, 1, 8), seed=1)
    head.eval()
    np.testing.assert_array_equal(head(maps), head(maps))
    head.train()
    assert not np.allclose(head(maps), head(maps))
    head.eval()
    no_dropout = concrete_module(lambda: heads.HashHead(8, 6, hidden_dim=64, dropout=0.0, rngs=nnx.Rngs(0)))
    np.testing.assert_allclose(head(maps), no_dropout(maps), rtol=1e-6)  # same draws (seed 0): eval = no dropout


def test_pq_head_codebooks_follow_the_official_initialisation():
    num_books, num_words, word_dim, in_features = 8, 16, 16, 64
    head = nnx.jit(
        lambda: heads.PQHead(
            in_features, num_books=num_books, num_words=num_words, word_dim=word_dim, hidden_dim=0, rngs=nnx.Rngs(0)
        )
    )()
    assert isinstance(head.codebooks, nnx.Param)
    assert head.codebooks.shape == (num_books, num_words, word_dim)
    # xavier_normal_(gain=0.1) of SPQ's [K, M * L] codebook matrix and of its [M * L, in] projection.
    np.testing.assert_allclose(np.std(head.codebooks[...]), 0.1 * np.sqrt(2 / (num_words + num_books * word_dim)), rtol=0.1)
    np.testing.assert_allclose(
        np.std(head.projection.kernel[...]), 0.1 * np.sqrt(2 / (in_features + num_books * word_dim)), rtol=0.1
    )
    assert head.projection.bias is None


def test_pq_head_without_hidden_layer_projects_pooled_features(concrete_module):
    head = concrete_module(lambda: heads.PQHead(10, num_books=2, num_words=4, word_dim=3, hidden_dim=0, rngs=nnx.Rngs(0)))
    assert head.hidden is None
    maps = _uniform((2, 3, 3, 10), -1.0, 1.0, seed=2)
    np.testing.assert_allclose(head(maps), maps.mean(axis=(1, 2)) @ head.projection.kernel[...], rtol=1e-5, atol=1e-6)


@pytest.fixture
def ap_head(concrete_module):
    return concrete_module(lambda: heads.APHead(16, 8, rngs=nnx.Rngs(0)))


def test_ap_head_outputs_unit_descriptors_and_eval_equals_train_before_whitening(ap_head):
    maps = _uniform((5, 3, 3, 16), seed=3)
    ap_head.train()
    train_output = ap_head(maps)
    np.testing.assert_allclose(np.linalg.norm(train_output, axis=1), 1.0, rtol=1e-5)
    ap_head.eval()
    np.testing.assert_allclose(ap_head(maps), train_output, rtol=1e-5, atol=1e-6)
    assert isinstance(ap_head.gem_p, nnx.Param) and ap_head.gem_p.shape == ()


def test_whitening_decorrelates_training_descriptors_and_matches_the_naver_recipe(ap_head):
    maps = _uniform((64, 2, 2, 16), seed=4)
    ap_head.train()
    descriptors = np.asarray(ap_head(maps), np.float64)
    ap_head.fit_whitening(descriptors)

    projected = (descriptors - np.asarray(ap_head.whitening_mean[...])) @ np.asarray(ap_head.whitening_projection[...])
    covariance = np.cov(projected, rowvar=False)
    off_diagonal = covariance - np.diag(np.diag(covariance))
    assert np.abs(off_diagonal).max() < 1e-4 * np.abs(np.diag(covariance)).max()

    # naver/deep-image-retrieval: sklearn PCA(whiten=True), divide by explained_variance ** 0.25, L2.
    pca = sklearn.decomposition.PCA(svd_solver="full", whiten=True).fit(descriptors)
    reference = (descriptors - pca.mean_) @ pca.components_.T / pca.explained_variance_**0.25
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    ap_head.eval()
    whitened = np.asarray(ap_head(maps))
    ap_head.train()
    # Component signs are arbitrary (SVD), so compare the similarities, which do not depend on them.
    np.testing.assert_allclose(whitened @ whitened.T, reference @ reference.T, atol=2e-4)
    assert not np.allclose(whitened @ whitened.T, descriptors @ descriptors.T, atol=1e-2)


def test_whitening_with_fewer_descriptors_than_dimensions_drops_the_null_directions(ap_head):
    descriptors = np.random.default_rng(0).standard_normal((5, 8))
    ap_head.fit_whitening(descriptors)
    projection = np.asarray(ap_head.whitening_projection[...])
    assert np.count_nonzero(np.abs(projection).sum(axis=0)) == 4  # rank of 5 centred points
    ap_head.eval()
    output = ap_head(_uniform((3, 2, 2, 16), seed=5))
    ap_head.train()
    assert np.all(np.isfinite(output))
    np.testing.assert_allclose(np.linalg.norm(output, axis=1), 1.0, rtol=1e-5)


def test_whitening_is_checkpointed_state_but_not_a_trainable_parameter(ap_head):
    whitening_paths = {path for path, _ in nnx.to_flat_state(nnx.state(ap_head, models.Whitening))}
    assert whitening_paths == {("whitening_mean",), ("whitening_projection",)}
    parameter_paths = {path for path, _ in nnx.to_flat_state(nnx.state(ap_head, nnx.Param))}
    assert parameter_paths.isdisjoint(whitening_paths)
    all_paths = {path for path, _ in nnx.to_flat_state(nnx.state(ap_head))}
    assert whitening_paths <= all_paths


@pytest.mark.parametrize(
    "descriptors, message",
    [
        (np.ones((4, 7)), r"must be \[num_descriptors, 8\], got shape \(4, 7\)"),
        (np.ones((1, 8)), "at least 2 descriptors"),
        (np.full((3, 8), np.nan), "NaN or Inf"),
        (np.ones((3, 8)), "all descriptors are identical"),
    ],
)
def test_fit_whitening_rejects_bad_descriptors(ap_head, descriptors, message):
    with pytest.raises(ValueError, match=message):
        ap_head.fit_whitening(descriptors)
