"""One test per defect that let a loss report a good value (or a NaN gradient) for bad input.

Each of these failed on the losses as they were before the bad-input work (checked by running
this file against ``git archive HEAD jaxretrieval``) and names the behaviour it now guarantees.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.losses import (
    csq_loss,
    map_q_loss,
    pairwise_likelihood_loss,
    soft_quantize,
    spq_loss,
    triplet_margin_loss,
)

LABELS = jnp.array([0, 0, 1, 1, 2, 2])
FLOAT32_MAX = float(np.finfo(np.float32).max)


def unit_rows(seed, batch_size=6, dim=4):
    rows = np.random.default_rng(seed).standard_normal((batch_size, dim))
    return jnp.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), jnp.float32)


# One compiled function per loss, shared by the tests below (compiles dominate the time).
map_q_value_and_grad = jax.jit(jax.value_and_grad(map_q_loss))


@jax.jit
def masked_map_q_value_and_grad(descriptors, labels, where):
    return jax.value_and_grad(lambda d: map_q_loss(d, labels, where=where))(descriptors)


def float32_expected(values):
    """float64 reference values as float32 sees them: +-inf where they exceed its range."""
    values = np.asarray(values, np.float64)
    return np.where(np.abs(values) > FLOAT32_MAX, np.copysign(np.inf, values), values)


def test_map_q_loss_is_nan_not_perfect_for_all_nan_descriptors_under_jit():
    loss, grads = map_q_value_and_grad(jnp.full((6, 4), jnp.nan), LABELS)
    assert np.isnan(loss)
    assert np.all(np.isnan(grads))


@pytest.mark.parametrize("scale", [1e20, 2.0, 0.5])
def test_map_q_loss_is_nan_for_descriptors_off_the_unit_sphere(scale):
    descriptors = unit_rows(0) * scale
    loss, grads = map_q_value_and_grad(descriptors, LABELS)
    assert np.isnan(loss), loss
    assert np.all(np.isnan(grads))
    with pytest.raises(ValueError, match="descriptors must be L2-normalised"):
        map_q_loss(descriptors, LABELS)


def test_map_q_gradient_ignores_a_nan_row_masked_out_by_where():
    descriptors = unit_rows(1, batch_size=7)
    labels = jnp.array([0, 0, 1, 1, 2, 2, 0])
    where = jnp.arange(7) != 6
    clean_loss, clean_grads = masked_map_q_value_and_grad(descriptors, labels, where)
    for bad_value in (jnp.nan, jnp.inf):
        loss, grads = masked_map_q_value_and_grad(descriptors.at[6].set(bad_value), labels, where)
        assert loss == clean_loss
        np.testing.assert_array_equal(grads, clean_grads)
        assert np.all(np.isfinite(grads)) and np.all(grads[6] == 0.0)
    # The masked row's value is irrelevant eagerly too (no error).
    assert map_q_loss(descriptors.at[6].set(jnp.nan), labels, where=where) == pytest.approx(
        float(clean_loss), abs=1e-6)


@pytest.mark.parametrize("mining", ["batch_hard", "batch_all"])
def test_cosine_triplet_gradient_is_finite_for_a_zero_embedding(mining):
    embeddings = unit_rows(2).at[0].set(0.0)

    def total(x):
        return triplet_margin_loss(x, LABELS, distance="cosine", mining=mining).sum()

    loss, grads = jax.jit(jax.value_and_grad(total))(embeddings)
    assert np.isfinite(loss) and np.all(np.isfinite(grads))


def test_spq_loss_gradient_is_finite_for_a_zero_row():
    features = unit_rows(3).at[0].set(0.0)
    quantized = unit_rows(4).at[2].set(0.0)
    loss, grads = jax.jit(jax.value_and_grad(spq_loss, argnums=(0, 1, 2, 3)))(
        features, features * 1.5, quantized, quantized)
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_pairwise_likelihood_is_not_nan_for_outputs_at_1e30():
    # Orthogonal rows have theta = 0 exactly (log 2 per pair) next to thetas of +-5e59: rows 0 and 4
    # agree (loss 0, where the textbook form computes inf - inf), rows 0 and 5 disagree (+inf).
    outputs = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 0.0], [-1.0, 0.0]]) * 1e30
    labels = np.array([0, 0, 1, 1, 0, 0])
    theta = 0.5 * outputs @ outputs.T  # float64 holds 5e59
    pair_loss = np.logaddexp(0.0, np.where(labels[:, None] == labels[None, :], -theta, theta))
    expected = float32_expected(
        [np.mean([pair_loss[i, j] for j in range(6) if j != i]) for i in range(6)])
    assert np.isinf(expected).any() and np.isfinite(expected).any()
    values = jax.jit(pairwise_likelihood_loss)(jnp.asarray(outputs, jnp.float32), labels)
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    grads = jax.jit(jax.grad(lambda x: pairwise_likelihood_loss(x, labels).sum()))(
        jnp.asarray(outputs, jnp.float32))
    assert not np.any(np.isnan(grads))


def test_squared_l2_triplet_is_not_nan_for_embeddings_at_1e30():
    embeddings = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5], [5.0, 5.0], [0.0, 0.0]]) * 1e30
    labels = np.array([0, 0, 1, 2, 1])
    distances = np.sum((embeddings[:, None] - embeddings[None]) ** 2, axis=-1)  # up to 5e61
    expected = []
    for anchor in range(5):
        positives = [distances[anchor, j] for j in range(5) if j != anchor and labels[j] == labels[anchor]]
        negatives = [distances[anchor, j] for j in range(5) if labels[j] != labels[anchor]]
        expected.append(max(0.0, max(positives) - min(negatives) + 0.2) if positives else 0.0)
    expected = float32_expected(expected)

    def total(x):
        return triplet_margin_loss(x, labels).sum()

    values = jax.jit(triplet_margin_loss)(jnp.asarray(embeddings, jnp.float32), labels)
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert np.isinf(values).any() and (values == 0.0).any()
    # Anchor 2's hardest positive and negative are equally far (2.5e59): exactly the margin.
    assert values[2] == pytest.approx(0.2)
    grads = jax.jit(jax.grad(total))(jnp.asarray(embeddings, jnp.float32))
    assert not np.any(np.isnan(grads))


def test_soft_quantize_assigns_features_at_1e20_to_the_nearest_codeword():
    rng = np.random.default_rng(5)
    codebooks = rng.standard_normal((2, 3, 2))
    features = rng.standard_normal((6, 4)) * 1e20
    quantized = jax.jit(soft_quantize)(jnp.asarray(features, jnp.float32),
                                       jnp.asarray(codebooks, jnp.float32))
    # Nearest codeword in float64 from the expanded distance (||x||^2 is common to all words).
    sub_vectors = features.reshape(6, 2, 1, 2)
    closeness = np.sum(codebooks[None] * (2 * sub_vectors - codebooks[None]), axis=-1)
    nearest = codebooks[np.arange(2)[None, :], np.argmax(closeness, axis=-1)].reshape(6, 4)
    np.testing.assert_allclose(quantized, nearest, rtol=1e-6)
    grads = jax.jit(jax.grad(lambda x, c: soft_quantize(x, c).sum(), argnums=(0, 1)))(
        jnp.asarray(features, jnp.float32), jnp.asarray(codebooks, jnp.float32))
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_csq_loss_is_not_nan_at_the_float32_limit():
    logits = jnp.array([[3e38, -3e38], [3e38, 1.0], [-3e38, -3e38]], jnp.float32)
    centers = jnp.array([[1, -1], [1, 1], [1, 1]])
    values, grads = jax.jit(jax.vmap(jax.value_and_grad(
        lambda u, c: csq_loss(u[None], c[None])[0])))(logits, centers)
    # Right-signed bits cost 0; a confidently wrong bit costs 2|u| = 6e38 > float32 max: +inf.
    one_bit = np.logaddexp(0.0, -2.0) + 0.05 * (np.tanh(1.0) - 1.0) ** 2
    np.testing.assert_allclose(values, [0.0, one_bit / 2, np.inf], rtol=1e-6)
    assert np.all(np.isfinite(grads))


def test_map_q_loss_rejects_negative_query_weights():
    descriptors = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
    labels = jnp.array([0, 1, 0, 1])
    weights = jnp.array([1.0, -0.999, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"query_weights must be finite and >= 0, got -0.999"):
        map_q_loss(descriptors, labels, query_weights=weights)
    # Under jit the weights cannot be checked: the loss is NaN, not a number outside [0, 1].
    weighted = jax.jit(lambda d, w: map_q_loss(d, labels, query_weights=w))
    assert np.isnan(weighted(descriptors, weights))
    assert np.isnan(weighted(descriptors, weights.at[1].set(jnp.nan)))
    assert 0.0 <= weighted(descriptors, jnp.abs(weights)) <= 1.0


def test_spq_loss_rejects_a_zero_temperature():
    features = unit_rows(6)
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= .*, got 0\.0"):
        spq_loss(features, features, features, features, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        jax.jit(spq_loss, static_argnames="temperature")(features, features, features, features,
                                                         temperature=-0.5)
    # A traced temperature cannot be checked: 0 gives NaN, not a finite loss.
    traced = jax.jit(lambda t: spq_loss(features, features, features, features, temperature=t))
    assert np.isnan(traced(0.0)) and np.isfinite(traced(0.5))
