"""Classic unsupervised hashing baselines: LSH by random hyperplanes and PCA-ITQ.

Both are linear hashes ``b(x) = sign((x - mean) W)`` (``>= 0`` gives +1), held in one small frozen
dataclass, :class:`LinearHash`, registered as a JAX pytree so ``encode`` also runs under ``jax.jit``.
They are the unsupervised baselines SPQ is compared with, over pixel or backbone features.

References:
  Charikar, "Similarity Estimation Techniques from Rounding Algorithms", STOC 2002 (random hyperplanes).
  Gong and Lazebnik, "Iterative Quantization: A Procrustean Approach to Learning Binary Codes", CVPR 2011.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval import codes

__all__ = ["LinearHash", "lsh_fit", "itq_fit"]


@dataclasses.dataclass(frozen=True)
class LinearHash:
    """A linear hash ``codes = sign((features - mean) @ projection)``, with ``sign(0) = +1``.

    Attributes:
      mean: ``[dim]`` float32 offset subtracted first (the training mean, or zeros).
      projection: ``[dim, num_bits]`` float32 projection.
    """

    mean: jax.Array
    projection: jax.Array

    @property
    def num_bits(self) -> int:
        return self.projection.shape[1]

    def project(self, features: jax.Array) -> jax.Array:
        """``[n, dim]`` features -> ``[n, num_bits]`` float32 real projections (before the sign)."""
        features = jnp.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.projection.shape[0]:
            raise ValueError(f"features must have shape [n, {self.projection.shape[0]}], got {features.shape}")
        return (features.astype(jnp.float32) - self.mean) @ self.projection

    def encode(self, features: jax.Array) -> jax.Array:
        """``[n, dim]`` features -> ``[n, num_bits]`` int8 codes in ``{-1, +1}``."""
        return codes.sign_codes(self.project(features))

    def quantization_error(self, features: jax.Array) -> float:
        """Mean over samples of ``||encode(x) - project(x)||^2``: ITQ's objective (lower is better)."""
        projected = self.project(features)
        return float(jnp.mean(jnp.sum((codes.sign_codes(projected) - projected) ** 2, axis=1)))


jax.tree_util.register_dataclass(LinearHash, data_fields=["mean", "projection"], meta_fields=[])


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def lsh_fit(key: jax.Array, dim: int, num_bits: int, *, center=None) -> LinearHash:
    """Locality-sensitive hashing by random hyperplanes through ``center``.

    Each bit is the side of a hyperplane with a standard normal direction: for centred data, two
    vectors at angle ``theta`` differ in a bit with probability ``theta / pi``.

    Args:
      key: ``jax.random`` key for the directions.
      dim: feature dimension.
      num_bits: code length.
      center: optional ``[dim]`` point the hyperplanes pass through (e.g. the training features'
        mean; non-negative features such as ReLU outputs need it). Default: the origin.

    Returns:
      A :class:`LinearHash`.

    Example:

      >>> hash_ = lsh_fit(jax.random.key(0), dim=3, num_bits=8)
      >>> hash_.encode(jnp.ones((2, 3))).shape
      (2, 8)

    References:
      Charikar, "Similarity Estimation Techniques from Rounding Algorithms", STOC 2002.
    """
    dim, num_bits = _check_size("dim", dim), _check_size("num_bits", num_bits)
    mean = jnp.zeros((dim,), jnp.float32) if center is None else jnp.asarray(center, jnp.float32)
    if mean.shape != (dim,) or not bool(jnp.isfinite(mean).all()):
        raise ValueError(f"center must be a finite [{dim}] vector, got shape {mean.shape}")
    return LinearHash(mean=mean, projection=jax.random.normal(key, (dim, num_bits), jnp.float32))


def itq_fit(features, num_bits: int, *, key: jax.Array, num_iterations: int = 50) -> LinearHash:
    r"""PCA-ITQ: PCA to ``num_bits`` dimensions, then a rotation that minimises quantization error.

    With ``V = (X - mean) P`` the centred data projected on the top ``num_bits`` principal
    directions, ITQ alternates, from a random orthogonal ``R``:

    .. math:: B = \operatorname{sign}(V R), \qquad R = \arg\min_{R^\top R = I} \|B - V R\|_F^2 = U W^\top
       \ \text{ where } V^\top B = U \Sigma W^\top,

    so the error ``||B - V R||^2`` never increases. The hash is ``sign((x - mean) P R)``.

    Args:
      features: ``[n, dim]`` training features, ``dim >= num_bits``.
      num_bits: code length.
      key: ``jax.random`` key for the initial rotation.
      num_iterations: alternations (50 in the paper).

    Returns:
      A :class:`LinearHash` with ``projection = P R``.

    Example:

      >>> features = jax.random.normal(jax.random.key(0), (100, 6))
      >>> itq_fit(features, 4, key=jax.random.key(1)).encode(features[:2]).shape
      (2, 4)

    References:
      Gong and Lazebnik, "Iterative Quantization: A Procrustean Approach to Learning Binary Codes",
      CVPR 2011.
    """
    features = np.asarray(features)
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.number):
        raise ValueError(f"features must be a real [n, dim] array, got {features.dtype} {features.shape}")
    num_bits = _check_size("num_bits", num_bits)
    if features.shape[0] < 2 or features.shape[1] < num_bits:
        raise ValueError(f"features {features.shape} need n >= 2 and dim >= num_bits={num_bits}")
    if not np.isfinite(features).all():
        raise ValueError(f"features contain NaN or infinite values (shape {features.shape})")
    if isinstance(num_iterations, bool) or not isinstance(num_iterations, (int, np.integer)) or num_iterations < 0:
        raise ValueError(f"num_iterations must be an int >= 0, got {num_iterations!r}")
    features = features.astype(np.float64)
    mean = features.mean(axis=0)
    centred = features - mean
    # Principal directions: eigenvectors of the covariance, largest eigenvalues first.
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    principal = eigenvectors[:, np.argsort(eigenvalues)[::-1][:num_bits]]
    projected = centred @ principal
    rotation, _ = np.linalg.qr(np.asarray(jax.random.normal(key, (num_bits, num_bits)), np.float64))
    for _ in range(num_iterations):
        codes = np.where(projected @ rotation >= 0, 1.0, -1.0)
        left, _, right_transposed = np.linalg.svd(projected.T @ codes)
        rotation = left @ right_transposed
    return LinearHash(mean=jnp.asarray(mean, jnp.float32), projection=jnp.asarray(principal @ rotation, jnp.float32))
