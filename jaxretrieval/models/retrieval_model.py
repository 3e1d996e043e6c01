"""The model wrapper: a backbone followed by a head."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class RetrievalModel(nnx.Module):
    """``head(backbone(images))``; the two halves are the attributes ``backbone`` and ``head``."""

    def __init__(self, backbone: nnx.Module, head: nnx.Module, *, in_channels: int):
        self.backbone = backbone
        self.head = head
        self.in_channels = in_channels

    def __call__(self, images: jax.Array) -> jax.Array:
        if images.ndim != 4:
            raise ValueError(f"model input must be images [batch, height, width, channels], got shape {images.shape}")
        channels = images.shape[-1]
        if channels == 1 and self.in_channels == 3:
            images = jnp.repeat(images, 3, axis=-1)  # grayscale -> RGB, as torchvision's Grayscale(3)
        elif channels != self.in_channels:
            raise ValueError(
                f"model expects {self.in_channels}-channel images (or 1-channel for a 3-channel model), "
                f"got shape {images.shape}"
            )
        return self.head(self.backbone(images))
