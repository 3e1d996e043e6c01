"""Central Similarity Quantization (CSQ): pull each hash code towards its class's hash center."""
from __future__ import annotations

import functools

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
    logits :math:`2u`, as :math:`\operatorname{softplus}(2u) - 2ut = \operatorname{softplus}(-2cu)`:

    .. math::
        \ell_i = \frac{1}{K} \sum_k \operatorname{softplus}(-2 c_{ik} u_{ik})
                 + \lambda \frac{1}{K} \sum_k Q(h_{ik}),

    with :math:`Q(h) = (|h| - 1)^2` (``"squared"``, the official code) or
    :math:`Q(h) = \log\cosh(|h| - 1)` (``"log_cosh"``, the paper). The batch mean of ``\ell`` equals
    the official total (BCE averaged over batch and bits plus :math:`\lambda` times the mean
    quantization term), and so does its gradient.

    Every finite logit gives a finite gradient and a loss that is right or +inf, never NaN: a
    confidently wrong bit with :math:`|u| > 1.7 \cdot 10^{38}` in float32 (its own loss :math:`2|u|`
    exceeds the dtype) makes its example's loss +inf.
    Bad input never reads as a good loss: an example with a NaN or +-inf logit, or a center other
    than -1 or +1, in an unmasked bit gets NaN under ``jax.jit`` (eagerly: ValueError). Masked bits
    reach neither the value nor the gradient, whatever they hold.

    Args:
        logits: ``[batch, num_bits]`` floating pre-tanh outputs of the hash layer.
        centers: ``[batch, num_bits]`` per-example target centers in {-1, +1} (any numeric dtype).
        quantization_weight: :math:`\lambda \ge 0`, finite (0.05 in the official README runs, 1e-4
            in DeepHash). A traced value outside the range gives NaN.
        quantization: ``"squared"`` or ``"log_cosh"``.
        where: optional bool mask ``[batch, num_bits]``, or ``[batch, 1]`` to mask whole examples;
            each example averages over its unmasked bits, and is 0 when all are masked.

    Returns:
        ``[batch]`` per-example losses, ``>= 0``.

    Raises:
        ValueError: bad shapes, an unknown ``quantization``, a ``quantization_weight`` outside its
            range, or (eagerly) NaN/Inf logits or centers other than +-1 in unmasked bits.

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
    weight_ok = _reduce.check_number(quantization_weight, "quantization_weight", minimum=0.0)
    logits = _reduce.check_floating(logits, "logits")
    _reduce.check_rank(logits, 2, "logits", "[batch, num_bits]")
    centers = jnp.asarray(centers)
    _reduce.check_same_shape([("logits", logits), ("centers", centers)])
    if where is not None:
        batch_size, num_bits = logits.shape
        if np.ndim(where) != 2 or np.shape(where)[0] != batch_size or np.shape(where)[1] not in (1, num_bits):
            raise ValueError(f"where must have shape [batch, num_bits] = {list(logits.shape)} or "
                             f"[batch, 1] to mask examples, got shape {np.shape(where)}")
        where = jnp.broadcast_to(jnp.asarray(where, dtype=bool), logits.shape)
    _reduce.check_finite(logits, "logits", where)
    _check_centers(centers, where)
    loss = _csq_per_example(logits, centers, where, quantization_weight, quantization=quantization)
    return _reduce.nan_unless(weight_ok, loss)


@functools.partial(jax.jit, static_argnames=("quantization",))
def _csq_per_example(logits, centers, where, quantization_weight, *, quantization):
    if where is not None:
        # Select before computing: a masked bit's NaN must not reach the gradient (0 * NaN = NaN).
        logits = jnp.where(where, logits, 0.0)
        centers = jnp.where(where, centers, 1)
    signs = centers.astype(logits.dtype)
    # softplus(2u) - 2ut would be inf - inf (NaN) at |u| ~ 1e38; softplus(-2cu) is +inf or 0 there.
    central = jax.nn.softplus(-2.0 * signs * logits)
    magnitude_gap = jnp.abs(jnp.tanh(logits)) - 1.0
    if quantization == "squared":
        quantization_term = jnp.square(magnitude_gap)
    else:
        quantization_term = _log_cosh(magnitude_gap)
    per_bit = central + quantization_weight * quantization_term
    # A -inf logit with center -1 costs 0 above: bad input must read as NaN, not as a perfect bit.
    per_bit = _reduce.nan_unless(jnp.isfinite(logits) & (jnp.abs(signs) == 1), per_bit)
    return _reduce.masked_mean(per_bit, where, axis=1)


def _check_centers(centers, where) -> None:
    """Eagerly, raises ValueError unless every unmasked center is -1 or +1."""
    if not _reduce.is_concrete(centers, where):
        return
    values = np.asarray(centers)
    index = _reduce.first_violation((values != 1) & (values != -1), where)
    if index is not None:
        raise ValueError(f"centers must hold only -1 and +1, got {values[index]} at index {index}")
