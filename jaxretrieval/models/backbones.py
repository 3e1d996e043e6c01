"""Convolutional backbones (Flax NNX): images ``[batch, height, width, channels]`` -> feature maps.

Every backbone returns a feature map ``[batch, h, w, features]`` (NHWC) and exposes ``num_features``;
the heads pool it (global average pooling for the hash and PQ heads, GeM for the AP head), so one
backbone serves every head.

The ResNets follow torchvision's layout and names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, blocks
``conv1``/``bn1``/..., ``downsample_conv``/``downsample_bn``) so that a converted torchvision state dict
maps onto them by name (see ``scripts/convert_torchvision_resnet.py`` and
``jaxretrieval.models.pretrained``). Convolutions use torch's explicit symmetric padding, not ``"SAME"``
(which pads strided convolutions asymmetrically), so converted weights give torchvision's outputs.
BatchNorm uses torch's defaults (epsilon 1e-5, running-average momentum 0.1, i.e. Flax momentum 0.9);
its running statistics are ``nnx.BatchStat`` and update only in ``model.train()`` mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

# torchvision initialises convolutions with kaiming_normal_(mode="fan_out", nonlinearity="relu").
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
_BATCH_NORM_MOMENTUM = 0.9  # torch's momentum=0.1 on the new batch statistic
_BATCH_NORM_EPSILON = 1e-5


def _conv(in_features: int, out_features: int, kernel_size: int, stride: int, *, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    padding = (kernel_size - 1) // 2
    return nnx.Conv(
        in_features,
        out_features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        use_bias=False,
        kernel_init=_CONV_INIT,
        dtype=dtype,
        rngs=rngs,
    )


def _batch_norm(num_features: int, *, dtype, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(
        num_features,
        momentum=_BATCH_NORM_MOMENTUM,
        epsilon=_BATCH_NORM_EPSILON,
        dtype=dtype,
        rngs=rngs,
    )


class SmallCNN(nnx.Module):
    """A small conv-BN-ReLU network that trains in seconds on a CPU (8x8 digits, 32x32 CIFAR).

    ``num_stages`` stages of two 3x3 conv-BN-ReLU layers; stage ``s`` has ``width * 2**s`` channels and
    every stage but the last ends with a 2x2 max-pool, so an 8x8 input leaves a 2x2 map with the default
    three stages. Output ``[batch, h, w, width * 2**(num_stages - 1)]``.
    """

    def __init__(self, in_channels: int, *, width: int = 32, num_stages: int = 3, dtype=jnp.float32, rngs: nnx.Rngs):
        if width < 1 or num_stages < 1:
            raise ValueError(f"SmallCNN needs width >= 1 and num_stages >= 1, got width={width}, num_stages={num_stages}")
        convs, norms = [], []
        features = in_channels
        for stage in range(num_stages):
            stage_features = width * 2**stage
            for _ in range(2):
                convs.append(_conv(features, stage_features, 3, 1, dtype=dtype, rngs=rngs))
                norms.append(_batch_norm(stage_features, dtype=dtype, rngs=rngs))
                features = stage_features
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.num_stages = num_stages
        self.num_features = features

    def __call__(self, images: jax.Array) -> jax.Array:
        x = images
        for layer, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = jax.nn.relu(norm(conv(x)))
            stage, position_in_stage = divmod(layer, 2)
            if position_in_stage == 1 and stage < self.num_stages - 1:
                x = nnx.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        return x


class BasicBlock(nnx.Module):
    """ResNet basic block: 3x3 conv (stride on the first) - BN - ReLU - 3x3 conv - BN, plus shortcut."""

    expansion = 1

    def __init__(self, in_features: int, features: int, stride: int, *, dtype, rngs: nnx.Rngs):
        self.conv1 = _conv(in_features, features, 3, stride, dtype=dtype, rngs=rngs)
        self.bn1 = _batch_norm(features, dtype=dtype, rngs=rngs)
        self.conv2 = _conv(features, features, 3, 1, dtype=dtype, rngs=rngs)
        self.bn2 = _batch_norm(features, dtype=dtype, rngs=rngs)
        self.downsample_conv, self.downsample_bn = _shortcut(in_features, features, stride, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = jax.nn.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return jax.nn.relu(out + _apply_shortcut(self, x))


class Bottleneck(nnx.Module):
    """ResNet v1.5 bottleneck: 1x1 - 3x3 (carries the stride, as torchvision) - 1x1 (x4 features)."""

    expansion = 4

    def __init__(self, in_features: int, features: int, stride: int, *, dtype, rngs: nnx.Rngs):
        out_features = features * self.expansion
        self.conv1 = _conv(in_features, features, 1, 1, dtype=dtype, rngs=rngs)
        self.bn1 = _batch_norm(features, dtype=dtype, rngs=rngs)
        self.conv2 = _conv(features, features, 3, stride, dtype=dtype, rngs=rngs)
        self.bn2 = _batch_norm(features, dtype=dtype, rngs=rngs)
        self.conv3 = _conv(features, out_features, 1, 1, dtype=dtype, rngs=rngs)
        self.bn3 = _batch_norm(out_features, dtype=dtype, rngs=rngs)
        self.downsample_conv, self.downsample_bn = _shortcut(in_features, out_features, stride, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = jax.nn.relu(self.bn1(self.conv1(x)))
        out = jax.nn.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return jax.nn.relu(out + _apply_shortcut(self, x))


def _shortcut(in_features: int, out_features: int, stride: int, *, dtype, rngs: nnx.Rngs):
    """The projection shortcut (1x1 conv + BN) where the shape changes, else ``(None, None)`` (identity)."""
    if stride == 1 and in_features == out_features:
        return None, None
    return (
        _conv(in_features, out_features, 1, stride, dtype=dtype, rngs=rngs),
        _batch_norm(out_features, dtype=dtype, rngs=rngs),
    )


def _apply_shortcut(block, x: jax.Array) -> jax.Array:
    if block.downsample_conv is None:
        return x
    return block.downsample_bn(block.downsample_conv(x))


class ResNet(nnx.Module):
    """ResNet with torchvision's names; ``cifar_stem=True`` gives the CIFAR variant SPQ uses.

    ImageNet stem (``cifar_stem=False``): 7x7/2 conv - BN - ReLU - 3x3/2 max-pool (torchvision).
    CIFAR stem (``cifar_stem=True``): 3x3/1 conv - BN - ReLU, no max-pool (SPQ's ``ResNet_Baseline``).
    Four stages of ``blocks_per_stage`` blocks with ``width * (1, 2, 4, 8)`` base features (64 ... 512
    as published; a smaller ``width`` gives a thin network for quick experiments), strides 1, 2, 2, 2.
    Output ``[batch, h, w, 8 * width * block.expansion]``; no pooling and no classifier.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks_per_stage: Sequence[int],
        *,
        in_channels: int = 3,
        cifar_stem: bool = False,
        width: int = 64,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.cifar_stem = cifar_stem
        stem_kernel, stem_stride = (3, 1) if cifar_stem else (7, 2)
        if width < 1:
            raise ValueError(f"ResNet width must be >= 1, got {width}")
        self.conv1 = _conv(in_channels, width, stem_kernel, stem_stride, dtype=dtype, rngs=rngs)
        self.bn1 = _batch_norm(width, dtype=dtype, rngs=rngs)
        in_features = width
        stage_widths = tuple(width * 2**stage for stage in range(4))
        for stage, (features, num_blocks) in enumerate(zip(stage_widths, blocks_per_stage)):
            blocks = []
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(block(in_features, features, stride, dtype=dtype, rngs=rngs))
                in_features = features * block.expansion
            setattr(self, f"layer{stage + 1}", nnx.List(blocks))
        self.num_features = in_features

    def stem(self, images: jax.Array) -> jax.Array:
        """conv1 - bn1 - ReLU (- max-pool for the ImageNet stem): the input of ``layer1``."""
        x = jax.nn.relu(self.bn1(self.conv1(images)))
        if not self.cifar_stem:
            x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        return x

    def __call__(self, images: jax.Array) -> jax.Array:
        x = self.stem(images)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x)
        return x


