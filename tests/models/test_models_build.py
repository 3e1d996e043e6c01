"""build_model: shapes for every backbone x head, train/eval modes, backbone filter, errors."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jaxretrieval import models

HEAD_CONFIGS = {
    "hash": {"num_bits": 12, "hidden_dim": 16},
    "pq": {"pq_num_books": 4, "pq_num_words": 8, "pq_word_dim": 6, "pq_hidden_dim": 16},
    "ap": {"descriptor_dim": 20},
}
HEAD_OUTPUT_DIM = {"hash": 12, "pq": 24, "ap": 20}


def _abstract_output(config, image_shape):
    """Output shape without compiling: abstract init (nnx.eval_shape) and abstract forward."""
    model = nnx.eval_shape(lambda: models.build_model(config, rngs=nnx.Rngs(0)))
    model.eval()
    graphdef, state = nnx.split(model)
    images = jax.ShapeDtypeStruct(image_shape, jnp.float32)
    return model, jax.eval_shape(lambda state, images: nnx.merge(graphdef, state)(images), state, images)


def _num_parameters(module) -> int:
    return sum(int(np.prod(variable.shape)) for _, variable in nnx.to_flat_state(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("head", sorted(HEAD_CONFIGS))
@pytest.mark.parametrize(
    "backbone, image_shape",
    [("small_cnn", (3, 8, 8, 1)), ("small_cnn", (3, 32, 32, 3)), ("cifar_resnet18", (3, 32, 32, 3))],
)
def test_output_shape_and_dtype(backbone, image_shape, head):
    config = {"backbone": backbone, "head": head, "width": 4, **HEAD_CONFIGS[head]}
    _, output = _abstract_output(config, image_shape)
    assert output.shape == (3, HEAD_OUTPUT_DIM[head])
    assert output.dtype == jnp.float32


@pytest.mark.parametrize(
    "backbone, blocks_per_stage, num_parameters",
    # torchvision's resnet50 / resnet101 have 25,557,032 / 44,549,160 parameters, 2,049,000 in the classifier.
    [("resnet50", [3, 4, 6, 3], 23_508_032), ("resnet101", [3, 4, 23, 3], 42_500_160)],
)
def test_imagenet_resnets_match_torchvision_and_feed_every_head(backbone, blocks_per_stage, num_parameters):
    network = nnx.eval_shape(lambda: models.backbones.build_backbone(backbone, in_channels=3, rngs=nnx.Rngs(0)))
    assert _num_parameters(network) == num_parameters
    assert network.conv1.kernel.shape == (7, 7, 3, 64)
    assert [len(stage) for stage in (network.layer1, network.layer2, network.layer3, network.layer4)] == blocks_per_stage
    assert network.layer2[0].conv2.strides == (2, 2)  # v1.5: the stride sits on the 3x3 conv
    assert network.layer2[0].conv1.strides == (1, 1)
    feature_maps = _abstract_apply(network, jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32))
    assert feature_maps.shape == (2, 2, 2, 2048)  # stride 32
    head_modules = {
        "hash": lambda: models.heads.HashHead(2048, 12, hidden_dim=16, rngs=nnx.Rngs(0)),
        "pq": lambda: models.heads.PQHead(2048, num_books=4, num_words=8, word_dim=6, rngs=nnx.Rngs(0)),
        "ap": lambda: models.heads.APHead(2048, 20, rngs=nnx.Rngs(0)),
    }
    for head, make_head in head_modules.items():
        output = _abstract_apply(nnx.eval_shape(make_head), feature_maps)
        assert output.shape == (2, HEAD_OUTPUT_DIM[head]) and output.dtype == jnp.float32


def _abstract_apply(module, inputs):
    module.eval()
    graphdef, state = nnx.split(module)
    return jax.eval_shape(lambda state, inputs: nnx.merge(graphdef, state)(inputs), state, inputs)


def test_width_shapes_small_cnn_only_so_resnets_keep_their_published_widths():
    for backbone, num_features in (("small_cnn", 4 * 4), ("cifar_resnet18", 512)):
        config = {"backbone": backbone, "head": "ap", "descriptor_dim": 8, "width": 4}
        model = nnx.eval_shape(lambda: models.build_model(config, rngs=nnx.Rngs(0)))
        assert model.backbone.num_features == num_features


def test_cifar_resnet18_layout():
    model, output = _abstract_output({"backbone": "cifar_resnet18", "head": "pq", **HEAD_CONFIGS["pq"]}, (2, 32, 32, 3))
    backbone = model.backbone
    assert backbone.conv1.kernel.shape == (3, 3, 3, 64)  # 3x3 stride-1 stem
    assert backbone.conv1.strides == (1, 1)
    assert [len(stage) for stage in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)] == [2, 2, 2, 2]
    assert backbone.num_features == 512
    assert model.head.codebooks.shape == (4, 8, 6)


def test_bfloat16_compute_keeps_float32_parameters_and_output():
    config = {"backbone": "small_cnn", "head": "hash", "width": 4, "dtype": "bfloat16", **HEAD_CONFIGS["hash"]}
    model, output = _abstract_output(config, (2, 8, 8, 1))
    assert output.dtype == jnp.float32
    parameter_dtypes = {variable.dtype for _, variable in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert parameter_dtypes == {jnp.dtype(jnp.float32)}


@pytest.fixture(scope="module")
def small_model(concrete_model):
    config = ml_collections.ConfigDict({"backbone": "small_cnn", "head": "hash", "width": 4, **HEAD_CONFIGS["hash"]})
    return concrete_model(config)


@nnx.jit
def _forward(model, images):
    return model(images)


def _batch_stats(model):
    return [np.asarray(variable[...]) for _, variable in nnx.to_flat_state(nnx.state(model, nnx.BatchStat))]


def test_train_mode_updates_batch_stats_and_draws_dropout(small_model):
    images = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
    small_model.eval()
    stats_before = _batch_stats(small_model)
    first, second = _forward(small_model, images), _forward(small_model, images)
    np.testing.assert_array_equal(first, second)  # eval: no dropout, running statistics
    for before, after in zip(stats_before, _batch_stats(small_model)):
        np.testing.assert_array_equal(before, after)

    small_model.train()
    first_train, second_train = _forward(small_model, images), _forward(small_model, images)
    small_model.eval()
    assert not np.allclose(first_train, second_train)  # a fresh dropout mask per call
    changed = [not np.array_equal(before, after) for before, after in zip(stats_before, _batch_stats(small_model))]
    assert all(changed)
    assert not np.allclose(_forward(small_model, images), first)  # eval now uses the updated statistics


class _Passthrough(nnx.Module):
    def __call__(self, x):
        return x


def test_grayscale_images_are_repeated_for_a_three_channel_model():
    model = models.RetrievalModel(_Passthrough(), _Passthrough(), in_channels=3)
    gray = np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1)
    np.testing.assert_array_equal(model(gray), np.repeat(gray, 3, axis=-1))
    with pytest.raises(ValueError, match="3-channel images"):
        model(np.zeros((2, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match=r"\[batch, height, width, channels\]"):
        model(np.zeros((8, 8, 3), np.float32))
    single_channel = models.RetrievalModel(_Passthrough(), _Passthrough(), in_channels=1)
    with pytest.raises(ValueError, match="expects 1-channel images"):
        single_channel(np.zeros((2, 8, 8, 3), np.float32))


def test_backbone_filter_selects_exactly_the_backbone_parameters(small_model):
    backbone_state = nnx.state(small_model, models.backbone_parameter_filter)
    paths = [path for path, _ in nnx.to_flat_state(backbone_state)]
    assert paths and all(models.is_backbone_path(path) for path in paths)
    assert sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(backbone_state)) == _num_parameters(small_model.backbone)
    assert not models.is_backbone_path(("head", "output", "kernel"))
    assert not models.is_backbone_path(())


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backbone": "vgg16"}, "unknown model.backbone 'vgg16'; choose one of small_cnn, cifar_resnet18, resnet50, resnet101"),
        ({"head": "softmax"}, "unknown model.head 'softmax'; choose one of hash, pq, ap"),
        ({"dtype": "float16"}, "unknown model.dtype 'float16'; choose one of float32, bfloat16"),
        ({"num_bits": None}, "config.model.num_bits is required"),
        ({"head": "pq"}, "config.model.pq_num_books is required"),
        ({"head": "ap"}, "config.model.descriptor_dim is required"),
        ({"num_bits": 0}, "config.model.num_bits must be an integer >= 1, got 0"),
        ({"num_bits": 16.0}, "config.model.num_bits must be an integer >= 1, got 16.0"),
        ({"dropout": 1.0}, "config.model.dropout must be in [0, 1), got 1.0"),
    ],
)
def test_configuration_errors_name_the_key_and_the_choices(overrides, message):
    config = {"backbone": "small_cnn", "head": "hash", "num_bits": 8, **overrides}
    config = {key: value for key, value in config.items() if value is not None}
    with pytest.raises(ValueError, match=re.escape(message)):
        nnx.eval_shape(lambda: models.build_model(config, rngs=nnx.Rngs(0)))


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "resnet50.npz"
    config = {"backbone": "small_cnn", "head": "hash", "num_bits": 8, "width": 2, "hidden_dim": 4, "pretrained_path": str(missing)}
    with pytest.raises(FileNotFoundError, match=str(missing)):
        nnx.eval_shape(lambda: models.build_model(config, rngs=nnx.Rngs(0)))


def test_float64_compute_needs_x64():
    config = ml_collections.ConfigDict({"backbone": "small_cnn", "head": "ap", "descriptor_dim": 8, "width": 4, "dtype": "float64"})
    with pytest.raises(ValueError, match="jax_enable_x64"):
        models.build_model(config, rngs=nnx.Rngs(0))
