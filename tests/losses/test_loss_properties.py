"""Property-based tests of every public loss on hostile input, under ``jax.jit`` and eagerly.

Inputs: random shapes (batch size 1 included), ``where=`` masks, rows of zeros, NaN and +-inf entries,
and magnitudes from 1e-30 up to float32's limit. Properties: no NaN in values or gradients where the
inputs are finite or masked out; NaN (under jit) or ValueError (eagerly), never a good-looking value,
where they are not; values in their documented ranges; masked entries change nothing; float64
references where the float32 problem is well conditioned.

Shapes come from small fixed sets and hyperparameters are traced arguments, so each jitted function
compiles once per shape (compiles dominate the run time).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxretrieval.losses import (
    batch_quantized_ap,
    csq_loss,
    map_q_loss,
    masked_mean,
    pairwise_likelihood_loss,
    quantized_ap,
    soft_quantize,
    spq_loss,
    triplet_margin_loss,
    weighted_mean,
)

FLOAT32_MAX = float(np.finfo(np.float32).max)
# Entry magnitudes: ordinary, tiny, large, beyond the square root of float32's range (products
# overflow), up to float32's limit, and "mixed": each entry's magnitude log-uniform in [1e-30, max].
MAGNITUDES = (1.0, "mixed", 1e-30, 1e4, 1e20, 1e30, FLOAT32_MAX)
SPECIAL_VALUES = (np.nan, np.inf, -np.inf)


def draw_array(data, shape, label, *, special=True):
    """float32 array: random values at a drawn magnitude, some zero rows, some NaN/+-inf entries."""
    seed = data.draw(st.integers(0, 2**31 - 1), label=f"{label} seed")
    magnitude = data.draw(st.sampled_from(MAGNITUDES), label=f"{label} magnitude")
    rng = np.random.default_rng(seed)
    if magnitude == "mixed":
        values = rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(-30, np.log10(FLOAT32_MAX), shape)
    else:
        values = np.clip(rng.standard_normal(shape) / 3, -1, 1) * magnitude
    values = np.clip(values, -FLOAT32_MAX, FLOAT32_MAX)  # float64 rounding must not reach inf
    zero_rows = data.draw(st.lists(st.integers(0, shape[0] - 1), max_size=2), label=f"{label} zero rows")
    values[zero_rows] = 0.0
    if special:
        index = st.tuples(*(st.integers(0, size - 1) for size in shape))
        for position, value in data.draw(st.lists(st.tuples(index, st.sampled_from(SPECIAL_VALUES)),
                                                  max_size=2), label=f"{label} NaN/Inf"):
            values[position] = value
    return values.astype(np.float32), magnitude


def draw_mask(data, size, label="where"):
    return np.array(data.draw(st.lists(st.booleans(), min_size=size, max_size=size), label=label))


def draw_labels(data, size):
    return np.array(data.draw(st.lists(st.integers(0, 2), min_size=size, max_size=size), label="labels"),
                    np.int32)


def draw_batch(data, label):
    """``(values [batch, 3], magnitude, labels, where)`` for a batch-coupled loss, batch 1 or 5."""
    batch_size = data.draw(st.sampled_from([1, 5]), label="batch size")
    values, magnitude = draw_array(data, (batch_size, 3), label)
    return values, magnitude, draw_labels(data, batch_size), draw_mask(data, batch_size)


def has_nan(*arrays):
    return any(np.isnan(np.asarray(array)).any() for array in jax.tree.leaves(arrays))


def float32_expected(values):
    """float64 reference values as float32 sees them: +-inf where they exceed its range."""
    values = np.asarray(values, np.float64)
    return np.where(np.abs(values) > FLOAT32_MAX, np.copysign(np.inf, values), values)


def assert_close_where_representable(actual, reference, rtol, atol=0.0):
    """Compares with a float64 reference, skipping values within 1% of float32's limit."""
    reference = np.asarray(reference, np.float64)
    clear = np.abs(np.abs(reference) - FLOAT32_MAX) > 0.01 * FLOAT32_MAX
    np.testing.assert_allclose(np.asarray(actual)[clear], float32_expected(reference)[clear],
                               rtol=rtol, atol=atol)


