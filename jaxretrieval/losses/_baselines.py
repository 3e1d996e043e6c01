"""Baseline losses for comparisons: the pairwise likelihood of DPSH/HashNet and batch-hard triplets."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxretrieval import _stable
from jaxretrieval.losses import _reduce

_DISTANCES = ("squared_l2", "cosine")
_MINING = ("batch_hard", "batch_all")


def _batch_masks(values, labels, where):
    """``(values, shares_label, valid_pair, where, finite)`` inside a batch-coupled loss.

    Rows that ``where`` masks out are replaced by zeros (selected before any arithmetic, so that
    their NaN reaches neither value nor gradient); ``where`` is all true if ``None``; ``finite`` says
    whether every unmasked row is finite.
    """
    batch_size = values.shape[0]
    shares_label = _reduce.relevance_from_labels(labels, batch_size)
    valid_pair = _reduce.distinct_pairs(batch_size, where)
    if where is None:
        where = jnp.ones((batch_size,), bool)
    else:
        values = jnp.where(where[:, None], values, 0.0)
    return values, shares_label, valid_pair, where, jnp.all(jnp.isfinite(values))


def _half_inner_products(outputs):
    return 0.5 * jnp.einsum("id,jd->ij", outputs, _reduce.replicated(outputs))


def pairwise_likelihood_loss(
    codes_or_logits: jax.Array,
    labels: jax.Array,
    *,
    quantization_weight: float = 0.0,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Pairwise likelihood loss of DPSH / HashNet, per example.

    With real-valued outputs :math:`u_i` and :math:`s_{ij} = 1` when examples share a label:

    .. math::
        \theta_{ij} = \tfrac12 u_i^\top u_j, \qquad
        \ell_i = \operatorname{mean}_{j \ne i} \big[\log(1 + e^{\theta_{ij}}) - s_{ij}\theta_{ij}\big]
                 + \eta \operatorname{mean}_k (u_{ik} - \operatorname{sign} u_{ik})^2,

    the negative log-likelihood of :math:`p(s_{ij} | u) = \sigma(\theta_{ij})^{s_{ij}}
    (1 - \sigma(\theta_{ij}))^{1 - s_{ij}}`, computed stably as
    :math:`\operatorname{softplus}(\pm\theta_{ij})`; the self-pair is excluded. :math:`\eta` is
    ``quantization_weight`` (DPSH's quantization term).

    Large finite outputs give the right value, or +inf where it exceeds the dtype, never NaN: the
    inner products are formed after an exact power-of-two rescaling (outputs at 1e30 have
    :math:`\theta` of 1e60, which would overflow float32 and meet another infinity). If any unmasked
    row holds NaN or +-inf, every loss is NaN (eagerly: ValueError), with NaN gradients.

    Args:
        codes_or_logits: ``[batch, num_bits]`` floating network outputs (before or after tanh).
        labels: integer class ids ``[batch]`` or multi-hot ``[batch, num_classes]``.
        quantization_weight: :math:`\eta \ge 0`, finite. A traced value outside the range gives NaN.
        where: optional ``[batch]`` bool; masked examples take part in no pair and get loss 0, and
            their outputs reach neither the value nor the gradient, whatever they hold.

    Returns:
        ``[batch]`` per-example losses, ``>= 0`` (0 for masked examples or those with no valid partner).

    Raises:
        ValueError: bad shapes, a ``quantization_weight`` outside its range, or (eagerly) NaN/Inf in
            unmasked outputs.

    Example:
        >>> import jax.numpy as jnp
        >>> outputs = jnp.array([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
        >>> print(pairwise_likelihood_loss(outputs, jnp.array([0, 0, 1])).round(4))
        [0.3133 0.3133 0.3133]

    References:
        Li et al., "Feature Learning based Deep Supervised Hashing with Pairwise Labels", IJCAI
        2016. Cao et al., "HashNet: Deep Learning to Hash by Continuation", ICCV 2017.
    """
    weight_ok = _reduce.check_number(quantization_weight, "quantization_weight", minimum=0.0)
    outputs = _reduce.check_batch(codes_or_logits, labels, where, "codes_or_logits")
    # A weight known to be 0 skips the term (a traced one selects it away: 0 * inf is NaN).
    with_quantization = not (_reduce.is_concrete(quantization_weight) and quantization_weight == 0)
    loss = _pairwise_likelihood(outputs, labels, where, quantization_weight,
                                with_quantization=with_quantization)
    return _reduce.nan_unless(weight_ok, loss)


