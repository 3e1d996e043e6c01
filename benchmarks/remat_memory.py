"""Peak temporary memory of the plain vs the multistage (remat) mAP_Q train step against the batch size.

The model is ``build_model`` with the ``small_cnn`` backbone and the ``ap`` head (GeM + FC + L2) on
64x64 RGB images, in eval mode (frozen BatchNorm, as multistage backprop needs); the loss is
``jaxretrieval.losses.map_q_loss`` on the full batch. "plain" is ``jax.value_and_grad`` of
``map_q_loss(model(images), labels)``; "remat" is ``jaxretrieval.multistage.micro_batched_value_and_grad``
with a fixed micro-batch. Memory is XLA's ``compiled.memory_analysis().temp_size_in_bytes`` (the
step's scratch buffers, excluding parameters, inputs and outputs), so the curve needs compilation only.
At ``--check-batch-size`` both steps also run once on the same random batch, with mAP_Q and with a
smooth pairwise loss: the gradients are compared and the step times printed (single runs).

Run (about 10 minutes on a 2-core CPU, most of it compilation)::

    nice .venv/bin/python benchmarks/remat_memory.py

Writes ``docs/benchmarks/remat_memory.png`` and prints the markdown tables of docs/benchmarks/memory.md.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time

import flax
import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np
from flax import nnx

from jaxretrieval.losses import map_q_loss, pairwise_likelihood_loss
from jaxretrieval.models import build_model
from jaxretrieval.multistage import micro_batched_value_and_grad

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

MIB = 2**20


def _parse_sizes(text: str) -> list[int]:
    return [int(size) for size in text.split(",") if size]


def build_steps(width: int, descriptor_dim: int, micro_batch_size: int, loss, dtype: str = "float32"):
    """The jitted plain and multistage steps ``(params, images, labels) -> (loss, grads)``, and params."""
    config = ml_collections.ConfigDict(
        {"backbone": "small_cnn", "head": "ap", "descriptor_dim": descriptor_dim, "width": width, "dtype": dtype}
    )
    model = build_model(config, rngs=nnx.Rngs(0))
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def embed(params, images):
        return nnx.merge(graphdef, params, rest)(images)

    plain = jax.jit(lambda params, images, labels: jax.value_and_grad(lambda p: loss(embed(p, images), labels))(params))
    remat = jax.jit(micro_batched_value_and_grad(embed, loss, micro_batch_size=micro_batch_size))
    return params, {"plain": plain, "remat": remat}


def map_q(descriptors, labels):
    return map_q_loss(descriptors, labels)


def pairwise_likelihood(descriptors, labels):
    # Smooth in the descriptors, unlike mAP_Q's triangular histogram binning.
    return jnp.mean(pairwise_likelihood_loss(4.0 * descriptors, labels))


def max_relative_difference(reference, other) -> float:
    """max over leaves of max |reference - other| / max |reference|."""
    return max(
        float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(a)).max(), 1e-30))
        for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(other))
    )


def compile_step(step, params, batch_size: int, image_size: int):
    images = jax.ShapeDtypeStruct((batch_size, image_size, image_size, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    start = time.perf_counter()
    compiled = step.lower(params, images, labels).compile()
    return compiled, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="64,128,256,512,1024,2048")
    parser.add_argument("--micro-batch-size", type=int, default=32)
    parser.add_argument("--micro-batch-sweep", default="8,16,32,64,128", help="micro-batch sizes at --check-batch-size")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32, help="small_cnn base width (its default)")
    parser.add_argument("--descriptor-dim", type=int, default=128)
    parser.add_argument("--check-batch-size", type=int, default=512, help="0 = no check (and no sweep)")
    parser.add_argument("--plot", default="docs/benchmarks/remat_memory.png", help='"" = no plot')
    parser.add_argument("--precision-check", action="store_true",
                        help="only the gradient check at --check-batch-size, in float64 and float32 (see precision_check)")
    args = parser.parse_args()
    if args.precision_check:
        precision_check(args)
        return

    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; python {platform.python_version()}, "
        f"jax {jax.__version__}, flax {flax.__version__}; backend {jax.default_backend()}, {jax.device_count()} device(s)"
    )
    print(
        f"# small_cnn width {args.width} + ap head ({args.descriptor_dim}-d), {args.image_size}x{args.image_size}x3, "
        f"map_q_loss, remat micro-batch {args.micro_batch_size}"
    )
    params, steps = build_steps(args.width, args.descriptor_dim, args.micro_batch_size, map_q)

    batch_sizes = _parse_sizes(args.batch_sizes)
    curve = {"plain": [], "remat": []}
    print("\n| batch size | plain temp (MiB) | remat temp (MiB) | remat / plain | compile plain / remat (s) |")
    print("|---:|---:|---:|---:|---:|")
    for batch_size in batch_sizes:
        row = {}
        for name, step in steps.items():
            compiled, seconds = compile_step(step, params, batch_size, args.image_size)
            row[name] = (compiled.memory_analysis().temp_size_in_bytes, seconds)
            curve[name].append(row[name][0] / MIB)
        print(
            f"| {batch_size} | {row['plain'][0] / MIB:,.1f} | {row['remat'][0] / MIB:,.1f} | "
            f"{row['remat'][0] / row['plain'][0]:.3f} | {row['plain'][1]:.1f} / {row['remat'][1]:.1f} |",
            flush=True,
        )

    if args.plot and batch_sizes:
        path = pathlib.Path(args.plot)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure, axes = plt.subplots(figsize=(6, 4))
        for name, label in (("plain", "plain value_and_grad"), ("remat", f"multistage, micro-batch {args.micro_batch_size}")):
            axes.plot(batch_sizes, curve[name], marker="o", label=label)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("batch size B")
        axes.set_ylabel("XLA temp memory (MiB)")
        axes.set_title(f"small_cnn + AP head, {args.image_size}x{args.image_size}, map_q_loss (CPU)")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        print(f"\nplot: {path}", flush=True)

    if args.micro_batch_sweep and args.check_batch_size:
        print(f"\n| micro-batch (B = {args.check_batch_size}) | remat temp (MiB) | remat / plain |")
        print("|---:|---:|---:|")
        plain_bytes = compile_step(steps["plain"], params, args.check_batch_size, args.image_size)[0]
        plain_bytes = plain_bytes.memory_analysis().temp_size_in_bytes
        for micro_batch_size in _parse_sizes(args.micro_batch_sweep):
            _, sweep_steps = build_steps(args.width, args.descriptor_dim, micro_batch_size, map_q)
            compiled, _ = compile_step(sweep_steps["remat"], params, args.check_batch_size, args.image_size)
            remat_bytes = compiled.memory_analysis().temp_size_in_bytes
            print(f"| {micro_batch_size} | {remat_bytes / MIB:,.1f} | {remat_bytes / plain_bytes:.3f} |", flush=True)

    if args.check_batch_size:
        keys = jax.random.split(jax.random.key(0), 2)
        images = jax.random.uniform(keys[0], (args.check_batch_size, args.image_size, args.image_size, 3))
        labels = jax.random.randint(keys[1], (args.check_batch_size,), 0, 16)
        print(f"\nB = {args.check_batch_size}, micro-batch {args.micro_batch_size}, one run each:")
        for loss_name, loss in (("pairwise_likelihood_loss", pairwise_likelihood), ("map_q_loss", map_q)):
            _, check_steps = build_steps(args.width, args.descriptor_dim, args.micro_batch_size, loss)
            results, seconds = {}, {}
            for name, step in check_steps.items():
                compiled, _ = compile_step(step, params, args.check_batch_size, args.image_size)
                start = time.perf_counter()
                results[name] = jax.block_until_ready(compiled(params, images, labels))
                seconds[name] = time.perf_counter() - start
            (plain_value, plain_grads), (remat_value, remat_grads) = results["plain"], results["remat"]
            close = all(
                np.allclose(remat_leaf, plain_leaf, rtol=1e-5, atol=1e-6 * np.abs(plain_leaf).max())
                for plain_leaf, remat_leaf in zip(jax.tree.leaves(plain_grads), jax.tree.leaves(remat_grads))
            )
            print(
                f"- {loss_name}: loss plain {float(plain_value):.7f} / remat {float(remat_value):.7f}; gradients "
                f"allclose(rtol=1e-5, atol=1e-6 max|g|) {close}, max |diff| / max |g| "
                f"{max_relative_difference(plain_grads, remat_grads):.1e}; step time plain {seconds['plain']:.1f} s, "
                f"remat {seconds['remat']:.1f} s"
            )


def precision_check(args) -> None:
    """Are plain and multistage gradients the same computation, differing only by float32 rounding?

    Both steps run on the same batch in float64 (``jax_enable_x64``) and in float32. In float64 the two
    must agree to ~1e-12 if multistage backprop computes the plain gradient (the issue's rtol 1e-5 is
    then met with a wide margin). In float32 each step is compared with the float64 plain gradient: if
    both float32 steps are about equally far from it, their mutual difference is rounding (summation
    order over micro-batches, convolution algorithms chosen per batch size), not a wrong gradient.
    mAP_Q's histogram binning is piecewise linear in the similarities, so a rounding difference that
    moves a similarity across a bin's kink changes that term's gradient by a finite step: its float32
    differences are expected to be larger than the smooth pairwise loss's.
    """
    jax.config.update("jax_enable_x64", True)
    keys = jax.random.split(jax.random.key(0), 2)
    batch_size = args.check_batch_size
    images64 = jax.random.uniform(keys[0], (batch_size, args.image_size, args.image_size, 3), jnp.float64)
    labels = jax.random.randint(keys[1], (batch_size,), 0, 16)
    print(f"# precision check: B = {batch_size}, micro-batch {args.micro_batch_size}, backend {jax.default_backend()}, "
          f"matmul precision {jax.config.jax_default_matmul_precision or 'default'}")
    print("\n| loss | dtype | plain vs remat: max abs diff / max abs grad | plain vs float64 plain | remat vs float64 plain |")
    print("|---|---|---:|---:|---:|")
    for loss_name, loss in (("pairwise_likelihood_loss", pairwise_likelihood), ("map_q_loss", map_q)):
        grads = {}
        for dtype in (jnp.float64, jnp.float32):
            # The same initial weights (seed 0) computed in each dtype; float64 parameters too.
            params, steps = build_steps(args.width, args.descriptor_dim, args.micro_batch_size, loss, jnp.dtype(dtype).name)
            params = jax.tree.map(lambda leaf: leaf.astype(dtype), params)
            images = images64.astype(dtype)
            for name, step in steps.items():
                value, grads[name, dtype] = step(params, images, labels)
                assert np.isfinite(float(value)), (loss_name, name, dtype)
        exact = grads["plain", jnp.float64]
        for dtype in (jnp.float64, jnp.float32):
            plain, remat = grads["plain", dtype], grads["remat", dtype]
            print(f"| {loss_name} | {jnp.dtype(dtype).name} | {max_relative_difference(plain, remat):.1e} | "
                  f"{max_relative_difference(exact, plain):.1e} | {max_relative_difference(exact, remat):.1e} |", flush=True)


if __name__ == "__main__":
    main()