def assert_eager_matches(call, jitted_value, bad_input, rtol=1e-5, atol=1e-6):
    """Eagerly: ValueError for bad input (values are known), else the jitted value."""
    if bad_input:
        with pytest.raises(ValueError):
            call()
    else:
        np.testing.assert_allclose(call(), jitted_value, rtol=rtol, atol=atol)


def outputs_and_grads(total, *args):
    """``(outputs, gradient)`` of ``total(x, ...) -> (scalar, outputs)`` with respect to ``x``."""
    (_, outputs), grads = jax.value_and_grad(total, has_aux=True)(*args)
    return outputs, grads


# ---------------------------------------------------------------------------------------------------
# CSQ


@jax.jit
def csq_values_and_grads(logits, centers, where, weight):
    def total(u, quantization):
        per_example = csq_loss(u, centers, quantization_weight=weight, quantization=quantization,
                               where=where)
        return per_example.sum(), per_example

    return [outputs_and_grads(total, logits, quantization) for quantization in ("squared", "log_cosh")]


@np.errstate(all="ignore")  # masked entries and bad centers may hold NaN: not compared
def csq_reference(logits, centers, where, weight, quantization):
    u = np.where(where, logits, 0.0).astype(np.float64)
    c = np.where(where, centers, 1.0).astype(np.float64)
    gap = np.abs(np.tanh(u)) - 1.0
    penalty = gap**2 if quantization == "squared" else np.log(np.cosh(gap))
    central = np.logaddexp(0.0, -2.0 * c * u)
    # A bit whose own loss exceeds float32 makes its example +inf (documented).
    central = np.where(central > FLOAT32_MAX, np.inf, central)
    count = where.sum(axis=1)
    return np.sum(np.where(where, central + weight * penalty, 0.0), axis=1) / np.maximum(count, 1)


@given(st.data())
def test_csq_loss_properties(data):
    batch_size, num_bits = data.draw(st.sampled_from([(1, 1), (3, 4)]), label="shape")
    logits, _ = draw_array(data, (batch_size, num_bits), "logits")
    centers = np.where(np.random.default_rng(batch_size).uniform(size=logits.shape) < 0.5, 1.0, -1.0)
    for position, value in data.draw(st.lists(st.tuples(
            st.tuples(st.integers(0, batch_size - 1), st.integers(0, num_bits - 1)),
            st.sampled_from([0.0, 2.0, np.nan])), max_size=1), label="bad centers"):
        centers[position] = value
    centers = centers.astype(np.float32)
    where = draw_mask(data, batch_size * num_bits).reshape(logits.shape)
    weight = data.draw(st.sampled_from([0.0, 0.05, 1.0]), label="quantization_weight")
    bad = ~(np.isfinite(logits) & ((centers == 1) | (centers == -1))) & where
    bad_rows = bad.any(axis=1)

    results = csq_values_and_grads(logits, centers, where, weight)
    for quantization, (values, grads) in zip(("squared", "log_cosh"), results):
        values, grads = np.asarray(values), np.asarray(grads)
        assert np.all(np.isnan(values[bad_rows]))
        assert not has_nan(values[~bad_rows], grads[~bad_rows])
        assert np.all(values[~bad_rows] >= 0) and np.all(values[~where.any(axis=1)] == 0)
        assert np.all(grads[~where] == 0)
        reference = csq_reference(logits, centers, where, weight, quantization)
        assert_close_where_representable(values[~bad_rows], reference[~bad_rows], rtol=2e-5, atol=1e-6)
    # Masked entries change nothing, whatever they hold.
    clean = csq_values_and_grads(np.where(where, logits, 0.0), np.where(where, centers, 1.0), where, weight)
    for (values, grads), (clean_values, clean_grads) in zip(results, clean):
        np.testing.assert_array_equal(values, clean_values)
        np.testing.assert_array_equal(grads, clean_grads)
    assert_eager_matches(lambda: csq_loss(logits, centers, quantization_weight=weight, where=where),
                         results[0][0], bad.any())


