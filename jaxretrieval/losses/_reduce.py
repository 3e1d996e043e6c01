"""Reductions that never return NaN, and the argument checks every loss runs at its boundary.

The checks run at trace time on shapes, dtypes and concrete hyperparameters; checks of values
(NaN, ranges of array arguments) run only on concrete (eager) arrays, because under ``jax.jit``
values are unknown and a loss must not crash there. What cannot be checked under ``jax.jit`` is
turned into a NaN result instead (:func:`nan_unless`), so that a bad input never reads as a good loss.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval import _stable


def masked_mean(values: jax.Array, where: jax.Array | None = None, *, axis=None) -> jax.Array:
    r"""Mean of ``values`` over the entries where ``where`` is true; 0 where nothing is selected.

    .. math::
        \operatorname{mean}(v; m) = \sum_i \frac{m_i v_i}{\max(1, \sum_j m_j)}

    Masked entries are replaced (not multiplied) by zero, so a NaN or Inf in a masked entry cannot
    leak into the result or its gradient. Each entry is divided by the count before the sum, so finite
    values never overflow in between: the result is +-inf only where the mean itself exceeds the
    dtype. A NaN or Inf in a selected entry gives NaN or Inf.

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
        >>> float(masked_mean(jnp.array([3e38, 3e38])))  # the sum would overflow
        3e+38
    """
    values = jnp.asarray(values)
    if where is None:
        count = np.prod([values.shape[a] for a in _axes(axis, values.ndim)], dtype=np.int64)
        return jnp.sum(values / max(int(count), 1), axis=axis)
    where = jnp.broadcast_to(jnp.asarray(where, dtype=bool), values.shape)
    count = jnp.sum(where, axis=axis, keepdims=True, dtype=values.dtype)
    return jnp.sum(jnp.where(where, values / jnp.maximum(count, 1), 0), axis=axis)


def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in (axis if isinstance(axis, Sequence) else (axis,)))


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    r"""Weighted mean :math:`\sum_i w_i v_i / \sum_i w_i` over all entries; 0 when all weights are 0.

    Weights must be finite and non-negative. Concrete (eager) weights outside that range raise
    ValueError; under ``jax.jit``, where they cannot be checked, such weights give NaN (never a
    value that reads as good). Entries with zero weight are replaced by zero first, so NaN there
    cannot leak into the result or its gradient. The weights are normalised before the sum, so
    finite values and weights never overflow in between.

    Args:
        values: array of any shape.
        weights: non-negative weights broadcastable to ``values.shape``.

    Returns:
        Scalar weighted mean.

    Example:
        >>> import jax.numpy as jnp
        >>> float(weighted_mean(jnp.array([1.0, 3.0]), jnp.array([1.0, 3.0])))
        2.5
    """
    values = jnp.asarray(values)
    weights = jnp.broadcast_to(jnp.asarray(weights, dtype=values.dtype), values.shape)
    check_non_negative(weights, "weights")
    weights_ok = True if is_concrete(weights) else jnp.all(jnp.isfinite(weights) & (weights >= 0))
    return nan_unless(weights_ok, unchecked_weighted_mean(values, weights))


@jax.jit
def unchecked_weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """:func:`weighted_mean` for weights already known to be finite and non-negative (no check)."""
    # Rescaled by a power of two (exact) so that the sum of the weights cannot overflow; the ratio
    # of the normalised weights is the same.
    largest = jax.lax.stop_gradient(jnp.max(weights, initial=0.0))
    weights = weights / _stable.scale_above_one(largest)
    weight_sum = jnp.sum(weights)
    share = weights / jnp.where(weight_sum != 0, weight_sum, 1)
    return jnp.sum(jnp.where(weights != 0, values * share, 0))


def is_concrete(*arrays) -> bool:
    """Whether the arrays' values can be read now: no tracer, nothing spread over several processes.

    ``None`` entries (absent optional arguments) count as concrete.
    """
    for array in arrays:
        if isinstance(array, jax.core.Tracer):
            return False
        if isinstance(array, jax.Array) and not array.is_fully_addressable:
            return False
    return True


def first_violation(bad: np.ndarray, where=None) -> tuple[int, ...] | None:
    """Index of the first true entry of ``bad`` where ``where`` (broadcast) holds; None if there is none."""
    if where is not None:
        bad = bad & np.broadcast_to(np.asarray(where, dtype=bool), bad.shape)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])


def nan_unless(ok, value: jax.Array, inputs: Sequence[jax.Array] = ()) -> jax.Array:
    """``value`` where ``ok`` holds and NaN elsewhere; gradients pass through unchanged.

    ``ok`` is ``True`` (a check already passed at trace time: nothing is added) or a bool array
    broadcastable to ``value``. With ``inputs`` (then ``ok`` must be a scalar), a failed check also
    makes the gradient with respect to every input NaN, so that a training step cannot read it as
    convergence either; a passed one adds exact zeros.
    """
    if ok is True:
        return value
    poison = jnp.where(ok, 0.0, jnp.nan).astype(value.dtype)
    for array in inputs:
        # Zero when ok (whatever the input holds); NaN times the input's sum (and NaN gradients) if not.
        value = value + poison * jnp.sum(jnp.where(ok, 0.0, array)).astype(value.dtype)
    return value + poison


def nan_for_failed_rows(row_ok: jax.Array, rows: jax.Array) -> jax.Array:
    """Scalar to add to a loss: 0 if every row passes, NaN if one fails; NaN gradient on failed rows.

    Row by row, with no batch-wide flag first: under sharding it is one reduction, independent of
    the loss's own (XLA can combine them), where :func:`nan_unless` on ``all(row_ok)`` needs two in a
    row. A passing row contributes an exact 0 and a zero gradient, whatever it holds.
    """
    # Double where: a passing row is replaced before it meets the NaN, or its gradient is 0 * NaN.
    failed_rows = jnp.where(row_ok[:, None], 0.0, rows)
    return jnp.sum(jnp.where(row_ok, 0.0, jnp.nan * jnp.sum(failed_rows, axis=1))).astype(rows.dtype)


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


def check_finite(array, name: str, where=None) -> None:
    """Raises ValueError naming ``name`` if a concrete ``array`` holds NaN or Inf where ``where`` is true.

    ``where`` (optional) is a bool mask broadcastable to ``array``: masked entries are not checked,
    as they cannot reach the result. Skipped for tracers (values unknown under jit) and for arrays
    spread over several processes.
    """
    if not is_concrete(array, where):
        return
    values = np.asarray(array)
    index = first_violation(~np.isfinite(values), where)
    if index is not None:
        raise ValueError(f"{name} contains NaN or Inf values (shape {values.shape}; the first at "
                         f"index {index} is {values[index]})")


def check_non_negative(array, name: str, where=None) -> None:
    """Raises ValueError naming ``name``, the first bad index and value, if a concrete ``array`` is
    negative or not finite where ``where`` is true (everywhere if ``None``); skipped for tracers."""
    if not is_concrete(array, where):
        return
    values = np.asarray(array)
    index = first_violation(~(np.isfinite(values) & (values >= 0)), where)
    if index is not None:
        raise ValueError(f"{name} must be finite and >= 0, got {values[index]} at index {index}")


def check_number(value, name: str, *, minimum: float, inclusive: bool = True):
    """Checks a scalar hyperparameter against its documented range ``[minimum, inf)`` (or ``(minimum, inf)``).

    A concrete value (a Python or numpy number, or a concrete jax scalar) is checked now: a
    non-number or non-scalar raises TypeError, a NaN, infinite or out-of-range value ValueError,
    both naming ``name``, the value and the range; ``True`` is returned. A traced value (under
    ``jax.jit``) cannot be checked: a traced bool scalar is returned, False for a bad value, to pass
    to :func:`nan_unless` so that the loss is NaN instead.
    """
    bound = f"{'>=' if inclusive else '>'} {minimum:g}"
    if is_concrete(value):
        if isinstance(value, bool) or np.ndim(value) != 0 or not (
                isinstance(value, numbers.Real) or np.issubdtype(np.asarray(value).dtype, np.floating)
                or np.issubdtype(np.asarray(value).dtype, np.integer)):
            raise TypeError(f"{name} must be a real number {bound}, got {value!r}")
        number = float(value)
        if not (math.isfinite(number) and (number >= minimum if inclusive else number > minimum)):
            raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
        return True
    value = jnp.asarray(value)
    if value.ndim != 0:
        raise TypeError(f"{name} must be a scalar, got shape {value.shape}")
    return jnp.isfinite(value) & (value >= minimum if inclusive else value > minimum)


def check_same_shape(arrays: Sequence[tuple[str, jax.Array]]) -> None:
    """Raises ValueError listing every (name, shape) pair unless all shapes are equal."""
    shapes = [np.shape(array) for _, array in arrays]
    if any(shape != shapes[0] for shape in shapes):
        listing = ", ".join(f"{name} {shape}" for (name, _), shape in zip(arrays, shapes))
        raise ValueError(f"shapes must match: {listing}")


def check_batch(values, labels, where, name: str) -> jax.Array:
    """Checks a batch-coupled loss's inputs at its boundary; returns ``values`` as a jax array.

    ``values`` must be floating ``[batch, dim]``, ``labels`` and ``where`` as in
    :func:`relevance_from_labels` and :func:`distinct_pairs`; eagerly, the unmasked rows finite.
    """
    values = check_floating(values, name)
    check_rank(values, 2, name, "[batch, dim]")
    relevance_from_labels(labels, values.shape[0])
    distinct_pairs(values.shape[0], where)
    check_finite(values, name, None if where is None else jnp.asarray(where)[:, None])
    return values


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
