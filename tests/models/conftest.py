"""Fixtures for the model tests: concrete modules without compiling their random initialisers.

On a busy 2-core machine each distinct ``jax.random.normal`` shape costs a compilation (seconds);
tests that need concrete weights but not the initialisers' distribution fill an abstract module
(``nnx.eval_shape``) with numpy draws instead.
"""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxretrieval import models


def _fill(path, abstract, rng):
    name = path[-1]
    if jax.dtypes.issubdtype(abstract.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(rng.integers(0, 2**32, (*abstract.shape, 2), dtype=np.uint32))
    if np.issubdtype(abstract.dtype, np.integer):
        return np.zeros(abstract.shape, abstract.dtype)
    if name == "whitening_projection":  # the initial (identity) whitening
        return np.eye(abstract.shape[0], dtype=abstract.dtype)
    if name == "gem_p":  # GeM's exponent at its usual initial value
        return np.asarray(3.0, abstract.dtype)
    if name == "whitening_mean":
        return np.zeros(abstract.shape, abstract.dtype)
    if name in ("var", "scale"):  # BatchNorm variance and scale: positive, near 1
        return rng.uniform(0.5, 1.5, abstract.shape).astype(abstract.dtype)
    fan_in = int(np.prod(abstract.shape[:-1])) or 1
    return (rng.standard_normal(abstract.shape) / np.sqrt(fan_in)).astype(abstract.dtype)


@pytest.fixture(scope="session")
def concrete_module():
    """``concrete_module(make, seed=0)``: the module ``make()`` builds, with numpy-drawn weights.

    Whitening variables get their initial values (identity), everything else is drawn.
    """

    def build(make, seed: int = 0):
        graphdef, state = nnx.split(nnx.eval_shape(make))
        rng = np.random.default_rng(seed)
        for path, variable in nnx.to_flat_state(state):
            variable.set_value(jax.numpy.asarray(_fill(path, variable.get_value(), rng)))
        return nnx.merge(graphdef, state)

    return build


@pytest.fixture(scope="session")
def concrete_model(concrete_module):
    """``concrete_model(config, seed=0)``: ``build_model(config)`` with numpy-drawn weights."""
    return lambda config, seed=0: concrete_module(lambda: models.build_model(config, rngs=nnx.Rngs(0)), seed)