# ---------------------------------------------------------------------------------------------------
# SPQ


@jax.jit
def soft_quantize_and_grads(features, codebooks, temperature, cotangent):
    def total(x, c):
        quantized = soft_quantize(x, c, temperature=temperature)
        return jnp.sum(quantized * cotangent), quantized

    (_, quantized), grads = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(features, codebooks)
    return quantized, grads


@given(st.data())
def test_soft_quantize_properties(data):
    batch_size, num_books, num_words, word_dim = data.draw(
        st.sampled_from([(1, 1, 1, 1), (3, 2, 3, 2)]), label="shape")
    features, feature_magnitude = draw_array(data, (batch_size, num_books * word_dim), "features")
    codebooks, codebook_magnitude = draw_array(data, (num_books * num_words, word_dim), "codebooks")
    codebooks = codebooks.reshape(num_books, num_words, word_dim)
    temperature = data.draw(st.sampled_from([0.0, 0.5, 5.0, 1e4, 1e30]), label="temperature")
    cotangent = np.random.default_rng(0).standard_normal(features.shape).astype(np.float32)
    quantized, (feature_grads, codebook_grads) = jax.tree.map(
        np.asarray, soft_quantize_and_grads(features, codebooks, temperature, cotangent))
    finite_rows = np.isfinite(features).all(axis=1)

    if not np.isfinite(codebooks).all():
        assert np.all(np.isnan(quantized))
    else:
        assert np.all(np.isnan(quantized[~finite_rows]))
        assert not has_nan(quantized[finite_rows], feature_grads[finite_rows])
        if finite_rows.all():
            assert not has_nan(codebook_grads)
        # Convex combinations: inside each book's bounding box of codewords.
        books = quantized[finite_rows].reshape(-1, num_books, word_dim)
        tolerance = 1e-6 * np.abs(codebooks).max()
        assert np.all(books >= codebooks.min(axis=1)[None] - tolerance)
        assert np.all(books <= codebooks.max(axis=1)[None] + tolerance)
        if feature_magnitude == codebook_magnitude == 1.0 and temperature <= 5.0 and finite_rows.all():
            sub_vectors = features.reshape(batch_size, num_books, 1, word_dim).astype(np.float64)
            logits = -temperature * np.sum((sub_vectors - codebooks[None]) ** 2, axis=-1)
            weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
            weights /= weights.sum(axis=-1, keepdims=True)
            reference = np.einsum("bmk,mkl->bml", weights, codebooks).reshape(features.shape)
            np.testing.assert_allclose(quantized, reference, atol=1e-5)
    finite_codewords = np.abs(codebooks[np.isfinite(codebooks)])
    assert_eager_matches(lambda: soft_quantize(features, codebooks, temperature=temperature), quantized,
                         not (np.isfinite(features).all() and np.isfinite(codebooks).all()),
                         atol=1e-5 * max(1.0, float(finite_codewords.max(initial=0))))


def test_soft_quantize_gradient_equals_autodiff_of_the_textbook_formula():
    rng = np.random.default_rng(0)
    features = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)
    codebooks = jnp.asarray(rng.standard_normal((2, 3, 2)), jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)

    def textbook(x, c, t):
        sub_vectors = x.reshape(3, 2, 1, 2)
        weights = jax.nn.softmax(-t * jnp.sum((sub_vectors - c[None]) ** 2, axis=-1), axis=-1)
        return jnp.einsum("bmk,mkl->bml", weights, c).reshape(x.shape)

    @jax.jit
    def gradients(x, c, t, cotangent):
        ours = jax.grad(lambda *a: jnp.sum(soft_quantize(*a[:2], temperature=a[2]) * cotangent),
                        argnums=(0, 1, 2))(x, c, t)
        return ours, jax.grad(lambda *a: jnp.sum(textbook(*a) * cotangent), argnums=(0, 1, 2))(x, c, t)

    for temperature in (0.0, 0.5, 5.0):
        ours, reference = gradients(features, codebooks, temperature, cotangent)
        for actual, expected in zip(ours, reference):
            np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    # Examples are independent: one far-away (hard-assigned) row leaves the others' codebook
    # gradient as it was.
    cotangent = cotangent.at[0].set(0.0)
    np.testing.assert_allclose(gradients(features.at[0].multiply(1e30), codebooks, 0.5, cotangent)[0][1],
                               gradients(features, codebooks, 0.5, cotangent)[0][1], rtol=1e-5, atol=1e-6)


