"""mAP_Q (Revaud et al., ICCV 2019): listwise training by a differentiable, histogram-binned AP."""
from __future__ import annotations

from jaxretrieval import index as index_lib
from jaxretrieval import losses
from jaxretrieval.methods.base import ListwiseMethod
from jaxretrieval.methods.inputs import InputTransform

__all__ = ["MapQ"]


class MapQ(ListwiseMethod):
    """1 - mean AP_Q over the batch (every other image ranked for every query), on the AP head.

    Hyperparameters (``config.loss``): histogram bins over the cosine-similarity range
    ``[score_min, score_max]`` and naver's tie-aware variant. Supports multistage backprop.
    Retrieval: the L2-normalised descriptors ranked by inner product = cosine similarity
    (descending; :class:`jaxretrieval.index.FlatIndex`); the evaluation also scores their sign
    codes by Hamming distance (metrics prefixed ``binary_``). PCA-whitening (power 0.25) is fitted
    on the training descriptors after training (:meth:`finalize`).
    """

    name = "map_q"
    head = "ap"
    loss_defaults = {"num_bins": 20, "score_min": -1.0, "score_max": 1.0, "tie_aware": False}

    def __init__(self, *, inputs: InputTransform, num_bins: int = 20, score_min: float = -1.0,
                 score_max: float = 1.0, tie_aware: bool = False):
        super().__init__(inputs=inputs)
        self.num_bins = num_bins
        self.score_range = (score_min, score_max)
        self.tie_aware = tie_aware

    def listwise_loss(self, embeddings, labels):
        return losses.map_q_loss(
            embeddings, labels, num_bins=self.num_bins, score_range=self.score_range, tie_aware=self.tie_aware
        )

    def finalize(self, model, train_representations):
        model.head.fit_whitening(train_representations)

    def new_index(self, model) -> index_lib.FlatIndex:
        return index_lib.FlatIndex(model.head.fc.out_features, metric="inner_product")

    def evaluation_indexes(self, model):
        return {"": self.new_index(model), "binary_": index_lib.HammingIndex(model.head.fc.out_features)}
