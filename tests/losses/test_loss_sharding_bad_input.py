"""The bad-input paths under jit with the batch sharded over 8 devices equal the unsharded ones.

Covers what test_loss_sharding.py does not: soft_quantize's hand-written gradient (its batch sums),
rows masked out while holding NaN, large inputs (the rescaled quadratic form's custom gradient) and
the NaN results of out-of-contract input.
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxretrieval.losses import map_q_loss, pairwise_likelihood_loss, soft_quantize

BATCH_SIZE = 16


def bad_input_cases(features, codebooks, descriptors, labels, where, weights):
    """Every case in one function so that it compiles once per sharding."""
    soft = jax.value_and_grad(lambda x, c: jnp.sum(soft_quantize(x, c, temperature=0.5) ** 2),
                              argnums=(0, 1))(features, codebooks)
    masked_nan = jnp.where(where[:, None], descriptors, jnp.nan)
    map_q = jax.value_and_grad(
        lambda d: map_q_loss(d, labels, where=where, query_weights=weights))(masked_nan)
    off_sphere = jax.value_and_grad(lambda d: map_q_loss(d, labels))(2.0 * descriptors)
    pairwise = jax.value_and_grad(lambda x: pairwise_likelihood_loss(x, labels, where=where).sum())(
        jnp.where(where[:, None], 1e30 * descriptors, jnp.nan))
    return soft, map_q, off_sphere, pairwise


def test_bad_input_paths_sharded_equal_unsharded():
    assert jax.device_count() == 8
    rng = np.random.default_rng(0)
    features = jnp.asarray(rng.standard_normal((BATCH_SIZE, 8)), jnp.float32)
    features = features.at[5].multiply(1e30)  # one far-away row: a hard assignment
    codebooks = jnp.asarray(rng.standard_normal((4, 3, 2)), jnp.float32)
    descriptors = rng.standard_normal((BATCH_SIZE, 8))
    descriptors = jnp.asarray(descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True), jnp.float32)
    labels = jnp.arange(BATCH_SIZE) % 5
    where = jnp.arange(BATCH_SIZE) != 7
    weights = jnp.linspace(0.5, 1.5, BATCH_SIZE)
    compute = jax.jit(bad_input_cases)
    unsharded = compute(features, codebooks, descriptors, labels, where, weights)

    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    batch, replicated = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
    sharded = compute(*(jax.device_put(x, batch) for x in (features,)), jax.device_put(codebooks, replicated),
                      *(jax.device_put(x, batch) for x in (descriptors, labels, where, weights)))

    flat_unsharded, structure = jax.tree.flatten(unsharded)
    flat_sharded, sharded_structure = jax.tree.flatten(sharded)
    assert structure == sharded_structure
    for expected, actual in zip(flat_unsharded, flat_sharded):
        np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-5, atol=1e-6)
    soft, map_q, off_sphere, pairwise = unsharded
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves((soft, map_q)))
    assert np.isnan(off_sphere[0]) and np.all(np.isnan(off_sphere[1]))
    assert not any(np.any(np.isnan(x)) for x in jax.tree.leaves(pairwise))