BackboneBuilder = Callable[..., nnx.Module]
"""``builder(*, in_channels, width, dtype, rngs) -> nnx.Module``: what :func:`register_backbone` takes.

The module maps float images ``[batch, H, W, in_channels]`` to a feature map ``[batch, h, w,
num_features]`` and has a ``num_features`` attribute; ``width`` is ``config.model.width`` (``None``
for the built-in ResNets, which keep their published widths).
"""


def _small_cnn(*, in_channels, width, dtype, rngs):
    return SmallCNN(in_channels, width=width or 32, dtype=dtype, rngs=rngs)


def _resnet(block, blocks_per_stage, cifar_stem):
    def build(*, in_channels, width, dtype, rngs):
        return ResNet(block, blocks_per_stage, in_channels=in_channels, cifar_stem=cifar_stem, width=width or 64,
                      dtype=dtype, rngs=rngs)

    return build


BACKBONES: dict[str, BackboneBuilder] = {
    "small_cnn": _small_cnn,
    "cifar_resnet18": _resnet(BasicBlock, (2, 2, 2, 2), True),
    "resnet50": _resnet(Bottleneck, (3, 4, 6, 3), False),
    "resnet101": _resnet(Bottleneck, (3, 4, 23, 3), False),
}
"""``config.model.backbone`` name -> builder; extend with :func:`register_backbone`."""

# Backbones whose ``config.model.width`` is passed on; the ResNets keep their published widths
# (pretrained weights fit them).
_WIDTH_FROM_CONFIG = {"small_cnn"}


def register_backbone(name: str, builder: BackboneBuilder, *, takes_width: bool = True) -> BackboneBuilder:
    """Makes ``config.model.backbone = name`` build its backbone with ``builder`` (see :data:`BackboneBuilder`).

    ``takes_width``: ``config.model.width`` sets the width (else the builder gets ``None``). A name that is taken
    is an error (no silent replacement of a built-in backbone). Returns ``builder``.
    """
    if name in BACKBONES:
        raise ValueError(f"backbone {name!r} is already registered")
    BACKBONES[name] = builder
    if takes_width:
        _WIDTH_FROM_CONFIG.add(name)
    return builder


def takes_config_width(name: str) -> bool:
    """Whether ``config.model.width`` sets this backbone's width (small_cnn: yes; the ResNets keep
    their published widths, which pretrained weights fit)."""
    return name in _WIDTH_FROM_CONFIG


def build_backbone(
    name: str, *, in_channels: int, width: int | None = None, dtype=jnp.float32, rngs: nnx.Rngs
) -> nnx.Module:
    """The backbone called ``name`` (a key of :data:`BACKBONES`).

    ``width`` is the base number of features (``None``: small_cnn 32, the ResNets 64 as published;
    a thin ResNet for tests comes from passing it here).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown model.backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name](in_channels=in_channels, width=width, dtype=dtype, rngs=rngs)
