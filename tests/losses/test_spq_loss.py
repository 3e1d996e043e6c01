"""soft_quantize and spq_loss: the official values, gradients, invariances, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxretrieval.losses import soft_quantize, spq_loss

# Tests call the losses under jit (one compile per shape); the golden tests also run them eagerly.
def normal(seed, shape):
    """Test data from numpy (eager jax.random would compile a sampler per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


soft_quantize_jit = jax.jit(soft_quantize, static_argnames=("temperature",))
spq_loss_jit = jax.jit(spq_loss)


def official_codebooks(codebook_k_by_ml, num_books):
    """The official (K, M*L) codebook as (M, K, L): codeword k of book m is C[k, m*L:(m+1)*L]."""
    codebook = np.asarray(codebook_k_by_ml, np.float32)
    num_words = codebook.shape[0]
    return jnp.asarray(codebook.reshape(num_words, num_books, -1).transpose(1, 0, 2))


def test_soft_quantize_golden(reference_vectors):
    golden = reference_vectors["spq_soft_quantize"]
    codebooks = official_codebooks(golden["C"], num_books=2)
    features = jnp.array(golden["X"], jnp.float32)
    np.testing.assert_allclose(soft_quantize(features, codebooks, temperature=5.0),
                               golden["temperature_5.0"], atol=1e-6)
    np.testing.assert_allclose(soft_quantize_jit(features, codebooks),
                               golden["temperature_5.0"], atol=1e-6)


def test_soft_quantize_limits():
    codebooks = normal(0, (3, 4, 2))
    features = normal(1, (5, 6))
    # A very sharp softmax is hard assignment to the nearest codeword of each book.
    sharp = soft_quantize_jit(features, codebooks, temperature=1e4)
    features_np, codebooks_np = np.asarray(features), np.asarray(codebooks)
    distances = np.sum((features_np.reshape(5, 3, 1, 2) - codebooks_np[None]) ** 2, axis=-1)
    nearest = codebooks_np[np.arange(3)[None, :], np.argmin(distances, axis=-1)].reshape(5, 6)
    np.testing.assert_allclose(sharp, nearest, atol=1e-5)
    # Temperature 0 averages the codewords.
    np.testing.assert_allclose(soft_quantize_jit(features, codebooks, temperature=0.0)[0],
                               codebooks_np.mean(axis=1).reshape(6), atol=1e-6)


def test_spq_loss_golden_jit_and_gradients(reference_vectors):
    golden = reference_vectors["spq_loss"]
    inputs = [jnp.array(golden[name], jnp.float32) for name in ("Xa", "Xb", "Za", "Zb")]
    np.testing.assert_allclose(spq_loss(*inputs), golden["loss"], atol=1e-6)
    np.testing.assert_allclose(spq_loss_jit(*inputs), golden["loss"], atol=1e-6)
    check_grads(spq_loss_jit, inputs, order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_spq_loss_permutation_and_scale_invariance():
    inputs = [normal(seed, (6, 8)) for seed in range(2, 6)]
    permutation = jnp.array([3, 0, 5, 1, 4, 2])
    loss = spq_loss_jit(*inputs)
    np.testing.assert_allclose(spq_loss_jit(*[x[permutation] for x in inputs]), loss, rtol=1e-5)
    # Cosine similarity: rescaling rows changes nothing.
    np.testing.assert_allclose(spq_loss_jit(*[3.0 * x for x in inputs]), loss, rtol=1e-5)


def test_spq_loss_temperature_is_a_divisor():
    # Orthonormal rows, quantizations equal to the features: each row's positive (its copy) has
    # cosine 1 and its 4 negatives cosine 0, so NT-Xent = -log(e^(1/T) / (e^(1/T) + 4)) with T = 0.5.
    features = jnp.eye(3)
    per_row = -jnp.log(jnp.exp(1 / 0.5) / (jnp.exp(1 / 0.5) + 4.0))
    np.testing.assert_allclose(spq_loss_jit(features, features, features, features), 2 * per_row,
                               rtol=1e-6)


def test_bad_input():
    codebooks = jnp.zeros((2, 3, 2))
    with pytest.raises(ValueError, match="codebooks"):
        soft_quantize(jnp.zeros((4, 5)), codebooks)
    with pytest.raises(ValueError, match="features"):
        soft_quantize(jnp.full((1, 4), jnp.nan), codebooks)
    with pytest.raises(TypeError, match="codebooks"):
        soft_quantize(jnp.zeros((4, 4)), jnp.zeros((2, 3, 2), jnp.int32))
    good = jnp.ones((3, 4))
    with pytest.raises(ValueError, match="quantized_b"):
        spq_loss(good, good, good, jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="features_b.*NaN"):
        spq_loss(good, good.at[0, 0].set(jnp.nan), good, good)
    assert spq_loss_jit(good, good.at[0, 0].set(jnp.nan), good, good).shape == ()
