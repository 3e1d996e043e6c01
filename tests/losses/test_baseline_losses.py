"""pairwise_likelihood_loss and triplet_margin_loss: brute-force references, masks, stability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxretrieval.losses import masked_mean, pairwise_likelihood_loss, triplet_margin_loss, weighted_mean

LABELS = np.array([0, 1, 0, 2, 1, 3])  # class 3 has no positive


def normal(seed, shape):
    """Test data from numpy (eager jax.random would compile a sampler per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


pairwise_jit = jax.jit(pairwise_likelihood_loss, static_argnames=("quantization_weight",))
triplet_jit = jax.jit(triplet_margin_loss, static_argnames=("margin", "distance", "mining"))


def brute_force_pairwise(outputs, labels, quantization_weight):
    outputs = np.asarray(outputs, np.float64)
    losses = []
    for i in range(len(outputs)):
        terms = []
        for j in range(len(outputs)):
            if i != j:
                theta = 0.5 * outputs[i] @ outputs[j]
                terms.append(np.log1p(np.exp(theta)) - float(labels[i] == labels[j]) * theta)
        quantization = np.mean((outputs[i] - np.sign(outputs[i])) ** 2)
        losses.append(np.mean(terms) + quantization_weight * quantization)
    return np.array(losses)


def brute_force_triplet(embeddings, labels, margin, distance, mining="batch_hard"):
    embeddings = np.asarray(embeddings, np.float64)
    losses = []
    for anchor in range(len(embeddings)):
        def dist(other):
            x, y = embeddings[anchor], embeddings[other]
            if distance == "cosine":
                return 1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y))
            return np.sum((x - y) ** 2)
        positives = [dist(j) for j in range(len(embeddings)) if j != anchor and labels[j] == labels[anchor]]
        negatives = [dist(j) for j in range(len(embeddings)) if labels[j] != labels[anchor]]
        if not positives or not negatives:
            losses.append(0.0)
        elif mining == "batch_hard":
            losses.append(max(0.0, max(positives) - min(negatives) + margin))
        else:
            losses.append(np.mean([max(0.0, p - n + margin) for p in positives for n in negatives]))
    return np.array(losses)