@jax.jit
def spq_value_and_grads(features_a, features_b, quantized_a, quantized_b, temperature):
    def loss(*inputs):
        return spq_loss(*inputs, temperature=temperature)

    return jax.value_and_grad(loss, argnums=(0, 1, 2, 3))(features_a, features_b, quantized_a, quantized_b)


@given(st.data())
def test_spq_loss_properties(data):
    shape = data.draw(st.sampled_from([(1, 3), (4, 1)]), label="shape")
    corrupted = data.draw(st.sampled_from([None, 0, 3]), label="input with NaN/Inf")
    inputs = [draw_array(data, shape, name, special=index == corrupted)
              for index, name in enumerate(["features_a", "features_b", "quantized_a", "quantized_b"])]
    magnitudes = [magnitude for _, magnitude in inputs]
    inputs = [array for array, _ in inputs]
    temperature = data.draw(st.sampled_from([1e-3, 0.5, 1e3]), label="temperature")
    value, grads = spq_value_and_grads(*inputs, temperature)
    finite = all(np.isfinite(array).all() for array in inputs)
    if not finite:
        assert np.isnan(value)
    else:
        assert not has_nan(value, grads)
        batch_size = shape[0]
        if batch_size == 1:
            assert value == 0.0  # no negatives
        else:
            assert 0.0 <= value <= 2 * (np.log(2 * batch_size - 1) + 2 / temperature) * (1 + 1e-5)
        if set(magnitudes) == {1.0}:
            # Cosine similarities: exact power-of-two rescaling of the rows changes nothing.
            for scale in (2.0**100, 2.0**-100):
                scaled_value, scaled_grads = spq_value_and_grads(*(x * scale for x in inputs), temperature)
                np.testing.assert_allclose(scaled_value, value, rtol=1e-6)
                assert not has_nan(scaled_grads)
    assert_eager_matches(lambda: spq_loss(*inputs, temperature=temperature), value, not finite)


# ---------------------------------------------------------------------------------------------------
# mAP_Q


@jax.jit
def quantized_ap_and_grads(scores, relevance):
    def total(s):
        values = (quantized_ap(s, relevance), quantized_ap(s, relevance, tie_aware=True),
                  quantized_ap(s, relevance, tie_aware=True, tie_aware_form="simplified"))
        return sum(jnp.sum(value) for value in values), values

    return outputs_and_grads(total, scores)


@given(st.data())
def test_quantized_ap_properties(data):
    shape = data.draw(st.sampled_from([(1, 1), (3, 5)]), label="shape")
    scores, _ = draw_array(data, shape, "scores")
    relevance = draw_mask(data, shape[0] * shape[1], "relevance").reshape(shape)
    values, grads = quantized_ap_and_grads(scores, relevance)
    has_relevant = relevance.any(axis=1)
    finite_rows = np.isfinite(scores).all(axis=1)
    for value in values:
        value = np.asarray(value)
        assert np.all(np.isnan(value[~finite_rows & has_relevant]))
        assert np.all(value[~has_relevant] == 0.0)
        assert np.all((value[finite_rows] >= 0.0) & (value[finite_rows] <= 1.0 + 1e-5))
    assert not has_nan(np.asarray(grads)[finite_rows])
    assert_eager_matches(lambda: quantized_ap(scores, relevance), values[0], not finite_rows.all())


ROW_CORRUPTIONS = {"zero": 0.0, "half": 0.5, "double": 2.0, "1e20": 1e20, "1e-20": 1e-20,
                   "nan": np.nan, "inf": np.inf}


