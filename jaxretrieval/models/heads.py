"""Retrieval heads (Flax NNX): backbone feature maps ``[batch, h, w, features]`` -> one array per image.

- ``HashHead`` (CSQ): global average pool, Linear-ReLU-Dropout-Linear-ReLU-Linear to ``num_bits``;
  returns pre-tanh logits ``[batch, num_bits]`` (codes are ``logits >= 0``).
- ``PQHead`` (SPQ): global average pool, optional Linear-ReLU projection (SPQ's ``fc_out``
  Linear(512, 512) + ReLU), Linear without bias to ``M * L``; returns the descriptor ``x``
  ``[batch, M * L]`` and owns ``codebooks`` ``[M, K, L]``.
- ``APHead`` (mAP_Q): GeM pooling with trainable ``p``, Linear to ``descriptor_dim``, L2 normalisation;
  in eval mode the learned PCA-whitening (power 0.25) is applied and the result re-normalised.

All heads return float32 for float32 and bfloat16 compute (losses and metrics run in float32), float64
for float64 compute (numerical checks under ``jax_enable_x64``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_NORM_EPSILON = 1e-12
_GEM_EPSILON = 1e-6  # naver's GeneralizedMeanPooling clamps activations at 1e-6 before the power


def global_average_pool(feature_maps: jax.Array) -> jax.Array:
    """``[batch, h, w, features]`` -> ``[batch, features]``, the mean over the spatial positions."""
    return jnp.mean(feature_maps, axis=(1, 2))


def _at_least_float32(x: jax.Array) -> jax.Array:
    """bfloat16 -> float32; float32 and float64 unchanged."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def generalized_mean_pool(feature_maps: jax.Array, p: jax.Array, *, epsilon: float = _GEM_EPSILON) -> jax.Array:
    """GeM pooling: ``(mean_{h,w} max(x, epsilon)^p)^(1/p)`` per feature, ``[batch, h, w, f]`` -> ``[batch, f]``.

    ``p = 1`` is average pooling (of the clamped activations), ``p -> inf`` tends to max pooling.

    >>> import jax.numpy as jnp
    >>> maps = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
    >>> generalized_mean_pool(maps, jnp.array(1.0))
    Array([[2.5]], dtype=float32)

    References:
        Radenovic, Tolias, Chum, "Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2018.
    """
    clamped = jnp.maximum(_at_least_float32(feature_maps), epsilon)
    return jnp.mean(clamped**p, axis=(1, 2)) ** (1.0 / p)


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """``x / ||x||`` along ``axis``; a zero vector stays zero (finite value and gradient)."""
    squared_norm = jnp.sum(x * x, axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(squared_norm, _NORM_EPSILON**2))


