"""quantized_ap / map_q_loss: reference values, the hand-written gradient against autodiff of the
textbook formula, masking, invariances, bad input, and the memory bound at batch 4,096."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxretrieval.losses import batch_quantized_ap, map_q_loss, quantized_ap

NUM_BINS = 20
BIN_WIDTH = 2.0 / (NUM_BINS - 1)
CENTRES = 1.0 - BIN_WIDTH * np.arange(NUM_BINS)


def textbook_quantized_ap(scores, relevance, num_bins=NUM_BINS, low=-1.0, high=1.0):
    """AP_Q written as the paper/reference does, with the full [queries, bins, items] tensor."""
    width = (high - low) / (num_bins - 1)
    centres = high - width * jnp.arange(num_bins)
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(scores[:, None, :] - centres[None, :, None]) / width)
    weights = weights.at[:, 0, :].set(jnp.where(scores >= high, 1.0, weights[:, 0, :]))
    weights = weights.at[:, -1, :].set(jnp.where(scores <= low, 1.0, weights[:, -1, :]))
    counts = weights.sum(-1)
    positives = (weights * relevance[:, None, :]).sum(-1)
    precision = jnp.cumsum(positives, -1) / (1e-16 + jnp.cumsum(counts, -1))
    return jnp.sum(precision * positives / positives.sum(-1, keepdims=True), -1)


def textbook_map_q_loss(descriptors, labels):
    """1 - mean AP_Q over queries with a positive, self-match deleted from each row (numpy labels)."""
    batch_size = descriptors.shape[0]
    off_diagonal = ~np.eye(batch_size, dtype=bool)
    scores = (descriptors @ descriptors.T)[off_diagonal].reshape(batch_size, batch_size - 1)
    relevance = (labels[:, None] == labels[None, :])[off_diagonal].reshape(batch_size, batch_size - 1)
    has_positive = np.asarray(relevance.any(axis=1))
    ap = textbook_quantized_ap(scores[has_positive], relevance[has_positive].astype(jnp.float32))
    return 1.0 - jnp.mean(ap)


# Each test compiles one jitted function where it can (compiles dominate the test time); shapes are
# shared between tests so that the compiled map_q_value_and_grad is reused.
map_q_value_and_grad = jax.jit(jax.value_and_grad(map_q_loss))


# Test data comes from numpy: eager jax.random would compile a sampler for every shape.


def interior_scores(seed, shape):
    """Scores strictly inside bin intervals (20% to 80% of the way), away from the kinks."""
    rng = np.random.default_rng(seed)
    interval = rng.integers(0, NUM_BINS - 1, shape)
    offset = rng.uniform(0.2, 0.8, shape)
    return jnp.asarray(CENTRES[interval] - offset * BIN_WIDTH, jnp.float32)


def unit_descriptors(seed, batch_size, dim):
    descriptors = np.random.default_rng(seed).standard_normal((batch_size, dim))
    return jnp.asarray(descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True), jnp.float32)


def test_golden_values(reference_vectors):
    golden = reference_vectors["quantized_ap"]
    scores = jnp.array(golden["scores"], jnp.float32)
    relevance = jnp.array(golden["relevance"])

    @jax.jit
    def variants(scores, relevance):
        return (quantized_ap(scores, relevance), quantized_ap(scores, relevance, tie_aware=True),
                quantized_ap(scores, relevance, tie_aware=True, tie_aware_form="simplified"))

    plain, tie_aware, simplified = variants(scores, relevance)
    np.testing.assert_allclose(quantized_ap(scores, relevance), golden["ap_20_bins"], atol=1e-6)
    np.testing.assert_allclose(plain, golden["ap_20_bins"], atol=1e-6)
    # naver's TAPLoss (dirtorch/loss.py) run in PyTorch on the same inputs.
    np.testing.assert_allclose(tie_aware, [0.6872228384017944, 0.40153658390045166], atol=1e-6)
    np.testing.assert_allclose(simplified, [0.8332356214523315, 0.41327330470085144], atol=1e-6)


def test_tie_aware_golden_with_ties_and_edge_bins():
    # naver's TAPLoss(nq=10, min=-1, max=1) in PyTorch; scores tie and fall outside [-1, 1].
    scores = jnp.array([
        [0.3, -0.6, -1.1, -1.2, 0.8, 1.0, 0.3, 0.6, 0.1, 1.0, 0.8, -1.2],
        [0.9, -1.1, 0.6, -0.8, 0.9, 0.1, -0.5, -0.2, -1.1, -0.9, 0.4, 0.4],
        [0.3, -0.3, 1.2, 1.2, 0.4, 0.4, 0.5, -0.3, -0.9, 0.5, 0.1, -0.5]], jnp.float32)
    relevance = jnp.array([[0, 0, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0], [1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1],
                           [0, 1, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0]])

    @jax.jit
    def variants(scores, relevance):
        return [quantized_ap(scores, relevance, num_bins=10, tie_aware=True, tie_aware_form=form)
                for form in ("full", "simplified")]

    full, simplified = variants(scores, relevance)
    np.testing.assert_allclose(full, [0.518035888671875, 0.6531099677085876, 0.587919294834137],
                               atol=1e-6)
    np.testing.assert_allclose(simplified, [0.5621746778488159, 0.6694234013557434,
                                            0.6145808696746826], atol=1e-6)


def test_equals_textbook_formula_and_its_autodiff_gradient():
    scores = interior_scores(0, (3, 9))
    scores = scores.at[0, :3].set(jnp.array([1.3, -1.4, 1.0 - 0.5 * BIN_WIDTH]))  # edge bins
    relevance = jnp.array(np.random.default_rng(0).uniform(size=(3, 9)) < 0.5, jnp.float32)
    relevance = relevance.at[:, 0].set(1.0)

    @jax.jit
    def both(scores):
        fused = jax.value_and_grad(lambda s: quantized_ap(s, relevance).sum())(scores)
        textbook = jax.value_and_grad(lambda s: textbook_quantized_ap(s, relevance).sum())(scores)
        return fused, textbook

    (fused_value, fused_grad), (textbook_value, textbook_grad) = both(scores)
    np.testing.assert_allclose(fused_value, textbook_value, atol=1e-6)
    np.testing.assert_allclose(fused_grad, textbook_grad, atol=1e-5)
    assert np.abs(textbook_grad).max() > 0.1  # the comparison is not vacuous
    # Numerical gradients too, for the plain and the tie-aware AP (one function: one compile).
    def plain_plus_tie_aware(s):
        return quantized_ap(s, relevance[:2, :5]) + quantized_ap(s, relevance[:2, :5], tie_aware=True)

    check_grads(jax.jit(plain_plus_tie_aware), (scores[:2, :5],), order=1, modes=["rev"], eps=1e-3,
                atol=1e-2, rtol=1e-2)


def test_gradient_on_bin_centres_is_a_one_sided_derivative():
    # Scores exactly on centres (including both ends of the range) sit on the triangles' kinks:
    # the gradient must be the derivative from below or from above, entry by entry.
    scores = jnp.array([CENTRES[[0, 3, 7, 12, 19]], CENTRES[[1, 1, 5, 18, 19]]], jnp.float32)
    relevance = jnp.array([[1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0, 0.0]])

    @jax.jit
    def gradients(scores):
        def textbook_grad(s):
            return jax.grad(lambda x: textbook_quantized_ap(x, relevance).sum())(s)
        shift = 1e-3 * BIN_WIDTH
        fused = jax.grad(lambda s: quantized_ap(s, relevance).sum())(scores)
        return fused, textbook_grad(scores - shift), textbook_grad(scores + shift)

    fused, from_below, from_above = (np.asarray(g) for g in gradients(scores))
    matches = np.isclose(fused, from_below, atol=1e-2) | np.isclose(fused, from_above, atol=1e-2)
    assert matches.all(), (fused, from_below, from_above)
    assert np.all(np.isfinite(fused))


BATCH_LABELS = np.array([0, 0, 1, 1, 1, 2, 2, 0, 3, 1, 2, 4])  # classes 3 and 4: no positive


def test_map_q_loss_equals_textbook_with_self_match_deleted():
    descriptors = unit_descriptors(1, 12, 5)
    labels = jnp.asarray(BATCH_LABELS)
    loss, grads = map_q_value_and_grad(descriptors, labels)
    textbook_loss, textbook_grads = jax.jit(jax.value_and_grad(
        functools.partial(textbook_map_q_loss, labels=BATCH_LABELS)))(descriptors)
    np.testing.assert_allclose(loss, textbook_loss, atol=1e-6)
    np.testing.assert_allclose(grads, textbook_grads, atol=1e-5)
    np.testing.assert_allclose(map_q_loss(descriptors, labels), loss, atol=1e-6)  # eager == jit

    @jax.jit
    def invariants(descriptors, labels, permutation):
        # Multi-hot labels give the same relevance as class ids; permuting the batch changes nothing.
        return (map_q_loss(descriptors, jax.nn.one_hot(labels, 5)),
                map_q_loss(descriptors[permutation], labels[permutation]))

    multi_hot, permuted = invariants(descriptors, labels, np.random.default_rng(2).permutation(12))
    np.testing.assert_allclose(multi_hot, loss, atol=1e-6)
    np.testing.assert_allclose(permuted, loss, atol=1e-6)


def test_queries_without_positives_masks_and_weights():
    descriptors = unit_descriptors(1, 12, 5)
    # All queries without a positive: loss 0, gradient 0, nothing NaN.
    loss, grads = map_q_value_and_grad(descriptors, jnp.arange(12))
    assert loss == 0.0 and np.all(grads == 0.0)

    # A 13th example masked out by `where` must change nothing; weights reweight the queries.
    extra = unit_descriptors(5, 1, 5)
    padded = jnp.concatenate([descriptors, extra])
    padded_labels = jnp.asarray(np.append(BATCH_LABELS, 0))
    where = jnp.arange(13) < 12
    weights = jnp.linspace(0.5, 2.0, 13)

    @jax.jit
    def variants(descriptors, labels, where, weights):
        ap, has_relevant = batch_quantized_ap(descriptors, labels, where=where)
        return (ap, has_relevant, map_q_loss(descriptors, labels, where=where),
                map_q_loss(descriptors, labels, where=where, query_weights=weights))

    ap, has_relevant, masked, weighted = variants(padded, padded_labels, where, weights)
    np.testing.assert_array_equal(has_relevant, np.append(np.isin(BATCH_LABELS, [0, 1, 2]), False))
    assert np.all(ap[~has_relevant] == 0.0)
    np.testing.assert_allclose(masked, map_q_value_and_grad(descriptors, BATCH_LABELS)[0], atol=1e-6)
    np.testing.assert_allclose(masked, 1.0 - ap[has_relevant].mean(), atol=1e-6)
    used = np.asarray(weights) * np.asarray(has_relevant)
    np.testing.assert_allclose(weighted, 1.0 - (ap * used).sum() / used.sum(), atol=1e-6)


def test_bad_input():
    descriptors = unit_descriptors(1, 12, 5)
    labels = jnp.asarray(BATCH_LABELS)
    with pytest.raises(ValueError, match="labels"):
        map_q_loss(descriptors, labels[:5])
    with pytest.raises(TypeError, match="labels"):
        map_q_loss(descriptors, labels.astype(jnp.float32))
    with pytest.raises(ValueError, match="descriptors"):
        map_q_loss(descriptors[0], labels)
    with pytest.raises(ValueError, match="descriptors.*NaN"):
        map_q_loss(descriptors.at[0, 0].set(jnp.nan), labels)
    with pytest.raises(ValueError, match="query_weights"):
        map_q_loss(descriptors, labels, query_weights=jnp.ones((3,)))
    with pytest.raises(ValueError, match="where"):
        map_q_loss(descriptors, labels, where=jnp.ones((12,), jnp.int32))
    with pytest.raises(ValueError, match="num_bins"):
        quantized_ap(jnp.zeros((2, 3)), jnp.zeros((2, 3)), num_bins=1)
    with pytest.raises(ValueError, match="score_range"):
        quantized_ap(jnp.zeros((2, 3)), jnp.zeros((2, 3)), score_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="relevance"):
        quantized_ap(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="tie_aware_form"):
        quantized_ap(jnp.zeros((2, 3)), jnp.zeros((2, 3)), tie_aware_form="approximate")
    # Under jit a NaN input must not crash.
    loss, _ = map_q_value_and_grad(descriptors.at[0, 0].set(jnp.nan), labels)
    assert loss.shape == ()


def test_memory_bound_at_batch_4096():
    """Forward + backward never builds the batch x batch x bins tensor: at most 4 batch^2 floats."""
    batch_size = 4096
    descriptors = jax.ShapeDtypeStruct((batch_size, 128), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    compiled = jax.jit(jax.value_and_grad(map_q_loss)).lower(descriptors, labels).compile()
    temp_bytes = compiled.memory_analysis().temp_size_in_bytes
    assert temp_bytes <= 4 * batch_size * batch_size * 4, temp_bytes
