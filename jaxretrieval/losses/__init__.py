"""Losses for learning to hash and listwise retrieval: pure functions of arrays, in the style of optax.

Every loss takes arrays and keyword-only hyperparameters and returns one value per example (or per
query/anchor) unless its docstring says otherwise; reduce with :func:`masked_mean`. Batch-coupled
losses (``spq_loss``, ``map_q_loss``, the baselines) work on global arrays under ``jax.jit``: with the
batch sharded over a mesh axis each device keeps its rows of the batch x batch matrices.

Bad input never reads as a good loss. Hyperparameters are checked against their documented ranges
at the boundary (ValueError or TypeError naming the argument, its value and the range); NaN, +-inf
or out-of-contract arrays raise ValueError when called eagerly and give NaN under ``jax.jit``, where
values cannot be checked. Entries masked out with ``where=`` reach neither the value nor the
gradient, and large finite inputs give the right value (or +inf where it exceeds the dtype), never NaN.

Example (CSQ on a toy batch)::

    >>> import jax, jax.numpy as jnp
    >>> from jaxretrieval import losses
    >>> logits = jnp.array([[0.3, -1.2, 2.0, 0.1], [-0.5, 0.8, -1.1, 1.4]])
    >>> centers = jnp.array([[1, -1, 1, 1], [-1, 1, -1, 1]])
    >>> loss, grads = jax.value_and_grad(lambda u: losses.csq_loss(u, centers).mean())(logits)
    >>> grads.shape
    (2, 4)
"""
from jaxretrieval.losses._baselines import pairwise_likelihood_loss, triplet_margin_loss
from jaxretrieval.losses._csq import csq_loss
from jaxretrieval.losses._map_q import batch_quantized_ap, map_q_loss, quantized_ap
from jaxretrieval.losses._reduce import masked_mean, weighted_mean
from jaxretrieval.losses._spq import soft_quantize, spq_loss

__all__ = [
    "batch_quantized_ap",
    "csq_loss",
    "map_q_loss",
    "masked_mean",
    "pairwise_likelihood_loss",
    "quantized_ap",
    "soft_quantize",
    "spq_loss",
    "triplet_margin_loss",
    "weighted_mean",
]
