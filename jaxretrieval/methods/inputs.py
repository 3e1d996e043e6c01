"""How a method turns a batch of uint8 images into model inputs: evaluation input and training views.

Built from ``config.augment``; a method owns one (:attr:`jaxretrieval.methods.Method.inputs`), so the
trainer and the encoder never read augmentation settings themselves.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxretrieval.data import augment

__all__ = ["AUGMENTATIONS", "InputTransform", "per_sample"]

AUGMENTATIONS = ("hashing", "none")

Array = jax.Array


def per_sample(view_fn: Callable, key: Array, images_uint8: Array, *, num_views: int = 1):
    """``view_fn(key, images)`` (``num_views`` outputs) on a batch maybe sharded over an Explicit axis.

    The augmentations draw per-sample randomness replicated and vmap it against the images; with
    the batch sharded over an Explicit axis that mix is rejected, so the call runs with automatic
    sharding propagation (``auto_axes``) and its outputs come back sharded like the batch. The values
    do not depend on the sharding.
    """
    batch_axis = jax.typeof(images_uint8).sharding.spec
    batch_axis = batch_axis[0] if len(batch_axis) else None
    if batch_axis is None:
        return view_fn(key, images_uint8)
    out_sharding = jax.sharding.PartitionSpec(batch_axis)
    if num_views > 1:
        out_sharding = (out_sharding,) * num_views
    return jax.sharding.auto_axes(view_fn, out_sharding=out_sharding)(key, images_uint8)


@dataclasses.dataclass(frozen=True)
class InputTransform:
    """Normalisation and the training augmentation of ``config.augment``.

    Attributes:
      augmentation: ``"hashing"`` (padded random crop + horizontal flip, the hashing papers' view) or
        ``"none"``.
      crop_padding: pixels of padding around the random crop.
      flip: random horizontal flips.
      mean, std: per-channel normalisation after scaling to [0, 1]; empty = inputs stay in [0, 1].
    """

    augmentation: str = "hashing"
    crop_padding: int = 4
    flip: bool = True
    mean: Sequence[float] = ()
    std: Sequence[float] = ()

    def __post_init__(self):
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"config.augment.name must be one of {AUGMENTATIONS}, got {self.augmentation!r}")
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))

    @classmethod
    def from_config(cls, augment_config) -> InputTransform:
        """From ``config.augment`` (``name``, ``crop_padding``, ``flip``, ``mean``, ``std``)."""
        return cls(
            augmentation=augment_config.name,
            crop_padding=int(augment_config.crop_padding),
            flip=bool(augment_config.flip),
            mean=tuple(augment_config.mean),
            std=tuple(augment_config.std),
        )

    def normalize(self, images: Array) -> Array:
        """Float images in [0, 1] -> normalised by ``mean`` / ``std`` (unchanged when both are empty)."""
        if not self.mean and not self.std:
            return images
        return augment.normalize(images, jnp.asarray(self.mean, jnp.float32), jnp.asarray(self.std, jnp.float32))

    def model_input(self, images_uint8: Array) -> Array:
        """Evaluation input: uint8 ``[B, H, W, C]`` -> float32 in [0, 1], normalised when configured."""
        return self.normalize(augment.to_float(images_uint8))

    def training_view(self, key: Array, images_uint8: Array) -> Array:
        """One augmented training view per image, normalised."""
        if self.augmentation == "none":
            return self.normalize(augment.to_float(images_uint8))
        view_fn = functools.partial(augment.hashing_train_view, crop_padding=self.crop_padding, flip=self.flip)
        return self.normalize(per_sample(view_fn, key, images_uint8))
