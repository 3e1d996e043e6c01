"""Methods that train the hash head: CSQ and the pairwise-likelihood and triplet baselines.

They share the head (pre-tanh logits ``[B, num_bits]``), the encoding and the retrieval rule: codes
``sign(logits)`` with ``sign(0) = +1``, searched by Hamming distance (ascending, ties by ascending
database index) in a :class:`jaxretrieval.index.HammingIndex`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxretrieval import centers as centers_lib
from jaxretrieval import index as index_lib
from jaxretrieval import losses
from jaxretrieval.methods.base import Method
from jaxretrieval.methods.inputs import InputTransform

__all__ = ["CSQ", "HashMethod", "PairwiseLikelihood", "TripletMargin"]


class HashMethod(Method):
    """A method on the hash head, retrieved by Hamming distance between sign codes."""

    head = "hash"

    def new_index(self, model) -> index_lib.HammingIndex:
        return index_lib.HammingIndex(model.head.output.out_features)


class CSQ(HashMethod):
    """Central Similarity Quantization (Yuan et al., CVPR 2020): hash centers, central BCE + quantization.

    ``quantization``: ``"squared"`` (the official code) or ``"log_cosh"`` (the paper); 0.05 is the
    official ResNet-50 runs' weight. Extras: the ``centers`` ``[num_classes, num_bits]`` (Hadamard rows
    or random balanced rows, :func:`jaxretrieval.centers.hash_centers`) and one fixed +-1
    ``tie_breaker`` for the zero votes of multi-label centers.
    """

    name = "csq"
    loss_defaults = {"quantization_weight": 0.05, "quantization": "squared"}

    def __init__(self, *, inputs: InputTransform, num_bits: int, quantization_weight: float = 0.05,
                 quantization: str = "squared"):
        super().__init__(inputs=inputs)
        self.num_bits = int(num_bits)
        self.quantization_weight = quantization_weight
        self.quantization = quantization

    @classmethod
    def from_config(cls, config):
        return cls(inputs=InputTransform.from_config(config.augment), num_bits=config.model.num_bits,
                   **config.loss.to_dict())

    def init_extras(self, num_classes, key):
        centers_key, tie_key = jax.random.split(key)
        hash_centers = centers_lib.hash_centers(num_classes, self.num_bits, key=centers_key)
        # One fixed +-1 vector breaks the zero votes of multi-label centers for the whole run.
        tie_breaker = jnp.where(jax.random.bernoulli(tie_key, 0.5, (self.num_bits,)), 1.0, -1.0)
        return {"centers": jnp.asarray(hash_centers, jnp.float32), "tie_breaker": tie_breaker}

    def loss(self, model, batch, extras, key):
        logits = model(self.inputs.training_view(key, batch["image"]))
        labels = batch["label"]
        labelled = jnp.sum(labels, axis=-1) > 0  # an example without a label has no target center
        targets = centers_lib.multilabel_centers(
            labels, extras["centers"], tie_breaker=extras["tie_breaker"], where=labelled
        )
        per_example = losses.csq_loss(
            logits, targets, quantization_weight=self.quantization_weight, quantization=self.quantization
        )
        loss = losses.masked_mean(per_example, labelled)
        return loss, {"loss": loss, "mean_abs_tanh": jnp.mean(jnp.abs(jnp.tanh(logits)))}


class PairwiseLikelihood(HashMethod):
    """The pairwise-likelihood baseline (DPSH / HashNet's loss without weighting) on ``tanh(logits)``."""

    name = "pairwise"
    loss_defaults = {"quantization_weight": 0.0}

    def __init__(self, *, inputs: InputTransform, quantization_weight: float = 0.0):
        super().__init__(inputs=inputs)
        self.quantization_weight = quantization_weight

    def loss(self, model, batch, extras, key):
        del extras
        codes = jnp.tanh(model(self.inputs.training_view(key, batch["image"])))
        loss = jnp.mean(losses.pairwise_likelihood_loss(codes, batch["label"], quantization_weight=self.quantization_weight))
        return loss, {"loss": loss}


class TripletMargin(HashMethod):
    """The triplet-margin baseline on ``tanh(logits)``.

    Defaults: tanh outputs are not unit vectors, so the distance is cosine with FaceNet's margin of 0.2
    in squared L2 on the unit sphere (= 2 x cosine distance), i.e. 0.1; a squared-L2 margin of 0.2
    between 64-dim tanh codes (distances up to 256) would be no margin at all. Batch-all mining:
    batch-hard mining collapsed the small CNN trained from scratch on CIFAR-10 (every output equal;
    docs/results.md).
    """

    name = "triplet"
    loss_defaults = {"margin": 0.1, "mining": "batch_all", "distance": "cosine"}

    def __init__(self, *, inputs: InputTransform, margin: float = 0.1, mining: str = "batch_all", distance: str = "cosine"):
        super().__init__(inputs=inputs)
        self.margin, self.mining, self.distance = margin, mining, distance

    def loss(self, model, batch, extras, key):
        del extras
        codes = jnp.tanh(model(self.inputs.training_view(key, batch["image"])))
        per_anchor = losses.triplet_margin_loss(
            codes, batch["label"], margin=self.margin, mining=self.mining, distance=self.distance
        )
        loss = jnp.mean(per_anchor)
        return loss, {"loss": loss}
