"""jaxretrieval.multistage: micro-batched (remat) value and gradient equal the plain ones, in less memory."""
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jaxretrieval import sharding
from jaxretrieval.models import build_model
from jaxretrieval.multistage import micro_batched_value_and_grad

BATCH = 32


def _mlp_embed(params, images):
    hidden = jax.nn.relu(images @ params["w1"] + params["b1"])
    descriptors = hidden @ params["w2"]
    return descriptors / jnp.linalg.norm(descriptors, axis=-1, keepdims=True)


def _listwise_loss(descriptors, labels):
    """Softmax contrastive loss over the full B x B similarity matrix; aux = mean similarity.

    The keys are replicated explicitly so that the loss also type-checks with descriptors sharded over
    an Explicit "data" axis (each device keeps its queries' rows).
    """
    if jax.sharding.get_abstract_mesh().axis_names:
        key_descriptors, key_labels = jax.sharding.reshard((descriptors, labels), jax.P())
    else:
        key_descriptors, key_labels = descriptors, labels
    similarities = descriptors @ key_descriptors.T
    same_label = labels[:, None] == key_labels[None, :]
    self_match = jnp.eye(descriptors.shape[0], dtype=bool)
    log_probabilities = jax.nn.log_softmax(jnp.where(self_match, -1e9, similarities / 0.1), axis=-1)
    positives = same_label & ~self_match
    per_query = -jnp.sum(jnp.where(positives, log_probabilities, 0.0), axis=1) / jnp.maximum(positives.sum(1), 1)
    return jnp.mean(per_query), jnp.mean(similarities)


def _mlp_problem():
    keys = jax.random.split(jax.random.key(0), 4)
    params = {
        "w1": jax.random.normal(keys[0], (12, 16)) / 3.0,
        "b1": jnp.zeros(16),
        "w2": jax.random.normal(keys[1], (16, 4)) / 4.0,
    }
    images = jax.random.normal(keys[2], (BATCH, 12))
    labels = jax.random.randint(keys[3], (BATCH,), 0, 3)
    return params, images, labels


def _plain(embed, loss, has_aux):
    return lambda params, images, *args: jax.value_and_grad(
        lambda p: loss(embed(p, images), *args), has_aux=has_aux
    )(params)


@pytest.mark.parametrize("micro_batch_size", [4, BATCH])
def test_equals_plain_value_and_grad_with_aux(micro_batch_size):
    params, images, labels = _mlp_problem()
    expected = _plain(_mlp_embed, _listwise_loss, True)(params, images, labels)
    step = micro_batched_value_and_grad(_mlp_embed, _listwise_loss, micro_batch_size=micro_batch_size, has_aux=True)
    chex.assert_trees_all_close(jax.jit(step)(params, images, labels), expected, rtol=1e-5, atol=1e-7)


def test_without_aux_eager_equals_jit_and_plain():
    params, images, labels = _mlp_problem()
    loss = lambda descriptors, labels: _listwise_loss(descriptors, labels)[0]  # noqa: E731
    step = micro_batched_value_and_grad(_mlp_embed, loss, micro_batch_size=8)
    value, grads = step(params, images, labels)
    expected = _plain(_mlp_embed, loss, False)(params, images, labels)
    assert value.shape == ()
    chex.assert_trees_all_close((value, grads), expected, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(jax.jit(step)(params, images, labels), expected, rtol=1e-5, atol=1e-7)


def test_rejects_bad_micro_batch_sizes():
    params, images, labels = _mlp_problem()
    with pytest.raises(ValueError, match="batch size 32 .* not divisible by micro_batch_size=5"):
        micro_batched_value_and_grad(_mlp_embed, _listwise_loss, micro_batch_size=5, has_aux=True)(
            params, images, labels
        )
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="positive int"):
            micro_batched_value_and_grad(_mlp_embed, _listwise_loss, micro_batch_size=bad)


