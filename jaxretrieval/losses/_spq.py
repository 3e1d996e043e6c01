"""Self-supervised Product Quantization (SPQ): soft quantization and the cross-quantized contrastive loss."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval import _stable
from jaxretrieval.losses import _reduce

# exp(-x) is exactly 0 in every float dtype beyond x ~ 745: a softmax logit gap this large is as good
# as infinite, and capping there keeps overflow out.
_NEGLIGIBLE_LOGIT_GAP = 1e4


def soft_quantize(features: jax.Array, codebooks: jax.Array, *, temperature: float = 5.0) -> jax.Array:
    r"""Soft product quantization: each sub-vector becomes a softmax-weighted mix of its codewords.

    ``features`` are split into ``M`` sub-vectors :math:`x_m` of length ``L``; with codewords
    :math:`c_{mk}`:

    .. math::
        p_{mk} = \operatorname{softmax}_k\!\big(-\tau \lVert x_m - c_{mk} \rVert^2\big), \qquad
        z_m = \sum_k p_{mk} c_{mk}.

    :math:`\tau` (``temperature``) multiplies the squared distance, as in the official code (the
    paper's 0.2 is the same value written as a divisor); :math:`\tau = 0` averages the codewords.

    The softmax only sees differences of squared distances, so it is computed from
    :math:`2 x_m \cdot c_{mk} - \lVert c_{mk} \rVert^2` (:math:`\lVert x_m \rVert^2` cancels), after
    dividing each sub-vector and its codebook by one power of two (exact): features far outside the
    codebook (1e20, up to the dtype's limit) give the hard assignment to the nearest codeword, where
    the distances themselves would overflow (inf - inf: NaN). Every output is a convex combination of
    its book's codewords. A row with NaN or +-inf features gives a NaN row, non-finite codebooks NaN
    everywhere (eagerly: ValueError).

    Args:
        features: ``[batch, M * L]`` floating descriptors.
        codebooks: ``[M, K, L]`` floating codewords (the official code stores ``[K, M * L]``: reshape
            it to ``[K, M, L]`` and transpose to ``[M, K, L]``).
        temperature: :math:`\tau \ge 0`, finite. A traced value outside the range gives NaN.

    Returns:
        ``[batch, M * L]`` soft-quantized features.

    Raises:
        ValueError: bad shapes, a ``temperature`` outside its range, or (eagerly) NaN/Inf features or
            codebooks.

    Example:
        >>> import jax.numpy as jnp
        >>> codebooks = jnp.array([[[0.0, 0.0], [1.0, 1.0]]])  # M=1 book, K=2 words, L=2
        >>> print(soft_quantize(jnp.array([[0.9, 1.0]]), codebooks, temperature=5.0).round(4))
        [[1. 1.]]

    References:
        Jang and Cho, "Self-supervised Product Quantization for Deep Unsupervised Image Retrieval",
        ICCV 2021.
    """
    temperature_ok = _reduce.check_number(temperature, "temperature", minimum=0.0)
    features = _reduce.check_floating(features, "features")
    codebooks = _reduce.check_floating(codebooks, "codebooks")
    _reduce.check_rank(features, 2, "features", "[batch, M * L]")
    _reduce.check_rank(codebooks, 3, "codebooks", "[M, K, L]")
    num_books, _, word_dim = codebooks.shape
    if features.shape[1] != num_books * word_dim:
        raise ValueError(
            f"features have {features.shape[1]} dims but codebooks {codebooks.shape} expect M * L = "
            f"{num_books * word_dim}")
    _reduce.check_finite(features, "features")
    _reduce.check_finite(codebooks, "codebooks")
    return _reduce.nan_unless(temperature_ok, _soft_quantize(features, codebooks, temperature))


@jax.jit
def _soft_quantize(features, codebooks, temperature):
    quantized = _soft_quantize_mix(features, codebooks, temperature)
    rows_ok = jnp.all(jnp.isfinite(features), axis=1, keepdims=True) & jnp.all(jnp.isfinite(codebooks))
    return _reduce.nan_unless(rows_ok, quantized)


# The gradient has its own rule: autodiff would form cotangent . codeword (1e38 * 1e38 = inf for
# codebooks near float32's limit) and then inf - inf in the softmax's backward pass. Below, every
# sum runs in scaled units (bounded) and the scale factors come last, where they can only overflow
# to +-inf (the true gradient exceeds the dtype), never meet a zero.


@jax.custom_vjp
def _soft_quantize_mix(features, codebooks, temperature):
    return _soft_quantize_forward(features, codebooks, temperature)[0]


def _soft_quantize_forward(features, codebooks, temperature):
    num_books, _, word_dim = codebooks.shape
    sub_vectors = features.reshape(features.shape[0], num_books, 1, word_dim)
    # One power of two per (example, book), above both the sub-vector and the book's codewords.
    magnitude = jnp.maximum(jnp.max(jnp.abs(sub_vectors), axis=(2, 3)),
                            jnp.max(jnp.abs(codebooks), axis=(1, 2))[None, :])
    scale = _stable.scale_above_one(magnitude)[:, :, None, None]
    scaled_sub_vectors, scaled_codebooks = sub_vectors / scale, codebooks[None] / scale
    # 2 x . c - ||c||^2 (minus the squared distance up to a per-(example, book) constant), / scale^2.
    closeness = jnp.sum(scaled_codebooks * (2.0 * scaled_sub_vectors - scaled_codebooks), axis=-1)
    gap = jnp.max(closeness, axis=-1, keepdims=True) - closeness
    assignment = jax.nn.softmax(-_capped_product(temperature, gap, scale[..., 0]), axis=-1)
    quantized = jnp.einsum("bmk,mkl->bml", assignment, codebooks).reshape(features.shape)
    return quantized, (assignment, scaled_sub_vectors, scaled_codebooks, gap, scale[..., 0], temperature)


def _soft_quantize_backward(residuals, cotangent):
    # Logits l_k = tau (2 x . c_k - ||c_k||^2); with t_k = g . c_k / s and a_k = p_k (t_k - sum_j
    # p_j t_j), all bounded, dL/dl = s a, and (x, c in units of s):
    #   dL/dx = 2 tau s^2 sum_k a_k c_k,   dL/dc_k = p_k g + 2 tau s^2 a_k (x - c_k),
    #   dL/dtau = -s^3 sum_k a_k gap_k (gap in units of s^2; sum_k a_k = 0: the shift is irrelevant).
    assignment, sub_vectors, codebooks, gap, scale, temperature = residuals
    batch_size, num_books, num_words, word_dim = codebooks.shape
    cotangent = cotangent.reshape(batch_size, num_books, 1, word_dim)
    projections = jnp.sum(cotangent * codebooks, axis=-1)
    logit_cotangent = assignment * (projections - jnp.sum(assignment * projections, axis=-1, keepdims=True))
    feature_cotangent = _times_factors(jnp.einsum("bmk,bmkl->bml", logit_cotangent, codebooks),
                                       2.0 * temperature, scale, scale)
    # Sums over the batch run relative to the largest scale among the examples that contribute at
    # all (a hard assignment contributes exactly 0): relative scales, powers of two, are at most 1.
    contributes = jnp.any(logit_cotangent != 0, axis=-1, keepdims=True)
    book_scale = jnp.max(jnp.where(contributes, scale, 1.0), axis=0, initial=1.0)
    # Sums over the (possibly sharded) batch axis as reductions, not contractions: with explicit
    # sharding a contraction over a sharded axis would need an output sharding.
    weighted_offsets = (_relative(scale, book_scale, 2, contributes) * logit_cotangent)[..., None] * (
        sub_vectors - codebooks)
    codeword_cotangent = _times_factors(jnp.sum(weighted_offsets, axis=0), 2.0 * temperature,
                                        book_scale[:, None], book_scale[:, None])
    codeword_cotangent = codeword_cotangent + jnp.sum(assignment[..., None] * cotangent, axis=0)
    batch_scale = jnp.max(book_scale, initial=1.0)
    temperature_cotangent = -_times_factors(
        jnp.sum(_relative(scale, batch_scale, 3, contributes)
                * jnp.sum(logit_cotangent * gap, axis=-1, keepdims=True)),
        batch_scale, batch_scale, batch_scale)
    return (feature_cotangent.reshape(batch_size, num_books * word_dim), codeword_cotangent,
            temperature_cotangent.astype(jnp.result_type(temperature)))


def _relative(scale, reference, power, contributes):
    """``(scale / reference) ** power`` (at most 1) where an example contributes, else 0 (no inf * 0)."""
    return jnp.where(contributes, (scale / reference) ** power, 0.0)


def _times_factors(value, *factors):
    """``value * factors...`` for finite ``value`` and finite factors >= 0: +-inf on overflow, never NaN.

    Zero where ``value`` or a factor is zero (so that no zero meets an overflowed infinity).
    """
    nonzero = value != 0
    for factor in factors:
        value = value * factor
        nonzero = nonzero & (factor != 0)
    return jnp.where(nonzero, value, 0.0)


_soft_quantize_mix.defvjp(_soft_quantize_forward, _soft_quantize_backward)


def _capped_product(temperature, gap, scale):
    """``min(temperature * scale^2 * gap, cap)`` for ``gap >= 0``, ``scale >= 1``: never inf, never NaN.

    Each factor after the first cap is >= 1, so capping early changes nothing (the product only
    grows).
    """
    capped = jnp.minimum(temperature * gap, _NEGLIGIBLE_LOGIT_GAP)
    capped = jnp.minimum(scale * capped, _NEGLIGIBLE_LOGIT_GAP)
    return jnp.minimum(scale * capped, _NEGLIGIBLE_LOGIT_GAP)


def _nt_xent_per_row(first: jax.Array, second: jax.Array, temperature) -> jax.Array:
    """NT-Xent of every row of ``[first; second]`` (``[2 * batch]``): row i's positive is its pair."""
    batch_size = first.shape[0]
    rows = _stable.unit_rows(jnp.concatenate([first, second], axis=0))
    similarities = jnp.einsum("id,jd->ij", rows, _reduce.replicated(rows))
    row_ids = jnp.arange(2 * batch_size)
    positive_ids = (row_ids + batch_size) % (2 * batch_size)
    is_positive = row_ids[None, :] == positive_ids[:, None]
    positive_similarity = jnp.sum(jnp.where(is_positive, similarities, 0.0), axis=1, keepdims=True)
    # -log(e^{s_pos/T} / sum_k e^{s_k/T}) = logsumexp_k((s_k - s_pos) / T): the difference is taken
    # before the division, so a tiny T gives +inf or -inf terms but never inf - inf.
    logits = (similarities - positive_similarity) / temperature
    # The self-similarity is not a negative: drop it from the softmax (all 2B - 2 others remain).
    is_self = row_ids[:, None] == row_ids[None, :]
    return jax.nn.logsumexp(jnp.where(is_self, -jnp.inf, logits), axis=1)


def spq_loss(
    features_a: jax.Array,
    features_b: jax.Array,
    quantized_a: jax.Array,
    quantized_b: jax.Array,
    *,
    temperature: float = 0.5,
) -> jax.Array:
    r"""SPQ's cross-quantized contrastive loss (scalar): NT-Xent([x_a; z_b]) + NT-Xent([x_b; z_a]).

    For rows :math:`r` of :math:`[x_a; z_b]` (``2B`` rows), with cosine similarity
    :math:`s_{ij}` and the positive :math:`j(i) = i \pm B`:

    .. math::
        \text{NT-Xent} = \frac{1}{2B} \sum_i -\log
            \frac{e^{s_{i j(i)}/T}}{\sum_{k \ne i} e^{s_{ik}/T}}
            = \frac{1}{2B} \sum_i \log \sum_{k \ne i} e^{(s_{ik} - s_{i j(i)})/T},

    every other of the ``2B - 2`` rows being a negative. The two NT-Xent means are summed, not
    averaged, as in the official code. The loss lies in
    :math:`[0, 2 (\log(2B - 1) + 2/T)]`; with ``B = 1`` there is no negative and it is 0.

    Rows are normalised without overflow or underflow (rows at 1e30 or 1e-30 have their exact
    cosines); a zero row has no direction: its similarity to every row is 0, with finite gradients.
    Any NaN or +-inf input gives NaN (eagerly: ValueError), with NaN gradients.

    Args:
        features_a, features_b: ``[batch, dim]`` descriptors of the two augmented views.
        quantized_a, quantized_b: ``[batch, dim]`` their soft-quantized versions
            (:func:`soft_quantize`).
        temperature: :math:`T > 0`, finite, at least the smallest normal float32 (1.2e-38; a
            subnormal divisor is flushed to zero on CPUs). A traced value outside the range gives NaN.

    Returns:
        Scalar loss.

    Raises:
        ValueError: shapes differ, a ``temperature`` outside its range, or (eagerly) NaN/Inf inputs.

    Example:
        >>> import jax.numpy as jnp
        >>> features_a = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> features_b = jnp.array([[0.9, 0.1], [0.2, 0.8]])
        >>> print(round(float(spq_loss(features_a, features_b, features_a, features_b)), 4))
        0.6877

    References:
        Jang and Cho, "Self-supervised Product Quantization for Deep Unsupervised Image Retrieval",
        ICCV 2021. Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020.
    """
    temperature_ok = _reduce.check_number(temperature, "temperature",
                                          minimum=float(np.finfo(np.float32).tiny))
    named = [("features_a", features_a), ("features_b", features_b), ("quantized_a", quantized_a),
             ("quantized_b", quantized_b)]
    named = [(name, _reduce.check_floating(array, name)) for name, array in named]
    _reduce.check_rank(named[0][1], 2, "features_a", "[batch, dim]")
    _reduce.check_same_shape(named)
    for name, array in named:
        _reduce.check_finite(array, name)
    loss = _spq_loss(*(array for _, array in named), temperature)
    return _reduce.nan_unless(temperature_ok, loss)


@jax.jit
def _spq_loss(features_a, features_b, quantized_a, quantized_b, temperature):
    inputs = [features_a, features_b, quantized_a, quantized_b]
    loss = (jnp.mean(_nt_xent_per_row(features_a, quantized_b, temperature))
            + jnp.mean(_nt_xent_per_row(features_b, quantized_a, temperature)))
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(array)) for array in inputs]))
    return _reduce.nan_unless(finite, loss, inputs)
