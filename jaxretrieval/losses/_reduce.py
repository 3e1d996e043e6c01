"""Reductions that never return NaN, and the argument checks every loss runs at its boundary.

The checks run at trace time on shapes and dtypes; the NaN check runs only on concrete (eager)
arrays, because under ``jax.jit`` values are unknown and a loss must not crash there.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def masked_mean(values: jax.Array, where: jax.Array | None = None, *, axis=None) -> jax.Array:
    r"""Mean of ``values`` over the entries where ``where`` is true; 0 where nothing is selected.

    .. math::
        \operatorname{mean}(v; m) = \frac{\sum_i m_i v_i}{\max(1, \sum_i m_i)}

    Masked entries are replaced (not multiplied) by zero, so a NaN or Inf in a masked entry cannot
    leak into the result or its gradient.

    Args:
        values: array of any shape.
        where: boolean mask broadcastable to ``values.shape``; ``None`` selects everything.
        axis: axis or axes to reduce (``None`` = all).

    Returns:
        The masked mean, with ``axis`` removed; 0 for an all-masked reduction.

    Example:
        >>> import jax.numpy as jnp
        >>> float(masked_mean(jnp.array([1.0, 2.0, 6.0]), jnp.array([True, False, True])))
        3.5
        >>> float(masked_mean(jnp.array([1.0, 2.0]), jnp.array([False, False])))
        0.0
    """
    values = jnp.asarray(values)
    if where is None:
        return jnp.mean(values, axis=axis)
    where = jnp.broadcast_to(jnp.asarray(where, dtype=bool), values.shape)
    total = jnp.sum(jnp.where(where, values, 0), axis=axis)
    count = jnp.sum(where, axis=axis, dtype=values.dtype)
    return total / jnp.maximum(count, 1)


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    r"""Weighted mean :math:`\sum_i w_i v_i / \sum_i w_i` over all entries; 0 when all weights are 0.

    Entries with zero weight are replaced by zero first, so NaN there cannot leak out.

    Example:
        >>> import jax.numpy as jnp
        >>> float(weighted_mean(jnp.array([1.0, 3.0]), jnp.array([1.0, 3.0])))
        2.5
    """
    values = jnp.asarray(values)
    weights = jnp.broadcast_to(jnp.asarray(weights, dtype=values.dtype), values.shape)
    total = jnp.sum(jnp.where(weights != 0, values * weights, 0))
    weight_sum = jnp.sum(weights)
    return jnp.where(weight_sum != 0, total / jnp.where(weight_sum != 0, weight_sum, 1), 0)


def check_floating(array, name: str) -> jax.Array:
    """Returns ``array`` as a jax array; raises TypeError naming ``name`` unless it is floating point."""
    array = jnp.asarray(array)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {array.dtype}")
    return array


def check_rank(array, ndim: int, name: str, axes: str) -> None:
    """Raises ValueError naming ``name`` and the expected layout ``axes`` unless ``array.ndim == ndim``."""
    if np.ndim(array) != ndim:
        raise ValueError(f"{name} must have shape {axes} ({ndim} dims), got shape {np.shape(array)}")


def check_finite(array, name: str) -> None:
    """Raises ValueError naming ``name`` if a concrete ``array`` holds NaN or Inf.

    Skipped for tracers (values unknown under jit) and for arrays spread over several processes.
    """
    if isinstance(array, jax.core.Tracer):
        return
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        return
    if not np.all(np.isfinite(np.asarray(array))):
        raise ValueError(f"{name} contains NaN or Inf values (shape {np.shape(array)})")


def check_same_shape(arrays: Sequence[tuple[str, jax.Array]]) -> None:
    """Raises ValueError listing every (name, shape) pair unless all shapes are equal."""
    shapes = [np.shape(array) for _, array in arrays]
    if any(shape != shapes[0] for shape in shapes):
        listing = ", ".join(f"{name} {shape}" for (name, _), shape in zip(arrays, shapes))
        raise ValueError(f"shapes must match: {listing}")


def relevance_from_labels(labels, num_rows: int, name: str = "labels") -> jax.Array:
    """Validates ``labels`` and returns the ``(num_rows, num_rows)`` "shares a label" mask.

    ``labels`` are integer class ids ``[batch]`` or a multi-hot matrix ``[batch, num_classes]``
    (any dtype; nonzero = has the label). Rows are the local (possibly sharded) examples, columns the
    whole batch, gathered onto every device.
    """
    labels = jnp.asarray(labels)
    if labels.ndim not in (1, 2) or labels.shape[0] != num_rows:
        raise ValueError(
            f"{name} must be class ids [batch] or multi-hot [batch, num_classes] with batch = "
            f"{num_rows}, got shape {labels.shape}")
    if labels.ndim == 1:
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise TypeError(f"{name} of shape [batch] must be integer class ids, got dtype {labels.dtype}")
        return labels[:, None] == replicated(labels)[None, :]
    has_label = (labels != 0).astype(jnp.float32)
    return jnp.einsum("ic,jc->ij", has_label, replicated(has_label)) > 0


def distinct_pairs(batch_size: int, where: jax.Array | None) -> jax.Array:
    """``[batch, batch]`` mask of pairs (i, j), i != j, of examples that ``where`` keeps.

    ``where`` is ``None`` or a bool ``[batch]`` mask (masked examples take part in no pair); rows
    follow the batch's sharding, columns cover the whole batch.
    """
    rows = jnp.arange(batch_size)
    pairs = rows[:, None] != rows[None, :]
    if where is None:
        return pairs
    where = jnp.asarray(where)
    if where.shape != (batch_size,) or where.dtype != bool:
        raise ValueError(
            f"where must be a bool mask of shape ({batch_size},), got {where.dtype}{list(where.shape)}")
    return pairs & where[:, None] & replicated(where)[None, :]


def replicated(array: jax.Array) -> jax.Array:
    """``array`` gathered onto every device when it is sharded over explicit mesh axes, else as is.

    Batch-coupled losses compare every row with every other one; with explicit sharding the rows stay
    sharded and the columns need the whole batch (XLA inserts the all-gather).
    """
    sharding = getattr(jax.typeof(array), "sharding", None)
    spec = getattr(sharding, "spec", None)
    if isinstance(sharding, jax.sharding.NamedSharding) and spec and any(a is not None for a in spec):
        return jax.sharding.reshard(
            array, jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec()))
    return array