@jax.jit
def map_q_results(descriptors, labels, where, weights):
    def loss(d, **options):
        return map_q_loss(d, labels, where=where, **options)

    weighted, grads = jax.value_and_grad(loss)(descriptors, query_weights=weights)
    average_precision, has_relevant = batch_quantized_ap(descriptors, labels, where=where)
    return dict(weighted=weighted, grads=grads, plain=loss(descriptors),
                tie_aware=loss(descriptors, tie_aware=True), ap=average_precision,
                has_relevant=has_relevant)


@given(st.data())
def test_map_q_loss_and_batch_quantized_ap_properties(data):
    batch_size = data.draw(st.sampled_from([1, 5]), label="batch size")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1), label="seed"))
    descriptors = rng.standard_normal((batch_size, 3))
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    corruptions = data.draw(st.lists(st.tuples(st.integers(0, batch_size - 1), st.sampled_from(
        sorted(ROW_CORRUPTIONS))), max_size=2), label="row corruptions")
    with np.errstate(over="ignore"):  # a row scaled by 1e20 twice overflows float32: fine, +-inf
        for row, kind in corruptions:
            descriptors[row] = 0.0 if kind == "zero" else descriptors[row] * ROW_CORRUPTIONS[kind]
        descriptors = descriptors.astype(np.float32)
    labels, where = draw_labels(data, batch_size), draw_mask(data, batch_size)
    weights = rng.uniform(0, 2, batch_size).astype(np.float32)
    for row, value in data.draw(st.lists(st.tuples(st.integers(0, batch_size - 1), st.sampled_from(
            [0.0, -0.5, np.nan, np.inf])), max_size=1), label="weight corruptions"):
        weights[row] = value
    squared_norms = np.sum(descriptors.astype(np.float64) ** 2, axis=1)
    unit_or_zero = (np.abs(squared_norms - 1) <= 1e-2) | np.all(descriptors == 0, axis=1)
    in_contract = np.all(unit_or_zero | ~where)
    weights_ok = np.all((np.isfinite(weights) & (weights >= 0)) | ~where)

    results = jax.tree.map(np.asarray, map_q_results(descriptors, labels, where, weights))
    assert np.all(results["grads"][~where] == 0)
    if in_contract:
        for name in ("plain", "tie_aware"):
            assert 0.0 <= results[name] <= 1.0
        assert not has_nan(results["ap"])
        assert np.all((results["ap"] >= 0) & (results["ap"] <= 1) & (results["has_relevant"] <= where))
        assert np.all(results["ap"][~results["has_relevant"]] == 0)
        if weights_ok:
            assert 0.0 <= results["weighted"] <= 1.0
            assert not has_nan(results["grads"])
        else:
            assert np.isnan(results["weighted"])
    else:
        # Out of contract (NaN, +-inf, off the unit sphere): never a value that reads as good.
        assert np.isnan(results["weighted"]) and np.isnan(results["plain"]) and np.isnan(results["tie_aware"])
        assert np.all(np.isnan(results["ap"]))
        # The gradient is NaN for the offending rows (at least).
        assert np.all(np.isnan(results["grads"][where & ~unit_or_zero]))
    # Masked rows and weights change nothing, whatever they hold.
    clean = map_q_results(np.where(where[:, None], descriptors, 0.0), labels, where,
                          np.where(where, weights, 1.0))
    jax.tree.map(np.testing.assert_array_equal, results, jax.tree.map(np.asarray, clean))
    assert_eager_matches(lambda: map_q_loss(descriptors, labels, where=where, query_weights=weights),
                         results["weighted"], not (in_contract and weights_ok))


# ---------------------------------------------------------------------------------------------------
# Baselines


@jax.jit
def pairwise_values_and_grads(outputs, labels, where, weight):
    def total(x):
        per_example = pairwise_likelihood_loss(x, labels, quantization_weight=weight, where=where)
        return per_example.sum(), per_example

    return outputs_and_grads(total, outputs)