class HashHead(nnx.Module):
    """CSQ's hash layer; returns pre-tanh logits ``[batch, num_bits]``.

    Dropout is active only in ``train()`` mode and draws from the ``"dropout"`` rng stream.
    """

    def __init__(
        self,
        in_features: int,
        num_bits: int,
        *,
        hidden_dim: int = 1024,
        dropout: float = 0.5,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.hidden1 = nnx.Linear(in_features, hidden_dim, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.hidden2 = nnx.Linear(hidden_dim, hidden_dim, dtype=dtype, rngs=rngs)
        self.output = nnx.Linear(hidden_dim, num_bits, dtype=dtype, rngs=rngs)

    def __call__(self, feature_maps: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.hidden1(global_average_pool(feature_maps)))
        x = jax.nn.relu(self.hidden2(self.dropout(x)))
        return _at_least_float32(self.output(x))


class PQHead(nnx.Module):
    """SPQ's quantization head; returns the continuous descriptor ``x`` ``[batch, num_books * word_dim]``.

    ``codebooks`` (``nnx.Param`` ``[num_books, num_words, word_dim]``) are used by the loss (soft
    quantization) and the index (hard assignment); they are initialised as in the official code,
    ``xavier_normal_(gain=0.1)`` of its ``[num_words, num_books * word_dim]`` matrix. ``hidden_dim > 0``
    adds SPQ's Linear(in, hidden_dim) + ReLU (its backbone's ``fc_out``) before the projection;
    ``hidden_dim = 0`` projects the pooled features directly.
    """

    def __init__(
        self,
        in_features: int,
        *,
        num_books: int,
        num_words: int,
        word_dim: int,
        hidden_dim: int = 512,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.hidden = nnx.Linear(in_features, hidden_dim, dtype=dtype, rngs=rngs) if hidden_dim > 0 else None
        descriptor_dim = num_books * word_dim
        # xavier_normal_(gain=0.1): std = 0.1 * sqrt(2 / (fan_in + fan_out)), i.e. variance 0.01 / fan_avg.
        self.projection = nnx.Linear(
            hidden_dim if hidden_dim > 0 else in_features,
            descriptor_dim,
            use_bias=False,
            kernel_init=nnx.initializers.variance_scaling(0.01, "fan_avg", "normal"),
            dtype=dtype,
            rngs=rngs,
        )
        codebook_std = 0.1 * np.sqrt(2.0 / (num_words + descriptor_dim))
        self.codebooks = nnx.Param(
            codebook_std * jax.random.normal(rngs.params(), (num_books, num_words, word_dim), jnp.float32)
        )

    def __call__(self, feature_maps: jax.Array) -> jax.Array:
        x = global_average_pool(feature_maps)
        if self.hidden is not None:
            x = jax.nn.relu(self.hidden(x))
        return _at_least_float32(self.projection(x))


class Whitening(nnx.Variable):
    """Non-trainable state learned after training (PCA-whitening); saved with the checkpoint."""


class APHead(nnx.Module):
    """Descriptor head of Revaud et al.: GeM (trainable ``p``) -> Linear -> L2, ``[batch, descriptor_dim]``.

    Outputs are L2-normalised, so dot products are cosine similarities (descending = more similar). In
    ``eval()`` mode the whitening learned by ``fit_whitening`` is applied, then the result re-normalised;
    before fitting, whitening is the identity (mean 0, projection I), so eval equals train output.
    """

    def __init__(self, in_features: int, descriptor_dim: int, *, gem_p: float = 3.0, dtype=jnp.float32, rngs: nnx.Rngs):
        self.gem_p = nnx.Param(jnp.asarray(gem_p, jnp.float32))
        self.fc = nnx.Linear(in_features, descriptor_dim, dtype=dtype, rngs=rngs)
        self.whitening_mean = Whitening(jnp.zeros((descriptor_dim,), jnp.float32))
        self.whitening_projection = Whitening(jnp.eye(descriptor_dim, dtype=jnp.float32))
        # Set by model.train() / model.eval() (nnx's set_attributes): True = evaluation, whitening on.
        self.deterministic = False

    def __call__(self, feature_maps: jax.Array) -> jax.Array:
        pooled = generalized_mean_pool(feature_maps, self.gem_p[...])
        descriptors = l2_normalize(_at_least_float32(self.fc(pooled)))
        if not self.deterministic:
            return descriptors
        centered = descriptors - self.whitening_mean[...]
        return l2_normalize(centered @ self.whitening_projection[...])

    def fit_whitening(self, descriptors, *, power: float = 0.25) -> None:
        """Learn PCA-whitening from training descriptors ``[num_descriptors, descriptor_dim]`` (numpy).

        The recipe of naver/deep-image-retrieval (``learn_pca`` + ``whiten_features``, ``whitenp``):
        centre on the mean, project on the principal axes (scikit-learn's full-SVD PCA) and divide each
        component by its explained variance to the power ``power`` (0.25; 0.5 is full whitening).
        Components beyond the rank of the centred data (at most ``num_descriptors - 1``) get zero
        columns, so the output keeps ``descriptor_dim`` entries. Computed in float64 on the host.
        """
        descriptors = np.asarray(descriptors, dtype=np.float64)
        descriptor_dim = self.whitening_mean.shape[0]
        if descriptors.ndim != 2 or descriptors.shape[1] != descriptor_dim:
            raise ValueError(
                f"fit_whitening: descriptors must be [num_descriptors, {descriptor_dim}], got shape {descriptors.shape}"
            )
        if descriptors.shape[0] < 2:
            raise ValueError(f"fit_whitening needs at least 2 descriptors, got {descriptors.shape[0]}")
        if not np.all(np.isfinite(descriptors)):
            raise ValueError("fit_whitening: descriptors contain NaN or Inf")
        mean = descriptors.mean(axis=0)
        _, singular_values, components = np.linalg.svd(descriptors - mean, full_matrices=False)
        variances = singular_values**2 / (descriptors.shape[0] - 1)
        if variances[0] == 0.0:
            raise ValueError("fit_whitening: all descriptors are identical, there is no direction to whiten")
        # Directions with (numerically) zero variance carry no information: drop them instead of
        # dividing by ~0.
        keep = variances > variances[0] * np.finfo(np.float32).eps
        projection = np.zeros((descriptor_dim, descriptor_dim))
        num_kept = int(keep.sum())
        projection[:, :num_kept] = components[:num_kept].T / variances[:num_kept] ** power
        self.whitening_mean[...] = jnp.asarray(mean, jnp.float32)
        self.whitening_projection[...] = jnp.asarray(projection, jnp.float32)
