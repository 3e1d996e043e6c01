"""Multistage backpropagation: listwise losses over batches too large to keep every activation.

A listwise loss (mAP_Q) couples all ``B`` descriptors of a batch, so the whole batch must be embedded
before the loss exists; keeping the activations of ``B`` high-resolution images for the backward pass
is what limits ``B``. Revaud et al. split the backward pass into three stages; in JAX they are:

1. embed the batch micro-batch by micro-batch under ``lax.map``, keeping only the ``[B, D]``
   descriptors (no activations survive an iteration);
2. evaluate the loss on the full ``B x B`` problem and take its gradient with respect to the
   descriptors, ``g = dL/d descriptors`` (``[B, D]``, cheap);
3. per micro-batch, recompute the embedding and pull ``g`` back into the parameters with
   ``jax.vjp``, summing the parameter gradients in a ``lax.scan`` carry.

By the chain rule ``dL/dparams = sum_j (d descriptors_j / d params)^T g_j``, which is exactly the
gradient of the plain step; the price is one extra forward pass (as for ``jax.checkpoint``), and only
one micro-batch's activations are alive at any time.

Micro-batch ``j`` holds rows ``j, j + n, j + 2n, ...`` (``n`` micro-batches): with the batch sharded
in contiguous blocks over the mesh's data axis, every micro-batch is then spread evenly over all
devices, so each stage runs data-parallel with no resharding. ``embed_fn`` must treat examples
independently (eval-mode or frozen BatchNorm, no dropout), so the grouping does not change any value.

Speed on CPU: XLA:CPU (jax 0.10.2) runs the backward convolutions inside the stage-3 loop much more
slowly than the same convolutions outside a loop (jax-ml/jax#12868); with a small CNN here the
multistage step took about ten times as long as the plain one (docs/benchmarks/memory.md). Unrolling the
loop removes the slowdown but lets XLA schedule the micro-batches together, which gives the memory back,
so the loop stays. Accelerator timings have not been measured.

References:
  Revaud, Almazan, Rezende, de Souza. "Learning with Average Precision: Training Image Retrieval with
  a Listwise Loss." ICCV 2019, section 3.3 (multistage back-propagation).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["micro_batched_value_and_grad"]


def _split_micro_batches(images: jax.Array, num_micro_batches: int) -> jax.Array:
    """``[B, ...]`` -> ``[num_micro_batches, B // num_micro_batches, ...]``; micro-batch j = rows j::n."""
    micro_batch_size = images.shape[0] // num_micro_batches
    strided = images.reshape(micro_batch_size, num_micro_batches, *images.shape[1:])
    return jnp.swapaxes(strided, 0, 1)


def _merge_micro_batches(micro_batched: jax.Array) -> jax.Array:
    """Inverse of :func:`_split_micro_batches`: ``[n, m, ...]`` -> ``[n * m, ...]`` in row order."""
    num_micro_batches, micro_batch_size = micro_batched.shape[:2]
    interleaved = jnp.swapaxes(micro_batched, 0, 1)
    return interleaved.reshape(num_micro_batches * micro_batch_size, *micro_batched.shape[2:])


def _batch_shard_count(images: jax.Array) -> int:
    """Number of shards of the leading dimension in ``images``' type (Explicit mesh axes), else 1."""
    array_sharding = getattr(jax.typeof(images), "sharding", None)
    spec = getattr(array_sharding, "spec", ())
    if not spec or spec[0] is None:
        return 1
    axes = (spec[0],) if isinstance(spec[0], str) else spec[0]
    return math.prod(array_sharding.mesh.shape[axis] for axis in axes)


def micro_batched_value_and_grad(
    embed_fn: Callable[[Any, jax.Array], jax.Array],
    loss_fn: Callable[..., Any],
    *,
    micro_batch_size: int,
    has_aux: bool = False,
) -> Callable[..., tuple[Any, Any]]:
    """Value and parameter gradient of ``loss_fn(embed_fn(params, images), *loss_args)``, in micro-batches.

    The returned function equals

    ``jax.value_and_grad(lambda p: loss_fn(embed_fn(p, images), *loss_args), has_aux=has_aux)(params)``

    (up to float summation order) while holding the activations of only ``micro_batch_size`` images
    at a time (see the module docstring for the three stages). It is pure and works under ``jax.jit``,
    also with ``images`` sharded over a mesh's data axis.

    Args:
      embed_fn: ``embed_fn(params, images[micro_batch_size, ...]) -> descriptors[micro_batch_size, D]``,
        pure and per-example (model in eval / frozen-BatchNorm mode); ``params`` is a pytree of float
        arrays.
      loss_fn: ``loss_fn(descriptors[B, D], *loss_args) -> scalar`` (or ``(scalar, aux)`` with
        ``has_aux``), the listwise loss over the whole batch.
      micro_batch_size: images embedded at once; must divide the batch size ``B`` (and, when the batch
        is sharded, be a multiple of the number of batch shards).
      has_aux: ``loss_fn`` returns ``(loss, aux)``, as for ``jax.value_and_grad``.

    Returns:
      ``f(params, images[B, ...], *loss_args) -> (loss, grads)`` or ``((loss, aux), grads)``, with
      ``grads`` shaped like ``params``.

    Raises:
      ValueError: ``micro_batch_size`` is not a positive int, or does not divide ``B`` (at call time).

    Example::

        >>> import jax, jax.numpy as jnp
        >>> embed = lambda w, x: jnp.tanh(x @ w)
        >>> loss = lambda d, y: jnp.mean((d @ d.T - y) ** 2)
        >>> w = jax.random.normal(jax.random.key(0), (3, 2))
        >>> x = jax.random.normal(jax.random.key(1), (8, 3))
        >>> y = jnp.eye(8)
        >>> value, grads = micro_batched_value_and_grad(embed, loss, micro_batch_size=2)(w, x, y)
        >>> plain_value, plain_grads = jax.value_and_grad(lambda p: loss(embed(p, x), y))(w)
        >>> bool(jnp.allclose(value, plain_value)), bool(jnp.allclose(grads, plain_grads, rtol=1e-5))
        (True, True)
    """
    if isinstance(micro_batch_size, bool) or not isinstance(micro_batch_size, int) or micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be a positive int, got {micro_batch_size!r}")

    def value_and_grad(params, images, *loss_args):
        batch_size = images.shape[0] if images.ndim else 0
        if images.ndim == 0 or batch_size % micro_batch_size:
            raise ValueError(
                f"micro_batched_value_and_grad: the batch size {batch_size} (images shape {images.shape}) "
                f"is not divisible by micro_batch_size={micro_batch_size}"
            )
        shard_count = _batch_shard_count(images)
        if micro_batch_size % shard_count:
            raise ValueError(
                f"micro_batched_value_and_grad: micro_batch_size={micro_batch_size} must be a multiple of the "
                f"{shard_count} shards of the batch dimension (images sharding {jax.typeof(images).sharding.spec})"
            )
        micro_images = _split_micro_batches(images, batch_size // micro_batch_size)

        # Stage 1: descriptors only; nothing here is differentiated, so no activation is kept.
        descriptors = _merge_micro_batches(jax.lax.map(lambda chunk: embed_fn(params, chunk), micro_images))

        # Stage 2: the listwise loss and its gradient with respect to the descriptors.
        value, descriptor_grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(descriptors, *loss_args)
        micro_descriptor_grads = _split_micro_batches(descriptor_grads, batch_size // micro_batch_size)

        # Stage 3: recompute each micro-batch and pull its descriptor gradient into the parameters.
        def accumulate(param_grads, chunk):
            chunk_images, chunk_descriptor_grads = chunk
            _, pullback = jax.vjp(lambda p: embed_fn(p, chunk_images), params)
            (chunk_param_grads,) = pullback(chunk_descriptor_grads.astype(descriptors.dtype))
            return jax.tree.map(jnp.add, param_grads, chunk_param_grads), None

        zero_grads = jax.tree.map(jnp.zeros_like, params)
        param_grads, _ = jax.lax.scan(accumulate, zero_grads, (micro_images, micro_descriptor_grads))
        return value, param_grads

    return value_and_grad