@np.errstate(all="ignore")  # masked rows may hold NaN: not compared
def pairwise_reference(outputs, labels, where, weight):
    outputs = outputs.astype(np.float64)
    theta = 0.5 * outputs @ outputs.T
    pair_loss = np.logaddexp(0.0, np.where(labels[:, None] == labels[None, :], -theta, theta))
    valid = where[:, None] & where[None, :] & ~np.eye(len(outputs), dtype=bool)
    loss = np.sum(np.where(valid, pair_loss, 0), axis=1) / np.maximum(valid.sum(axis=1), 1)
    quantization = np.mean((outputs - np.sign(outputs)) ** 2, axis=1)
    return np.where(where, loss + weight * quantization, 0.0)


@given(st.data())
def test_pairwise_likelihood_loss_properties(data):
    outputs, magnitude, labels, where = draw_batch(data, "outputs")
    weight = data.draw(st.sampled_from([0.0, 0.5]), label="quantization_weight")
    values, grads = map(np.asarray, pairwise_values_and_grads(outputs, labels, where, weight))
    finite = np.isfinite(outputs[where]).all()
    if finite:
        assert not has_nan(values, grads)
        assert np.all(values >= 0) and np.all(values[~where] == 0) and np.all(grads[~where] == 0)
        if magnitude == 1.0:
            np.testing.assert_allclose(values, pairwise_reference(outputs, labels, where, weight),
                                       rtol=1e-4, atol=1e-5)
    else:
        assert np.all(np.isnan(values))
    clean = pairwise_values_and_grads(np.where(where[:, None], outputs, 0.0), labels, where, weight)
    np.testing.assert_array_equal(values, clean[0])
    np.testing.assert_array_equal(grads, clean[1])
    assert_eager_matches(
        lambda: pairwise_likelihood_loss(outputs, labels, quantization_weight=weight, where=where),
        values, not finite)


TRIPLET_VARIANTS = [(mining, distance) for mining in ("batch_hard", "batch_all")
                    for distance in ("squared_l2", "cosine")]


@jax.jit
def triplet_values_and_grads(embeddings, labels, where, margin):
    def total(x, mining, distance):
        per_anchor = triplet_margin_loss(x, labels, margin=margin, mining=mining, distance=distance,
                                         where=where)
        return per_anchor.sum(), per_anchor

    return [outputs_and_grads(total, embeddings, *variant) for variant in TRIPLET_VARIANTS]


@np.errstate(all="ignore")  # masked rows may hold NaN: not compared
def triplet_reference(embeddings, labels, where, margin, mining, distance):
    x = embeddings.astype(np.float64)
    if distance == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
        distances = 1.0 - unit @ unit.T
    else:
        distances = np.sum((x[:, None] - x[None]) ** 2, axis=-1)
    losses = np.zeros(len(x))
    for anchor in np.flatnonzero(where):
        same_label = labels == labels[anchor]
        positives = distances[anchor, same_label & where & (np.arange(len(x)) != anchor)]
        negatives = distances[anchor, ~same_label & where]
        if positives.size and negatives.size:
            # Every (positive, negative) pair; batch-hard keeps the worst one.
            violations = np.maximum(positives[:, None] - negatives[None, :] + margin, 0.0)
            losses[anchor] = violations.max() if mining == "batch_hard" else violations.mean()
    return losses


