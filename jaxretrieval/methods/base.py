"""What a training method is: the one interface the trainer, the evaluation, encode and query use.

A method owns its loss, the arrays it keeps beside the model (its *extras*, such as CSQ's hash
centers: part of the train state and the checkpoint), how an image becomes a representation, and its
retrieval rule: the kind of index its representations are searched with (Hamming codes, PQ codes or
float vectors, see :mod:`jaxretrieval.index`). Code outside a method asks it and never branches on
its name or head.

A method is built once from the run's config (:meth:`Method.from_config`): its hyperparameters are
the ``config.loss`` section, whose keys and defaults are :attr:`Method.loss_defaults`, and its input
transform is ``config.augment``'s. After that nothing of it reads the config.
"""
from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import ml_collections
import numpy as np
from flax import nnx

from jaxretrieval import index as index_lib
from jaxretrieval.methods.inputs import InputTransform

__all__ = ["Extras", "ListwiseMethod", "Method", "SearchIndex"]

Array = jax.Array
Extras = dict[str, Array]
SearchIndex = index_lib.HammingIndex | index_lib.PQIndex | index_lib.FlatIndex


class Method(abc.ABC):
    """One training method; subclass it and register it (:func:`jaxretrieval.methods.register_method`).

    Class attributes:
      name: ``config.method``, the registry key.
      head: the model head it trains (``config.model.head`` must match).
      loss_defaults: the method's ``config.loss`` section: every key it reads, with its default. The
        config schema builds ``config.loss`` from it, and :meth:`from_config` passes the section to
        the constructor as keyword arguments.

    Attributes:
      inputs: the :class:`~jaxretrieval.methods.inputs.InputTransform` of ``config.augment``.
    """

    name: ClassVar[str]
    head: ClassVar[str]
    loss_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, *, inputs: InputTransform):
        self.inputs = inputs

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> Method:
        """The method of a run's config: ``config.loss`` as keyword arguments, ``config.augment``'s inputs."""
        return cls(inputs=InputTransform.from_config(config.augment), **config.loss.to_dict())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # Training ---------------------------------------------------------------------------------------

    def init_extras(self, num_classes: int, key: Array) -> Extras:
        """Arrays kept in the train state and the checkpoint beside the model (default: none)."""
        del num_classes, key
        return {}

    @abc.abstractmethod
    def loss(self, model: nnx.Module, batch: dict[str, Array], extras: Extras, key: Array) -> tuple[Array, dict[str, Array]]:
        """``(scalar loss, metrics)`` of one training batch.

        ``model`` is in train mode; ``batch["image"]`` is uint8 ``[B, H, W, C]``, ``batch["label"]``
        multi-hot ``[B, num_classes]``; ``key`` is the step's randomness (augmentation).
        """

    finalize: Callable[[nnx.Module, np.ndarray], None] | None = None
    """``finalize(model, train_representations)``: fits something into the (host, eval-mode) model
    after training, before the last checkpoint, from the representations of the training set
    (mAP_Q's whitening); ``None`` (the default) when there is nothing to fit, so the trainer does
    not encode the training set for nothing."""

    # Retrieval --------------------------------------------------------------------------------------

    def encode(self, model: nnx.Module, images_uint8: Array) -> Array:
        """``[B, D]`` float representations of uint8 images (``model`` in eval mode)."""
        return model(self.inputs.model_input(images_uint8))

    @abc.abstractmethod
    def new_index(self, model: nnx.Module) -> SearchIndex:
        """The retrieval rule: an empty index that takes this method's representations as they come
        from :meth:`encode` (``index.add(database)``, ``index.search(queries, k)``). ``model`` holds
        host arrays (a PQ index reads its codebooks from it)."""

    def evaluation_indexes(self, model: nnx.Module) -> dict[str, SearchIndex]:
        """The indexes the evaluation scores, by metric-name prefix; ``""`` is :meth:`new_index`.

        A method adds others to report how its representations fare under another rule (mAP_Q: its
        sign-binarised descriptors as Hamming codes, prefix ``"binary_"``).
        """
        return {"": self.new_index(model)}


class ListwiseMethod(Method):
    """A method whose loss couples the whole batch through one embedding per image.

    Such a loss is :meth:`listwise_loss` of the embeddings of one augmented view per image, which is
    what multistage backprop (``config.micro_batch_size > 0``, :mod:`jaxretrieval.multistage`) needs:
    the embeddings are computed in micro-batches, the loss on all of them at once.
    """

    @abc.abstractmethod
    def listwise_loss(self, embeddings: Array, labels: Array) -> Array:
        """Scalar loss of ``[B, D]`` embeddings and ``[B, num_classes]`` multi-hot labels."""

    def training_views(self, key: Array, images_uint8: Array) -> Array:
        """The augmented model inputs of a batch (one view per image)."""
        return self.inputs.training_view(key, images_uint8)

    def loss(self, model, batch, extras, key):
        del extras
        loss = self.listwise_loss(model(self.training_views(key, batch["image"])), batch["label"])
        return loss, {"loss": loss}
