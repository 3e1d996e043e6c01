"""Images -> representations with an eval-mode model, batch by batch, on the run's mesh."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from jaxretrieval import data as data_lib
from jaxretrieval import sharding
from jaxretrieval.methods import Method

__all__ = ["Encoded", "Encoder"]


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Representations of a subset, host numpy, rows in the subset's order (unreadable images left out).

    Attributes:
      representations: ``[num_examples, D]`` float32 (hash logits, PQ descriptors, AP descriptors).
      labels: ``[num_examples, num_classes]`` float32 multi-hot.
      indices: ``[num_examples]`` int64 indices into the subset's source (to fetch images).
    """

    representations: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


class Encoder:
    """Encodes images with ``method.encode`` under one jitted function per batch shape.

    Args:
      method: the run's method (its input transform and encoding).
      model: the model in eval mode, its arrays placed on ``mesh`` (replicated).
      mesh: the device mesh; batches are sharded over its ``"data"`` axis.
      batch_size: the global batch size (``config.eval_batch_size``).
    """

    def __init__(self, method: Method, model: nnx.Module, mesh: jax.sharding.Mesh, *, batch_size: int):
        self.mesh = mesh
        self.batch_size = int(batch_size)
        self._graphdef, self._variables = nnx.split(model)

        def encode(variables, images):
            return method.encode(nnx.merge(self._graphdef, variables), images)

        self._encode = jax.jit(encode)

    def encode(self, subset: data_lib.Subset) -> Encoded:
        """All examples of ``subset`` (every process gets the whole result)."""
        outputs, labels, indices, masks = [], [], [], []
        with jax.set_mesh(self.mesh):
            for local in data_lib.eval_batches(subset, global_batch_size=self.batch_size):
                batch = sharding.global_batch(local, self.mesh)
                encoded = self._encode(self._variables, batch["image"])
                output, label, index, mask = sharding.to_host((encoded, batch["label"], batch["index"], batch["mask"]))
                outputs.append(output)
                labels.append(label)
                indices.append(index)
                masks.append(mask)
        mask = np.concatenate(masks).astype(bool)
        return Encoded(
            representations=np.concatenate(outputs)[mask].astype(np.float32),
            labels=np.concatenate(labels)[mask],
            indices=np.concatenate(indices)[mask],
        )

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """``images`` uint8 ``[N, H, W, C]`` -> ``[N, D]`` representations (padded to whole batches)."""
        outputs = []
        with jax.set_mesh(self.mesh):
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                padded = np.zeros((self.batch_size, *images.shape[1:]), np.uint8)
                padded[: len(chunk)] = chunk
                batch = sharding.global_batch({"image": padded}, self.mesh)
                outputs.append(sharding.to_host(self._encode(self._variables, batch["image"]))[: len(chunk)])
        return np.concatenate(outputs).astype(np.float32)
