"""Baseline losses for comparisons: the pairwise likelihood of DPSH/HashNet and batch-hard triplets."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxretrieval.losses import _reduce

_DISTANCES = ("squared_l2", "cosine")
_MINING = ("batch_hard", "batch_all")


def _check_batch_inputs(values, labels, where, values_name):
    values = _reduce.check_floating(values, values_name)
    _reduce.check_rank(values, 2, values_name, "[batch, dim]")
    _reduce.check_finite(values, values_name)
    batch_size = values.shape[0]
    shares_label = _reduce.relevance_from_labels(labels, batch_size)
    valid_pair = _reduce.distinct_pairs(batch_size, where)
    if where is None:
        where = jnp.ones((batch_size,), dtype=bool)
    return values, shares_label, valid_pair, where


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
    (1 - \sigma(\theta_{ij}))^{1 - s_{ij}}`, computed stably with softplus; the self-pair is
    excluded. :math:`\eta` is ``quantization_weight`` (DPSH's quantization term).

    Args:
        codes_or_logits: ``[batch, num_bits]`` floating network outputs (before or after tanh).
        labels: integer class ids ``[batch]`` or multi-hot ``[batch, num_classes]``.
        quantization_weight: :math:`\eta \ge 0`.
        where: optional ``[batch]`` bool; masked examples take part in no pair and get loss 0.

    Returns:
        ``[batch]`` per-example losses (0 for masked examples or those with no valid partner).

    Example:
        >>> import jax.numpy as jnp
        >>> outputs = jnp.array([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
        >>> print(pairwise_likelihood_loss(outputs, jnp.array([0, 0, 1])).round(4))
        [0.3133 0.3133 0.3133]

    References:
        Li et al., "Feature Learning based Deep Supervised Hashing with Pairwise Labels", IJCAI
        2016. Cao et al., "HashNet: Deep Learning to Hash by Continuation", ICCV 2017.
    """
    outputs, shares_label, valid_pair, where = _check_batch_inputs(
        codes_or_logits, labels, where, "codes_or_logits")
    theta = 0.5 * jnp.einsum("id,jd->ij", outputs, _reduce.replicated(outputs))
    pair_loss = jax.nn.softplus(theta) - jnp.where(shares_label, theta, 0.0)
    loss = _reduce.masked_mean(pair_loss, valid_pair, axis=1)
    if quantization_weight:
        quantization = jnp.mean(jnp.square(outputs - jnp.sign(outputs)), axis=1)
        loss = loss + quantization_weight * jnp.where(where, quantization, 0.0)
    return loss


def _pairwise_distances(embeddings, distance):
    columns = _reduce.replicated(embeddings)
    inner = jnp.einsum("id,jd->ij", embeddings, columns)
    if distance == "cosine":
        norms = jnp.maximum(jnp.linalg.norm(embeddings, axis=1), 1e-12)
        column_norms = jnp.maximum(jnp.linalg.norm(columns, axis=1), 1e-12)
        return 1.0 - inner / (norms[:, None] * column_norms[None, :])
    squared_norms = jnp.sum(jnp.square(embeddings), axis=1)
    column_squared_norms = jnp.sum(jnp.square(columns), axis=1)
    # Clipped at 0: rounding can make the expanded form slightly negative for near-equal rows.
    return jnp.maximum(squared_norms[:, None] + column_squared_norms[None, :] - 2.0 * inner, 0.0)


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

    Args:
        embeddings: ``[batch, dim]`` floating.
        labels: integer class ids ``[batch]`` or multi-hot ``[batch, num_classes]``.
        margin: :math:`m`.
        mining: ``"batch_hard"`` or ``"batch_all"``.
        distance: ``"squared_l2"`` or ``"cosine"``.
        where: optional ``[batch]`` bool; masked examples are neither anchors nor candidates.

    Returns:
        ``[batch]`` per-anchor losses.

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
    embeddings, shares_label, valid_pair, _ = _check_batch_inputs(
        embeddings, labels, where, "embeddings")
    distances = _pairwise_distances(embeddings, distance)
    is_positive = valid_pair & shares_label
    is_negative = valid_pair & ~shares_label
    if mining == "batch_all":
        valid_triplet = is_positive[:, :, None] & is_negative[:, None, :]
        violations = jax.nn.relu(distances[:, :, None] - distances[:, None, :] + margin)
        totals = jnp.sum(jnp.where(valid_triplet, violations, 0.0), axis=(1, 2))
        counts = jnp.sum(valid_triplet, axis=(1, 2))
        return jnp.where(counts > 0, totals / jnp.maximum(counts, 1), 0.0)
    hardest_positive = jnp.max(jnp.where(is_positive, distances, -jnp.inf), axis=1)
    hardest_negative = jnp.min(jnp.where(is_negative, distances, jnp.inf), axis=1)
    has_triplet = jnp.any(is_positive, axis=1) & jnp.any(is_negative, axis=1)
    # Replace the infinities before subtracting so that no inf - inf (NaN) reaches the gradient.
    violation = (jnp.where(has_triplet, hardest_positive, 0.0)
                 - jnp.where(has_triplet, hardest_negative, 0.0) + margin)
    return jnp.where(has_triplet, jax.nn.relu(violation), 0.0)
