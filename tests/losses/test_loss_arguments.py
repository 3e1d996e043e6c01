"""Every hyperparameter and array argument is checked against its documented range at the boundary.

Concrete values out of range raise an error naming the argument, the value and the range; traced
ones (under ``jax.jit``, where no check can run) turn the loss into NaN instead of a good-looking number.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.losses import (
    batch_quantized_ap,
    csq_loss,
    map_q_loss,
    pairwise_likelihood_loss,
    quantized_ap,
    soft_quantize,
    spq_loss,
    triplet_margin_loss,
    weighted_mean,
)

LOGITS = jnp.array([[0.5, -1.0], [2.0, 0.1]])
CENTERS = jnp.array([[1, -1], [-1, 1]])
UNIT = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
LABELS = jnp.array([0, 1, 0, 1])
CODEBOOKS = jnp.array([[[0.0, 0.0], [1.0, 1.0]]])
SCORES = jnp.array([[0.9, 0.1, -0.4]])
RELEVANCE = jnp.array([[1, 0, 1]])

BAD_CALLS = {
    "csq negative weight": (lambda: csq_loss(LOGITS, CENTERS, quantization_weight=-0.1), ValueError,
                            r"quantization_weight must be a finite number >= 0, got -0\.1"),
    "csq NaN weight": (lambda: csq_loss(LOGITS, CENTERS, quantization_weight=float("nan")), ValueError,
                       r"quantization_weight must be a finite number >= 0, got nan"),
    "csq string weight": (lambda: csq_loss(LOGITS, CENTERS, quantization_weight="0.1"), TypeError,
                          r"quantization_weight must be a real number >= 0, got '0\.1'"),
    "csq array weight": (lambda: csq_loss(LOGITS, CENTERS, quantization_weight=np.ones(2)), TypeError,
                         r"quantization_weight must be a real number"),
    "csq zero center": (lambda: csq_loss(LOGITS, CENTERS.at[1, 0].set(0)), ValueError,
                        r"centers must hold only -1 and \+1, got 0 at index \(1, 0\)"),
    "csq where shape": (lambda: csq_loss(LOGITS, CENTERS, where=jnp.ones((2, 3), bool)), ValueError,
                        r"where must have shape \[batch, num_bits\] = \[2, 2\] or \[batch, 1\]"),
    "soft_quantize negative temperature": (
        lambda: soft_quantize(UNIT[:1], CODEBOOKS, temperature=-1.0), ValueError,
        r"temperature must be a finite number >= 0, got -1\.0"),
    "soft_quantize infinite temperature": (
        lambda: soft_quantize(UNIT[:1], CODEBOOKS, temperature=float("inf")), ValueError,
        r"temperature must be a finite number >= 0, got inf"),
    "soft_quantize NaN codebooks": (
        lambda: soft_quantize(UNIT[:1], CODEBOOKS.at[0, 1, 0].set(jnp.nan)), ValueError,
        r"codebooks contains NaN or Inf values .* index \(0, 1, 0\)"),
    "spq zero temperature": (lambda: spq_loss(UNIT, UNIT, UNIT, UNIT, temperature=0.0), ValueError,
                             r"temperature must be a finite number >= 1\.17549e-38, got 0\.0"),
    "spq negative temperature": (lambda: spq_loss(UNIT, UNIT, UNIT, UNIT, temperature=-0.5),
                                 ValueError, r"temperature .* got -0\.5"),
    "quantized_ap one bin": (lambda: quantized_ap(SCORES, RELEVANCE, num_bins=1), ValueError,
                             r"num_bins must be an integer >= 2, got 1"),
    "quantized_ap fractional bins": (lambda: quantized_ap(SCORES, RELEVANCE, num_bins=2.5),
                                     ValueError, r"num_bins must be an integer >= 2, got 2\.5"),
    "quantized_ap boolean bins": (lambda: quantized_ap(SCORES, RELEVANCE, num_bins=True), ValueError,
                                  r"num_bins must be an integer >= 2, got True"),
    "quantized_ap reversed range": (lambda: quantized_ap(SCORES, RELEVANCE, score_range=(1.0, -1.0)),
                                    ValueError, r"score_range must be \(low, high\), finite with low < high"),
    "quantized_ap NaN range": (lambda: quantized_ap(SCORES, RELEVANCE, score_range=(float("nan"), 1.0)),
                               ValueError, r"score_range .* got \(nan, 1\.0\)"),
    "quantized_ap infinite range": (lambda: quantized_ap(SCORES, RELEVANCE, score_range=(0, float("inf"))),
                                    ValueError, r"score_range .* got \(0, inf\)"),
    "quantized_ap short range": (lambda: quantized_ap(SCORES, RELEVANCE, score_range=(0.0,)),
                                 ValueError, r"score_range .* got \(0\.0,\)"),
    "quantized_ap tie_aware string": (lambda: quantized_ap(SCORES, RELEVANCE, tie_aware="yes"),
                                      TypeError, r"tie_aware must be True or False, got 'yes'"),
    "batch_quantized_ap unnormalised": (lambda: batch_quantized_ap(2.0 * UNIT, LABELS), ValueError,
                                        r"descriptors must be L2-normalised .* row 0 has norm 2"),
    "map_q negative weight": (
        lambda: map_q_loss(UNIT, LABELS, query_weights=jnp.array([1.0, -2.0, 1.0, 1.0])), ValueError,
        r"query_weights must be finite and >= 0, got -2\.0 at index \(1,\)"),
    "map_q infinite weight": (
        lambda: map_q_loss(UNIT, LABELS, query_weights=jnp.array([1.0, 1.0, jnp.inf, 1.0])), ValueError,
        r"query_weights must be finite and >= 0, got inf at index \(2,\)"),
    "map_q unnormalised": (lambda: map_q_loss(UNIT.at[3].set(0.5), LABELS), ValueError,
                           r"descriptors must be L2-normalised .* row 3 has norm 0\.707"),
    "pairwise negative weight": (
        lambda: pairwise_likelihood_loss(UNIT, LABELS, quantization_weight=-1.0), ValueError,
        r"quantization_weight must be a finite number >= 0, got -1\.0"),
    "triplet zero margin": (lambda: triplet_margin_loss(UNIT, LABELS, margin=0.0), ValueError,
                            r"margin must be a finite number > 0, got 0\.0"),
    "triplet negative margin": (lambda: triplet_margin_loss(UNIT, LABELS, margin=-0.2), ValueError,
                                r"margin must be a finite number > 0, got -0\.2"),
    "triplet NaN margin": (lambda: triplet_margin_loss(UNIT, LABELS, margin=float("nan")), ValueError,
                           r"margin must be a finite number > 0, got nan"),
    "weighted_mean negative weight": (
        lambda: weighted_mean(jnp.ones(3), jnp.array([1.0, -1.0, 1.0])), ValueError,
        r"weights must be finite and >= 0, got -1\.0 at index \(1,\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_out_of_range_arguments_raise_naming_argument_value_and_range(case):
    call, error, message = BAD_CALLS[case]
    with pytest.raises(error, match=message):
        call()


def test_boundary_values_are_accepted():
    assert csq_loss(LOGITS, CENTERS, quantization_weight=0).shape == (2,)
    np.testing.assert_allclose(soft_quantize(UNIT[:1], CODEBOOKS, temperature=0.0), [[0.5, 0.5]])
    assert quantized_ap(SCORES, RELEVANCE, num_bins=np.int64(2), score_range=(-1, 1)).shape == (1,)
    assert np.isfinite(triplet_margin_loss(UNIT, LABELS, margin=1e-30)).all()
    assert np.isfinite(map_q_loss(UNIT.at[3].set(0.0), LABELS, query_weights=jnp.zeros(4)))
    assert np.isfinite(spq_loss(UNIT, UNIT, UNIT, UNIT, temperature=1e-30))
    # A concrete jax scalar is checked like a Python number.
    with pytest.raises(ValueError, match="margin"):
        triplet_margin_loss(UNIT, LABELS, margin=jnp.float32(-1.0))


@jax.jit
def traced_hyperparameters(weight, temperature, margin):
    """Every loss with its hyperparameter traced (unknown at trace time), compiled once."""
    return {
        "csq": csq_loss(LOGITS, CENTERS, quantization_weight=weight),
        "soft_quantize": soft_quantize(UNIT, CODEBOOKS, temperature=temperature),
        "spq": spq_loss(UNIT, UNIT, UNIT, UNIT, temperature=temperature),
        "pairwise": pairwise_likelihood_loss(UNIT, LABELS, quantization_weight=weight),
        "triplet": triplet_margin_loss(UNIT, LABELS, margin=margin),
        # All outputs equal: with margin 0 a collapsed network would score a perfect 0.
        "collapsed triplet": triplet_margin_loss(jnp.ones((4, 2)), LABELS, margin=margin),
        "weighted_mean": weighted_mean(jnp.ones(4), jnp.array([1.0, 1.0, 1.0, 1.0]) * weight),
    }


def test_traced_out_of_range_hyperparameters_give_nan():
    good = traced_hyperparameters(0.1, 0.5, 0.2)
    assert all(np.all(np.isfinite(value)) for value in good.values())
    bad_values = [(-0.1, -1.0, 0.0), (np.nan, np.nan, np.nan), (np.inf, np.inf, -np.inf)]
    for weight, temperature, margin in bad_values:
        bad = traced_hyperparameters(weight, temperature, margin)
        for name, value in bad.items():
            assert np.all(np.isnan(value)), (name, weight, temperature, margin, value)


def test_traced_array_arguments_out_of_range_give_nan():
    @jax.jit
    def losses(centers, query_weights, weights):
        return (csq_loss(LOGITS, centers), map_q_loss(UNIT, LABELS, query_weights=query_weights),
                weighted_mean(jnp.arange(4.0), weights))

    csq, map_q, mean = losses(CENTERS.at[0, 1].set(2), jnp.array([1.0, -1.0, 1.0, 1.0]),
                              jnp.array([1.0, 0.0, -0.5, 1.0]))
    assert np.isnan(csq[0]) and np.isfinite(csq[1])
    assert np.isnan(map_q) and np.isnan(mean)
    csq, map_q, mean = losses(CENTERS, jnp.ones(4), jnp.ones(4))
    assert np.all(np.isfinite(csq)) and 0.0 <= map_q <= 1.0 and mean == 1.5