def test_sharded_batch_equals_unsharded_on_eight_devices():
    params, images, labels = _mlp_problem()
    mesh = sharding.make_mesh([("data", -1)])
    step = jax.jit(micro_batched_value_and_grad(_mlp_embed, _listwise_loss, micro_batch_size=16, has_aux=True))
    with jax.set_mesh(mesh):
        expected = _plain(_mlp_embed, _listwise_loss, True)(params, images, labels)
        batch = sharding.global_batch({"image": np.asarray(images), "label": np.asarray(labels)}, mesh)
        replicated_params = jax.device_put(params, sharding.replicated_sharding(mesh))
        (value, aux), grads = step(replicated_params, batch["image"], batch["label"])
        with pytest.raises(ValueError, match="multiple of the 8 shards"):
            jax.jit(micro_batched_value_and_grad(_mlp_embed, _listwise_loss, micro_batch_size=4, has_aux=True))(
                replicated_params, batch["image"], batch["label"]
            )
    chex.assert_trees_all_close(((value, aux), grads), expected, rtol=1e-5, atol=1e-7)
    assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(grads))


def test_small_cnn_remat_step_uses_a_quarter_of_the_plain_temporary_memory():
    """Issue 6 at test size (the benchmark does 64x64 px, B = 512): temp bytes of the compiled steps."""
    batch_size, micro_batch_size, image_size = 64, 8, 32
    config = ml_collections.ConfigDict({"backbone": "small_cnn", "head": "ap", "descriptor_dim": 16, "width": 8})
    model = build_model(config, rngs=nnx.Rngs(0))
    model.eval()  # multistage backprop needs per-example embeddings: frozen BatchNorm
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def embed(params, images):
        return nnx.merge(graphdef, params, rest)(images)

    keys = jax.random.split(jax.random.key(1), 2)
    images = jax.random.uniform(keys[0], (batch_size, image_size, image_size, 3))
    labels = jax.random.randint(keys[1], (batch_size,), 0, 4)
    plain = jax.jit(_plain(embed, _listwise_loss, True)).lower(params, images, labels).compile()
    remat = (
        jax.jit(micro_batched_value_and_grad(embed, _listwise_loss, micro_batch_size=micro_batch_size, has_aux=True))
        .lower(params, images, labels)
        .compile()
    )
    plain_bytes = plain.memory_analysis().temp_size_in_bytes
    remat_bytes = remat.memory_analysis().temp_size_in_bytes
    assert remat_bytes * 4 <= plain_bytes, (remat_bytes, plain_bytes)
    chex.assert_trees_all_close(remat(params, images, labels), plain(params, images, labels), rtol=1e-5, atol=1e-7)


_FLOAT64_CHECK = r'''
import jax, jax.numpy as jnp, ml_collections, numpy as np
jax.config.update("jax_enable_x64", True)
from flax import nnx
from jaxretrieval.losses import map_q_loss
from jaxretrieval.models import build_model
from jaxretrieval.multistage import micro_batched_value_and_grad
config = ml_collections.ConfigDict({"backbone": "small_cnn", "head": "ap", "descriptor_dim": 16, "width": 4, "dtype": "float64"})
model = build_model(config, rngs=nnx.Rngs(0))
model.eval()
graphdef, params, rest = nnx.split(model, nnx.Param, ...)
params = jax.tree.map(lambda leaf: leaf.astype(jnp.float64), params)
embed = lambda p, x: nnx.merge(graphdef, p, rest)(x)
keys = jax.random.split(jax.random.key(0), 2)
images = jax.random.uniform(keys[0], (64, 16, 16, 3), jnp.float64)
labels = jax.random.randint(keys[1], (64,), 0, 4)
plain = jax.jit(lambda p: jax.value_and_grad(lambda q: map_q_loss(embed(q, images), labels))(p))(params)
remat = jax.jit(micro_batched_value_and_grad(embed, map_q_loss, micro_batch_size=8))(params, images, labels)
assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(plain[1]))
worst = max(float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(jax.tree.leaves(plain[1]), jax.tree.leaves(remat[1])))
print("WORST", worst, float(plain[0]), float(remat[0]))
'''


def test_small_cnn_map_q_gradients_equal_plain_in_float64():
    """Multistage backprop computes the plain gradient: in float64 the two agree to ~1e-12 (float32 differs
    by rounding, which mAP_Q's piecewise-linear binning amplifies; docs/benchmarks/memory.md). A subprocess,
    because jax_enable_x64 is process-wide."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _FLOAT64_CHECK], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    worst, plain_loss, remat_loss = (float(value) for value in result.stdout.split("WORST")[1].split())
    assert worst < 1e-9, worst
    assert abs(plain_loss - remat_loss) < 1e-12
