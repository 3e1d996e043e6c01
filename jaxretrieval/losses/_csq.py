"""Central Similarity Quantization (CSQ): pull each hash code towards its class's hash center."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval.losses import _reduce

_QUANTIZATIONS = ("squared", "log_cosh")


def _log_cosh(x: jax.Array) -> jax.Array:
    # log cosh x = |x| + log(1 + exp(-2|x|)) - log 2, without overflow for large |x|.
    return jnp.abs(x) + jax.nn.softplus(-2.0 * jnp.abs(x)) - jnp.log(2.0)


def csq_loss(
    logits: jax.Array,
    centers: jax.Array,
    *,
    quantization_weight: float = 0.05,
    quantization: str = "squared",
    where: jax.Array | None = None,
) -> jax.Array:
    r"""CSQ loss per example, as the official code computes it (the batch mean is its total).

    With pre-tanh logits :math:`u`, codes :math:`h = \tanh u` and target centers :math:`c \in
    \{-1, +1\}^K`, the central term is the binary cross-entropy between :math:`(h + 1)/2` and
    :math:`t = (c + 1)/2`. Because :math:`(\tanh u + 1)/2 = \sigma(2u)` it is computed stably on the
    logits :math:`2u`:

    .. math::
        \ell_i = \frac{1}{K} \sum_k \big[\operatorname{softplus}(2u_{ik}) - 2u_{ik} t_{ik}\big]
                 + \lambda \frac{1}{K} \sum_k Q(h_{ik}),

    with :math:`Q(h) = (|h| - 1)^2` (``"squared"``, the official code) or
    :math:`Q(h) = \log\cosh(|h| - 1)` (``"log_cosh"``, the paper). The batch mean of ``\ell`` equals
    the official total (BCE averaged over batch and bits plus :math:`\lambda` times the mean
    quantization term), and so does its gradient.

    Args:
        logits: ``[batch, num_bits]`` floating pre-tanh outputs of the hash layer.
        centers: ``[batch, num_bits]`` per-example target centers in {-1, +1} (any numeric dtype).
        quantization_weight: :math:`\lambda` (0.05 in the official README runs, 1e-4 in DeepHash).
        quantization: ``"squared"`` or ``"log_cosh"``.
        where: optional bool mask ``[batch, num_bits]``, or ``[batch, 1]`` to mask whole examples;
            each example averages over its unmasked bits, and is 0 when all are masked.

    Returns:
        ``[batch]`` per-example losses.

    Example:
        >>> import jax.numpy as jnp
        >>> logits = jnp.array([[2.0, -1.0], [0.5, 0.5]])
        >>> centers = jnp.array([[1, -1], [1, -1]])
        >>> print(csq_loss(logits, centers).round(4))
        [0.074 0.8277]

    References:
        Yuan et al., "Central Similarity Quantization for Efficient Image and Video Retrieval",
        CVPR 2020.
    """
    if quantization not in _QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {_QUANTIZATIONS}, got {quantization!r}")
    logits = _reduce.check_floating(logits, "logits")
    _reduce.check_rank(logits, 2, "logits", "[batch, num_bits]")
    centers = jnp.asarray(centers)
    _reduce.check_same_shape([("logits", logits), ("centers", centers)])
    _reduce.check_finite(logits, "logits")
    _reduce.check_finite(centers, "centers")
    if where is not None and np.ndim(where) != 2:
        raise ValueError(f"where must have shape [batch, num_bits] or [batch, 1] to mask examples, "
                         f"got shape {np.shape(where)}")
    targets = (centers.astype(logits.dtype) + 1.0) / 2.0
    central = jax.nn.softplus(2.0 * logits) - 2.0 * logits * targets
    magnitude_gap = jnp.abs(jnp.tanh(logits)) - 1.0
    if quantization == "squared":
        quantization_term = jnp.square(magnitude_gap)
    else:
        quantization_term = _log_cosh(magnitude_gap)
    per_bit = central + quantization_weight * quantization_term
    return _reduce.masked_mean(per_bit, where, axis=1)