@functools.partial(jax.jit, static_argnames=("with_quantization",))
def _pairwise_likelihood(outputs, labels, where, quantization_weight, *, with_quantization):
    outputs, shares_label, valid_pair, where, finite = _batch_masks(outputs, labels, where)
    theta = _stable.scaled_quadratic(_half_inner_products, outputs)
    # softplus(theta) - theta = softplus(-theta): no inf - inf where theta overflows.
    pair_loss = jax.nn.softplus(jnp.where(shares_label, -theta, theta))
    loss = _reduce.masked_mean(pair_loss, valid_pair, axis=1)
    if with_quantization:
        active = quantization_weight > 0
        gap = jnp.where(active, outputs - jnp.sign(outputs), 0.0)
        quantization = _reduce.masked_mean(jnp.square(gap), axis=1)
        loss = loss + jnp.where(where & active, quantization_weight * quantization, 0.0)
    return _reduce.nan_unless(finite, loss, [outputs])


def _squared_l2_distances(embeddings):
    columns = _reduce.replicated(embeddings)
    inner = jnp.einsum("id,jd->ij", embeddings, columns)
    squared_norms = jnp.sum(jnp.square(embeddings), axis=1)
    column_squared_norms = jnp.sum(jnp.square(columns), axis=1)
    # Clipped at 0: rounding can make the expanded form slightly negative for near-equal rows.
    return jnp.maximum(squared_norms[:, None] + column_squared_norms[None, :] - 2.0 * inner, 0.0)


def _cosine_distances(embeddings):
    rows = _stable.unit_rows(embeddings)
    return 1.0 - jnp.einsum("id,jd->ij", rows, _reduce.replicated(rows))


def _hardest_differences(distances, is_positive, is_negative, mining):
    """``d(a, p) - d(a, n)``: per anchor for the hardest pair (batch-hard), per triplet (batch-all).

    Only selections and differences of the distances: homogeneous of their degree, which lets the
    squared-L2 version go through :func:`_stable.scaled_quadratic`.
    """
    if mining == "batch_all":
        return distances[:, :, None] - distances[:, None, :]
    hardest_positive = jnp.max(jnp.where(is_positive, distances, -jnp.inf), axis=1, initial=-jnp.inf)
    hardest_negative = jnp.min(jnp.where(is_negative, distances, jnp.inf), axis=1, initial=jnp.inf)
    has_triplet = jnp.any(is_positive, axis=1) & jnp.any(is_negative, axis=1)
    # Replace the infinities before subtracting so that no inf - inf (NaN) reaches the gradient.
    return jnp.where(has_triplet, hardest_positive, 0.0) - jnp.where(has_triplet, hardest_negative, 0.0)


def _squared_l2_differences(embeddings, is_positive, is_negative, *, mining):
    return _hardest_differences(_squared_l2_distances(embeddings), is_positive, is_negative, mining)


