"""SPQ (Jang and Cho, ICCV 2021): self-supervised product quantization, no labels."""
from __future__ import annotations

from jaxretrieval import index as index_lib
from jaxretrieval import losses
from jaxretrieval.data import augment
from jaxretrieval.methods.base import Method
from jaxretrieval.methods.inputs import InputTransform, per_sample

__all__ = ["SPQ"]


class SPQ(Method):
    """Cross-quantized contrastive learning over two SimCLR views, on the PQ head.

    Hyperparameters (``config.loss``): the soft-quantization temperature (it multiplies squared
    distances), the NT-Xent temperature, and the retrieval ``distance``: ``"spq"`` (the sum of
    unsquared per-book distances, the reference) or ``"squared_l2"`` (faiss). Training always uses
    SPQ's own two-view recipe (:func:`jaxretrieval.data.augment.spq_views`), then the normalisation
    of ``config.augment``. Retrieval: the database is stored as PQ codes of the model's codebooks,
    queries stay continuous (asymmetric distance, ascending; :class:`jaxretrieval.index.PQIndex`).
    """

    name = "spq"
    head = "pq"
    loss_defaults = {"quantization_temperature": 5.0, "contrastive_temperature": 0.5, "distance": "spq"}

    def __init__(self, *, inputs: InputTransform, quantization_temperature: float = 5.0,
                 contrastive_temperature: float = 0.5, distance: str = "spq"):
        super().__init__(inputs=inputs)
        self.quantization_temperature = quantization_temperature
        self.contrastive_temperature = contrastive_temperature
        self.distance = distance

    def loss(self, model, batch, extras, key):
        del extras
        view_a, view_b = per_sample(augment.spq_views, key, batch["image"], num_views=2)
        features_a = model(self.inputs.normalize(view_a))
        features_b = model(self.inputs.normalize(view_b))
        codebooks = model.head.codebooks[...]
        quantized_a = losses.soft_quantize(features_a, codebooks, temperature=self.quantization_temperature)
        quantized_b = losses.soft_quantize(features_b, codebooks, temperature=self.quantization_temperature)
        loss = losses.spq_loss(features_a, features_b, quantized_a, quantized_b, temperature=self.contrastive_temperature)
        return loss, {"loss": loss}

    def new_index(self, model) -> index_lib.PQIndex:
        return index_lib.PQIndex(model.head.codebooks[...], distance=self.distance)