@given(st.data())
def test_triplet_margin_loss_properties(data):
    embeddings, magnitude, labels, where = draw_batch(data, "embeddings")
    margin = data.draw(st.sampled_from([0.2, 1.0]), label="margin")
    results = jax.tree.map(np.asarray, triplet_values_and_grads(embeddings, labels, where, margin))
    finite = np.isfinite(embeddings[where]).all()
    for (mining, distance), (values, grads) in zip(TRIPLET_VARIANTS, results):
        if not finite:
            assert np.all(np.isnan(values))
            continue
        assert not has_nan(values, grads)
        assert np.all(values >= 0) and np.all(values[~where] == 0) and np.all(grads[~where] == 0)
        if distance == "cosine":
            assert np.all(values <= 2.0 + margin + 1e-6)
        if magnitude == 1.0:
            reference = triplet_reference(embeddings, labels, where, margin, mining, distance)
            np.testing.assert_allclose(values, reference, rtol=1e-4, atol=1e-4)
    if finite and magnitude in (1.0, 1e-30):
        # Exact power-of-two rescaling: squared distances scale by its square (so does the margin
        # here), cosine distances not at all.
        scale = 2.0**40
        scaled = jax.tree.map(np.asarray, triplet_values_and_grads(embeddings * scale, labels, where,
                                                                   margin * scale**2))
        unscaled_margin = jax.tree.map(np.asarray, triplet_values_and_grads(embeddings * scale, labels,
                                                                            where, margin))
        for (mining, distance), (values, _), (scaled_values, scaled_grads), (same_margin, _) in zip(
                TRIPLET_VARIANTS, results, scaled, unscaled_margin):
            assert not has_nan(scaled_grads)
            if distance == "squared_l2":
                np.testing.assert_allclose(scaled_values, values * scale**2, rtol=1e-6)
            else:
                np.testing.assert_allclose(same_margin, values, rtol=1e-5, atol=1e-6)
    for (values, grads), (clean_values, clean_grads) in zip(results, triplet_values_and_grads(
            np.where(where[:, None], embeddings, 0.0), labels, where, margin)):
        np.testing.assert_array_equal(values, clean_values)
        np.testing.assert_array_equal(grads, clean_grads)
    assert_eager_matches(lambda: triplet_margin_loss(embeddings, labels, margin=margin, where=where),
                         results[0][0], not finite)


# ---------------------------------------------------------------------------------------------------
# Reductions


@jax.jit
def reductions_and_grads(values, where, weights):
    masked, masked_grads = jax.vjp(lambda v: masked_mean(v, where, axis=1), values)
    weighted, weighted_grads = jax.value_and_grad(weighted_mean)(values, weights)
    return masked, masked_grads(jnp.ones_like(masked))[0], weighted, weighted_grads


@given(st.data())
@np.errstate(over="ignore")  # bounds near float32's limit
def test_masked_and_weighted_mean_properties(data):
    values, _ = draw_array(data, (3, 4), "values")
    where = draw_mask(data, 12).reshape(3, 4)
    weights = np.where(draw_mask(data, 12, "nonzero weights").reshape(3, 4),
                       np.random.default_rng(0).uniform(0.1, 2, (3, 4)), 0.0).astype(np.float32)
    weight_scale = data.draw(st.sampled_from([1.0, 1e30, 1e-30]), label="weight scale")
    weights = (weights * weight_scale).astype(np.float32)
    bad_weight = data.draw(st.sampled_from([None, -1.0, np.nan, np.inf]), label="bad weight")
    if bad_weight is not None:
        weights[0, 0] = bad_weight
    masked, masked_grads, weighted, weighted_grads = jax.tree.map(
        np.asarray, reductions_and_grads(values, where, weights))

    for row in range(3):
        selected = values[row][where[row]]
        if selected.size == 0:
            assert masked[row] == 0.0
        elif np.isfinite(selected).all():
            # Never overflows in between: within [min, max] of the selected values.
            spread = 1e-6 * np.abs(selected).max()
            assert selected.min() - spread <= masked[row] <= selected.max() + spread
        else:
            assert not np.isfinite(masked[row])
    counts = np.maximum(where.sum(axis=1, keepdims=True), 1)
    np.testing.assert_allclose(masked_grads, np.where(where, 1.0 / counts, 0.0), rtol=1e-6)

    used = weights != 0
    if bad_weight is not None:
        assert np.isnan(weighted)
    elif not used.any():
        assert weighted == 0.0 and np.all(weighted_grads == 0)
    elif np.isfinite(values[used]).all():
        spread = 1e-5 * np.abs(values[used]).max()
        assert values[used].min() - spread <= weighted <= values[used].max() + spread
        assert not has_nan(weighted_grads) and np.all(weighted_grads[~used] == 0)
    assert_eager_matches(lambda: weighted_mean(values, weights), weighted, bad_weight is not None,
                         rtol=1e-5, atol=0)
