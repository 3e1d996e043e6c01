"""Batch-coupled losses under jit with the batch sharded over 8 devices equal the unsharded ones."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxretrieval.losses import map_q_loss, pairwise_likelihood_loss, spq_loss, triplet_margin_loss

BATCH_SIZE = 16


def all_losses_and_gradients(features_a, features_b, quantized_a, quantized_b, descriptors,
                             labels, multi_hot, where, weights):
    """Every batch-coupled loss with its gradient, in one function so that it compiles once."""
    spq = jax.value_and_grad(spq_loss, argnums=(0, 1, 2, 3))(
        features_a, features_b, quantized_a, quantized_b)
    # where and multi-hot labels in map_q share their code path with the triplet loss (below).
    map_q = jax.value_and_grad(lambda d: map_q_loss(d, labels, query_weights=weights))(descriptors)
    triplet = jax.value_and_grad(lambda x: triplet_margin_loss(x, labels, where=where).sum())(
        features_a)
    triplet_cosine = triplet_margin_loss(features_a, multi_hot, distance="cosine")
    triplet_all = jax.value_and_grad(
        lambda x: triplet_margin_loss(x, labels, mining="batch_all", distance="cosine", where=where).sum())(features_b)
    pairwise = jax.value_and_grad(
        lambda x: pairwise_likelihood_loss(x, labels, quantization_weight=0.1).sum())(features_b)
    return spq, map_q, triplet, triplet_cosine, triplet_all, pairwise


def test_sharded_equals_unsharded():
    assert jax.device_count() == 8
    rng = np.random.default_rng(0)
    features = [jnp.asarray(rng.standard_normal((BATCH_SIZE, 8)), jnp.float32) for _ in range(4)]
    descriptors = rng.standard_normal((BATCH_SIZE, 8))
    descriptors = jnp.asarray(descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True),
                              jnp.float32)
    labels = jnp.arange(BATCH_SIZE) % 5
    multi_hot = jax.nn.one_hot(labels, 5).at[::3, 4].set(1.0)
    where = jnp.arange(BATCH_SIZE) != 7
    weights = jnp.linspace(0.5, 1.5, BATCH_SIZE)
    inputs = (*features, descriptors, labels, multi_hot, where, weights)
    compute = jax.jit(all_losses_and_gradients)
    unsharded = compute(*inputs)

    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    sharded_inputs = [jax.device_put(x, batch_sharding) for x in inputs]
    sharded = compute(*sharded_inputs)

    assert sharded[1][1].sharding.spec[0] == "data"  # the descriptors' gradient stays sharded
    flat_unsharded, structure = jax.tree.flatten(unsharded)
    flat_sharded, sharded_structure = jax.tree.flatten(sharded)
    assert structure == sharded_structure
    for expected, actual in zip(flat_unsharded, flat_sharded):
        np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-5, atol=1e-6)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in flat_unsharded)
