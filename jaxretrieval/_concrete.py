"""Whether values can be read now: concrete arrays outside any trace (checks of values run only then)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def is_concrete(*values) -> bool:
    """True when no value is a tracer and no trace (``jax.jit``, ``vmap``, ``grad``) is being built.

    Inside a trace even a concrete array's operations are staged, so value checks and host-side
    paths (numpy) must wait for a call outside it.
    """
    if any(isinstance(value, jax.core.Tracer) for value in values):
        return False
    return not isinstance(jnp.zeros((), jnp.int8), jax.core.Tracer)