def triplet_margin_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    margin: float = 0.2,
    mining: str = "batch_hard",
    distance: str = "squared_l2",
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Triplet margin loss with batch-hard or batch-all mining, per anchor (Hermans et al.).

    ``"batch_hard"``: for each anchor, the hardest positive (farthest example sharing a label, itself
    excluded) and the hardest negative (closest example sharing no label):

    .. math::
        \ell_a = \max\big(0,\; \max_{p} d(a, p) - \min_{n} d(a, n) + m\big).

    ``"batch_all"``: the mean over every positive :math:`p` and negative :math:`n` of the anchor,

    .. math::
        \ell_a = \operatorname{mean}_{p, n} \max\big(0,\; d(a, p) - d(a, n) + m\big),

    which costs a ``[batch, batch, batch]`` array (per device: its anchors only). Batch-hard mining
    can drive a network trained from scratch into a collapse (all outputs equal: every loss is
    :math:`m` and every gradient 0), as it did in our CIFAR-10 study (docs/results.md); the averaged
    batch-all gradient avoided it there. Distances :math:`d` (ascending = more similar): ``"squared_l2"``
    :math:`\lVert x - y \rVert^2` or ``"cosine"`` :math:`1 - \cos(x, y)`. Anchors with no positive or
    no negative in the batch get 0 (never NaN).

    A zero embedding has no direction: its cosine distance to everything is 1, with finite
    gradients. Squared distances are formed after an exact power-of-two rescaling, so large finite
    embeddings give the right loss, or +inf where it exceeds the dtype (at 1e30 the distances
    themselves overflow float32), never NaN. If any unmasked row holds NaN or +-inf, every loss is
    NaN (eagerly: ValueError), with NaN gradients.

    Args:
        embeddings: ``[batch, dim]`` floating.
        labels: integer class ids ``[batch]`` or multi-hot ``[batch, num_classes]``.
        margin: :math:`m > 0`, finite (with :math:`m = 0` a collapsed network would score a perfect
            0). A traced value outside the range gives NaN.
        mining: ``"batch_hard"`` or ``"batch_all"``.
        distance: ``"squared_l2"`` or ``"cosine"``.
        where: optional ``[batch]`` bool; masked examples are neither anchors nor candidates, get
            loss 0, and reach neither the value nor the gradient, whatever they hold.

    Returns:
        ``[batch]`` per-anchor losses, ``>= 0``.

    Raises:
        ValueError: bad shapes, an unknown ``mining`` or ``distance``, a ``margin`` outside its range,
            or (eagerly) NaN/Inf in unmasked embeddings.

    Example:
        >>> import jax.numpy as jnp
        >>> embeddings = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5], [5.0, 5.0]])
        >>> print(triplet_margin_loss(embeddings, jnp.array([0, 0, 1, 2]), margin=0.2).round(4))
        [0.95 0.   0.   0.  ]

    References:
        Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for Person Re-Identification",
        arXiv:1703.07737, 2017.
    """
    if mining not in _MINING:
        raise ValueError(f"mining must be one of {_MINING}, got {mining!r}")
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
    margin_ok = _reduce.check_number(margin, "margin", minimum=0.0, inclusive=False)
    embeddings = _reduce.check_batch(embeddings, labels, where, "embeddings")
    loss = _triplet_margin(embeddings, labels, where, margin, mining=mining, distance=distance)
    return _reduce.nan_unless(margin_ok, loss)


@functools.partial(jax.jit, static_argnames=("mining", "distance"))
def _triplet_margin(embeddings, labels, where, margin, *, mining, distance):
    embeddings, shares_label, valid_pair, _, finite = _batch_masks(embeddings, labels, where)
    is_positive = valid_pair & shares_label
    is_negative = valid_pair & ~shares_label
    if distance == "cosine":
        differences = _hardest_differences(_cosine_distances(embeddings), is_positive, is_negative, mining)
    else:
        differences = _stable.scaled_quadratic(
            functools.partial(_squared_l2_differences, mining=mining), embeddings, is_positive, is_negative)
    violations = jax.nn.relu(differences + margin)
    if mining == "batch_all":
        valid_triplet = is_positive[:, :, None] & is_negative[:, None, :]
        loss = _reduce.masked_mean(violations, valid_triplet, axis=(1, 2))
    else:
        has_triplet = jnp.any(is_positive, axis=1) & jnp.any(is_negative, axis=1)
        loss = jnp.where(has_triplet, violations, 0.0)
    return _reduce.nan_unless(finite, loss, [embeddings])
