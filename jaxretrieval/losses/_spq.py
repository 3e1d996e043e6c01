"""Self-supervised Product Quantization (SPQ): soft quantization and the cross-quantized contrastive loss."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxretrieval.losses import _reduce


def soft_quantize(features: jax.Array, codebooks: jax.Array, *, temperature: float = 5.0) -> jax.Array:
    r"""Soft product quantization: each sub-vector becomes a softmax-weighted mix of its codewords.

    ``features`` are split into ``M`` sub-vectors :math:`x_m` of length ``L``; with codewords
    :math:`c_{mk}`:

    .. math::
        p_{mk} = \operatorname{softmax}_k\!\big(-\tau \lVert x_m - c_{mk} \rVert^2\big), \qquad
        z_m = \sum_k p_{mk} c_{mk}.

    :math:`\tau` (``temperature``) multiplies the squared distance, as in the official code (the
    paper's 0.2 is the same value written as a divisor).

    Args:
        features: ``[batch, M * L]`` floating descriptors.
        codebooks: ``[M, K, L]`` codewords (the official code stores ``[K, M * L]``: reshape it to
            ``[K, M, L]`` and transpose to ``[M, K, L]``).
        temperature: :math:`\tau > 0`.

    Returns:
        ``[batch, M * L]`` soft-quantized features.

    Example:
        >>> import jax.numpy as jnp
        >>> codebooks = jnp.array([[[0.0, 0.0], [1.0, 1.0]]])  # M=1 book, K=2 words, L=2
        >>> print(soft_quantize(jnp.array([[0.9, 1.0]]), codebooks, temperature=5.0).round(4))
        [[1. 1.]]

    References:
        Jang and Cho, "Self-supervised Product Quantization for Deep Unsupervised Image Retrieval",
        ICCV 2021.
    """
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
    sub_vectors = features.reshape(features.shape[0], num_books, 1, word_dim)
    squared_distances = jnp.sum(jnp.square(sub_vectors - codebooks[None]), axis=-1)
    assignment = jax.nn.softmax(-temperature * squared_distances, axis=-1)
    quantized = jnp.einsum("bmk,mkl->bml", assignment, codebooks)
    return quantized.reshape(features.shape)


def _nt_xent_per_row(first: jax.Array, second: jax.Array, temperature: float) -> jax.Array:
    """NT-Xent of every row of ``[first; second]`` (``[2 * batch]``): row i's positive is its pair."""
    batch_size = first.shape[0]
    rows = jnp.concatenate([first, second], axis=0)
    rows = rows / jnp.maximum(jnp.linalg.norm(rows, axis=1, keepdims=True), 1e-8)
    logits = jnp.einsum("id,jd->ij", rows, _reduce.replicated(rows)) / temperature
    row_ids = jnp.arange(2 * batch_size)
    is_self = row_ids[:, None] == row_ids[None, :]
    # The self-similarity is not a negative: drop it from the softmax (all 2B - 2 others remain).
    log_normaliser = jax.nn.logsumexp(jnp.where(is_self, -jnp.inf, logits), axis=1)
    positive_ids = (row_ids + batch_size) % (2 * batch_size)
    positive_logits = jnp.sum(jnp.where(row_ids[None, :] == positive_ids[:, None], logits, 0.0), axis=1)
    return log_normaliser - positive_logits


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
            \frac{e^{s_{i j(i)}/T}}{\sum_{k \ne i} e^{s_{ik}/T}},

    every other of the ``2B - 2`` rows being a negative. The two NT-Xent means are summed, not
    averaged, as in the official code.

    Args:
        features_a, features_b: ``[batch, dim]`` descriptors of the two augmented views.
        quantized_a, quantized_b: ``[batch, dim]`` their soft-quantized versions
            (:func:`soft_quantize`).
        temperature: :math:`T > 0`.

    Returns:
        Scalar loss.

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
    named = [("features_a", features_a), ("features_b", features_b), ("quantized_a", quantized_a),
             ("quantized_b", quantized_b)]
    named = [(name, _reduce.check_floating(array, name)) for name, array in named]
    _reduce.check_rank(named[0][1], 2, "features_a", "[batch, dim]")
    _reduce.check_same_shape(named)
    for name, array in named:
        _reduce.check_finite(array, name)
    features_a, features_b, quantized_a, quantized_b = (array for _, array in named)
    return (jnp.mean(_nt_xent_per_row(features_a, quantized_b, temperature))
            + jnp.mean(_nt_xent_per_row(features_b, quantized_a, temperature)))
