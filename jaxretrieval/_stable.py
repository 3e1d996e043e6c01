"""Numerically safe building blocks: exact power-of-two rescaling, unit rows, scale-free quadratic forms.

Shared by the losses and the searches (PQ distance tables, inner products, cosine normalisation).

Large finite inputs must give the right loss (or +inf where the true value exceeds the dtype), never
NaN: products such as ``x . y`` overflow to ``inf`` long before the inputs do, and ``inf - inf`` is
NaN. Rescaling by a power of two is exact (no rounding), so inputs of ordinary size (at most 2 in
magnitude), which are not rescaled at all, give bit-identical results to the plain formulas.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def exponent_above(magnitude: jax.Array) -> jax.Array:
    """The int exponent ``e`` with ``magnitude < 2**e`` (``frexp``'s; 0 for 0): ``ldexp(x, -e)`` is exact."""
    return jnp.frexp(magnitude)[1]


def power_of_two_below(magnitude: jax.Array) -> jax.Array:
    """The largest power of two ``<= magnitude`` for normal positive floats (``x / it`` is exact).

    Subnormal, zero and non-finite magnitudes give meaningless values: callers select around them.
    """
    return jnp.ldexp(jnp.ones_like(magnitude), exponent_above(magnitude) - 1)


def scaled_rows(rows: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``[n, d]`` rows scaled by a power of two to entries below 1 in magnitude, and the exponents ``[n]``.

    Exact, so products of scaled rows round as the unscaled ones do; scale back with ``jnp.ldexp``
    by the summed exponents, which overflows to ``+-inf`` only where the true value exceeds the
    dtype (never ``inf - inf = NaN`` on the way).
    """
    exponent = exponent_above(jnp.max(jnp.abs(rows), axis=1))
    return jnp.ldexp(rows, -exponent[:, None]), exponent


def scale_above_one(magnitude: jax.Array) -> jax.Array:
    """A power of two ``s >= 1`` with ``magnitude / s < 2``: 1 for magnitudes below 2 (no-op scaling).

    Not differentiated (``stop_gradient``): the callers' results do not depend on it mathematically.
    """
    magnitude = jax.lax.stop_gradient(magnitude)
    return jnp.where(magnitude >= 2, power_of_two_below(magnitude), 1).astype(magnitude.dtype)


def unit_rows(rows: jax.Array) -> jax.Array:
    """``rows / ||rows||`` per row, without overflow or underflow; a zero row stays zero.

    Each row is first divided by a power of two near its largest entry (exact), so its squared norm
    lies in ``[1, 4 * dim)`` and neither overflows (rows at 1e30) nor underflows (rows at 1e-30, which
    are normalised exactly). A zero (or subnormal) row is returned as is, with a finite (identity)
    gradient: it has no direction, and contributes a similarity of 0 to everything.
    """
    magnitude = jax.lax.stop_gradient(jnp.max(jnp.abs(rows), axis=1, keepdims=True))
    normal = magnitude >= jnp.finfo(rows.dtype).tiny
    rows = rows / jnp.where(normal, power_of_two_below(magnitude), 1)
    squared_norm = jnp.sum(jnp.square(rows), axis=1, keepdims=True)
    # Double where: the zero row's sqrt(0) (infinite slope) is never on the differentiated path.
    return rows / jnp.sqrt(jnp.where(squared_norm > 0, squared_norm, 1))


def scaled_quadratic(fn, x: jax.Array, *args: jax.Array):
    r"""``fn(x, *args)`` for ``fn`` homogeneous of degree 2 in ``x``, with no overflow in between.

    ``fn(c x) = c^2 fn(x)`` (Gram matrices, squared distances, differences of them, selections among
    them) lets it be evaluated as :math:`s^2 fn(x / s)` with ``s >= 1`` a power of two such that
    ``|x / s| < 2``: the value is +-inf only where the true value exceeds the dtype, and the gradient
    is computed as :math:`s \nabla fn(x / s)` (a custom VJP: autodiff of the product would form
    :math:`s^2` times a cotangent first, overflow, and meet a zero: NaN). For ``|x| < 2`` nothing is
    rescaled: the result is exactly ``fn(x, *args)``.

    Args:
        fn: ``fn(x, *args) -> array or pytree of arrays``, a module-level function (or a
            ``functools.partial`` of one with static keywords).
        x: the floating array ``fn`` is differentiated in.
        *args: arrays ``fn`` also reads (masks); they get no gradient.
    """
    return _scaled_quadratic(fn, x, args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scaled_quadratic(fn, x, args):
    return _scaled_quadratic_forward(fn, x, args)[0]


def _scaled_quadratic_forward(fn, x, args):
    scale = scale_above_one(jnp.max(jnp.abs(x), initial=0.0))
    scaled_value, scaled_vjp = jax.vjp(lambda y: fn(y, *args), x / scale)
    # s * (s * v): no 0 * inf (s is finite), no s * s overflow before the product with v.
    value = jax.tree.map(lambda v: scale * (scale * v), scaled_value)
    return value, (scaled_vjp, scale)


def _scaled_quadratic_backward(fn, residuals, cotangent):
    del fn
    scaled_vjp, scale = residuals
    (x_cotangent,) = scaled_vjp(cotangent)
    return scale * x_cotangent, None


_scaled_quadratic.defvjp(_scaled_quadratic_forward, _scaled_quadratic_backward)