def test_pairwise_against_brute_force_jit_and_eager():
    outputs = normal(0, (6, 4))
    loss_fn = pairwise_jit
    for weight in (0.0, 0.5):
        np.testing.assert_allclose(loss_fn(outputs, LABELS, quantization_weight=weight),
                                   brute_force_pairwise(outputs, LABELS, weight), rtol=1e-5)
    np.testing.assert_allclose(pairwise_likelihood_loss(outputs, LABELS), loss_fn(outputs, LABELS),
                               rtol=1e-6)
    check_grads(lambda x: loss_fn(x, LABELS), (outputs,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_pairwise_stable_masked_and_multi_hot():
    outputs = jnp.array([[40.0, 40.0], [40.0, 40.0], [-40.0, -40.0]])
    labels = jnp.array([0, 1, 0])  # theta = +-1600: exp overflows in a naive form

    @jax.jit
    def variants(outputs):
        loss, grads = jax.value_and_grad(lambda x: pairwise_likelihood_loss(x, labels).sum())(outputs)
        masked = pairwise_likelihood_loss(outputs, labels, where=jnp.array([True, True, False]))
        multi_hot = pairwise_likelihood_loss(outputs, jax.nn.one_hot(labels, 2))
        return loss, grads, masked, multi_hot

    loss, grads, masked, multi_hot = variants(outputs)
    assert np.isfinite(loss) and np.all(np.isfinite(grads))
    # Pair (0, 1): similar codes, different labels -> theta = 1600; pair (0, 2): opposite codes, same
    # label -> softplus(-1600) + 1600.
    np.testing.assert_allclose(masked, [1600.0, 1600.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(multi_hot, pairwise_likelihood_loss(outputs, labels), rtol=1e-6)


@pytest.mark.parametrize("distance", ["squared_l2", "cosine"])
def test_triplet_against_brute_force(distance):
    embeddings = normal(1, (6, 3))
    loss_fn = triplet_jit
    losses = loss_fn(embeddings, LABELS, margin=0.5, distance=distance)
    np.testing.assert_allclose(losses, brute_force_triplet(embeddings, LABELS, 0.5, distance),
                               rtol=1e-5, atol=1e-6)
    assert losses[5] == 0.0  # no positive for class 3
    if distance == "squared_l2":
        np.testing.assert_allclose(triplet_margin_loss(embeddings, LABELS, margin=0.5), losses,
                                   rtol=1e-6)
        check_grads(lambda x: loss_fn(x, LABELS, margin=0.5), (embeddings,), order=1, modes=["rev"],
                    atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("distance", ["squared_l2", "cosine"])
def test_triplet_batch_all_against_brute_force(distance):
    embeddings = normal(2, (6, 3))
    losses = triplet_jit(embeddings, LABELS, margin=0.5, distance=distance, mining="batch_all")
    np.testing.assert_allclose(
        losses, brute_force_triplet(embeddings, LABELS, 0.5, distance, mining="batch_all"), rtol=1e-5, atol=1e-6)
    assert losses[5] == 0.0  # no positive for class 3
    # Averaged over all triplets, never above the hardest one.
    assert np.all(np.asarray(losses) <= np.asarray(triplet_jit(embeddings, LABELS, margin=0.5, distance=distance)) + 1e-6)
    # All outputs equal (the collapse of batch-hard training): loss = margin, no NaN in the gradient.
    collapsed_loss, collapsed_grad = jax.value_and_grad(
        lambda x: triplet_margin_loss(x, LABELS, margin=0.5, distance=distance, mining="batch_all").sum()
    )(jnp.ones((6, 3)))
    assert np.isfinite(collapsed_loss) and np.all(np.isfinite(collapsed_grad))


def test_triplet_masks_and_degenerate_batches():
    embeddings = normal(2, (6, 3))

    @jax.jit
    def variants(embeddings):
        single_class = jax.value_and_grad(
            lambda x: triplet_margin_loss(x, jnp.zeros((6,), jnp.int32)).sum())(embeddings)
        where = jnp.array([True, True, True, True, False, True])
        masked = triplet_margin_loss(embeddings, LABELS, margin=0.5, where=where)
        return single_class, masked

    (loss, grads), masked = variants(embeddings)
    # No negatives anywhere: zero loss and zero gradient, not NaN.
    assert loss == 0.0 and np.all(grads == 0.0)
    keep = np.array([0, 1, 2, 3, 5])
    expected = np.zeros(6)
    expected[keep] = brute_force_triplet(np.asarray(embeddings)[keep], LABELS[keep], 0.5, "squared_l2")
    np.testing.assert_allclose(masked, expected, rtol=1e-5, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="distance"):
        triplet_margin_loss(jnp.zeros((3, 2)), jnp.arange(3), distance="l1")
    with pytest.raises(ValueError, match="mining"):
        triplet_margin_loss(jnp.zeros((3, 2)), jnp.arange(3), mining="semi_hard")
    with pytest.raises(ValueError, match="labels"):
        triplet_margin_loss(jnp.zeros((3, 2)), jnp.arange(4))
    with pytest.raises(ValueError, match="embeddings.*NaN"):
        triplet_margin_loss(jnp.full((3, 2), jnp.nan), jnp.arange(3))
    with pytest.raises(TypeError, match="codes_or_logits"):
        pairwise_likelihood_loss(jnp.zeros((3, 2), jnp.int32), jnp.arange(3))
    with pytest.raises(ValueError, match="where"):
        pairwise_likelihood_loss(jnp.zeros((3, 2)), jnp.arange(3), where=jnp.ones((2,), bool))
    # Under jit a NaN input must not crash (shapes as in the tests above: compiled once).
    nan_batch = normal(1, (6, 3)).at[0, 0].set(jnp.nan)
    assert triplet_jit(nan_batch, LABELS, margin=0.5, distance="squared_l2").shape == (6,)
    assert pairwise_jit(normal(0, (6, 4)).at[0, 0].set(jnp.nan), LABELS).shape == (6,)


def test_masked_and_weighted_means():
    values = jnp.array([1.0, jnp.nan, 5.0])
    where = jnp.array([True, False, True])
    assert masked_mean(values, where) == 3.0
    assert masked_mean(values, jnp.zeros(3, bool)) == 0.0
    # A NaN in a masked entry reaches neither the value nor the gradient.
    grads = jax.grad(lambda v: masked_mean(v, where))(values)
    np.testing.assert_array_equal(grads, [0.5, 0.0, 0.5])
    assert weighted_mean(values, jnp.array([1.0, 0.0, 3.0])) == 4.0
    assert weighted_mean(values, jnp.zeros(3)) == 0.0
    np.testing.assert_allclose(masked_mean(jnp.ones((2, 3)), jnp.array([[True], [False]]), axis=1),
                               [1.0, 0.0])
