"""csq_loss: the official CSQ total and gradient, stable logits, masks, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxretrieval.losses import csq_loss

# Tests call the loss under jit (one compile per test); test_jit_equals_eager covers eager mode.
csq_jit = jax.jit(csq_loss, static_argnames=("quantization_weight", "quantization"))

HADAMARD_8 = np.array([[1, 1, 1, 1, 1, 1, 1, 1], [1, -1, 1, -1, 1, -1, 1, -1],
                       [1, 1, -1, -1, 1, 1, -1, -1], [1, -1, -1, 1, 1, -1, -1, 1]], np.int8)


def official_csq_total(logits, centers, quantization_weight):
    """The official formula, term by term: BCE on (tanh u + 1)/2 plus weight * mean((|tanh u| - 1)^2)."""
    codes = jnp.tanh(logits)
    probability = (codes + 1.0) / 2.0
    target = (centers + 1.0) / 2.0
    bce = -(target * jnp.log(probability) + (1 - target) * jnp.log(1 - probability))
    return jnp.mean(bce) + quantization_weight * jnp.mean((jnp.abs(codes) - 1.0) ** 2)


def test_golden_values_from_official_code(reference_vectors):
    golden = reference_vectors["csq"]
    logits = jnp.array(golden["logits"], jnp.float32)

    @jax.jit
    def values(u):
        return [csq_loss(u, HADAMARD_8, quantization_weight=weight).mean()
                for weight in (0.0, 1.0, 0.05, 1e-4)]

    bce, with_unit_weight, total, deephash_total = values(logits)
    np.testing.assert_allclose(bce, golden["center_bce_mean"], atol=1e-6)
    np.testing.assert_allclose(with_unit_weight - bce, golden["quantization_mean_squared"], atol=1e-6)
    np.testing.assert_allclose(total, golden["total_quantization_weight_0.05"], atol=1e-6)
    np.testing.assert_allclose(deephash_total, golden["total_quantization_weight_1e-4"], atol=1e-6)


def test_jit_equals_eager(reference_vectors):
    logits = jnp.array(reference_vectors["csq"]["logits"], jnp.float32)
    np.testing.assert_allclose(csq_loss(logits, HADAMARD_8), csq_jit(logits, HADAMARD_8), rtol=1e-6)


def test_gradient_equals_official_gradient(reference_vectors):
    logits = jnp.array(reference_vectors["csq"]["logits"], jnp.float32)
    ours = jax.jit(jax.grad(lambda u: csq_loss(u, HADAMARD_8).mean()))(logits)
    official = jax.jit(jax.grad(lambda u: official_csq_total(u, HADAMARD_8, 0.05)))(logits)
    np.testing.assert_allclose(ours, official, atol=1e-6)


def test_own_golden_literal_and_log_cosh():
    logits = jnp.array([[2.0, -1.0], [0.5, 0.5]])
    centers = jnp.array([[1, -1], [1, -1]])
    # numpy float64 of the textbook BCE on (tanh u + 1)/2 plus 0.05 (|tanh u| - 1)^2, bit mean.
    np.testing.assert_allclose(csq_jit(logits, centers), [0.07399225, 0.82772759], atol=1e-6)
    gap = np.abs(np.tanh(np.array([[2.0, -1.0], [0.5, 0.5]]))) - 1.0
    log_cosh = np.log(np.cosh(gap)).mean(axis=1)
    difference = (csq_jit(logits, centers, quantization="log_cosh", quantization_weight=1.0)
                  - csq_jit(logits, centers, quantization_weight=0.0))
    np.testing.assert_allclose(difference, log_cosh, atol=1e-6)


def test_stable_for_huge_logits():
    logits = jnp.array([[100.0, -100.0, 60.0], [-80.0, 80.0, 0.3]])
    centers = jnp.array([[1, -1, -1], [1, 1, 1]])
    loss, grads = jax.jit(jax.value_and_grad(lambda u: csq_loss(u, centers).sum()))(logits)
    assert np.isfinite(loss) and np.all(np.isfinite(grads))
    # A confidently wrong bit costs 2|u| (BCE on logits 2u), not a clipped log(0).
    np.testing.assert_allclose(csq_jit(logits, centers)[0], (0 + 0 + 120.0) / 3, rtol=1e-5)


def test_check_grads():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.standard_normal((3, 5)), jnp.float32)
    centers = jnp.asarray(np.where(rng.uniform(size=(3, 5)) < 0.5, 1.0, -1.0), jnp.float32)
    check_grads(jax.jit(lambda u: csq_loss(u, centers, quantization="log_cosh")), (logits,), order=1,
                modes=["rev"], atol=1e-2, rtol=1e-2)


def test_where_masks_bits_and_examples():
    logits = jnp.array([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]])
    centers = jnp.array([[1, 1, -1], [-1, -1, -1]])
    bit_mask = jnp.array([[True, False, True], [False, False, False]])
    masked = csq_jit(logits, centers, where=bit_mask)
    np.testing.assert_allclose(masked[0], csq_jit(logits[:1, ::2], centers[:1, ::2])[0], rtol=1e-6)
    assert masked[1] == 0.0
    example_mask = jnp.array([[False], [True]])
    np.testing.assert_allclose(csq_jit(logits, centers, where=example_mask),
                               [0.0, csq_jit(logits, centers)[1]], rtol=1e-6)


def test_bad_input():
    logits = jnp.zeros((2, 4))
    with pytest.raises(ValueError, match="centers"):
        csq_loss(logits, jnp.ones((2, 3)))
    with pytest.raises(TypeError, match="logits"):
        csq_loss(jnp.zeros((2, 4), jnp.int32), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="logits"):
        csq_loss(jnp.zeros((4,)), jnp.ones((4,)))
    with pytest.raises(ValueError, match="logits.*NaN"):
        csq_loss(logits.at[0, 0].set(jnp.nan), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="where"):
        csq_loss(logits, jnp.ones((2, 4)), where=jnp.ones((2,), bool))
    with pytest.raises(ValueError, match="quantization"):
        csq_loss(logits, jnp.ones((2, 4)), quantization="cube")
    # Under jit values are unknown: a NaN input must not crash.
    assert csq_jit(logits.at[0, 0].set(jnp.nan), jnp.ones((2, 4))).shape == (2,)
