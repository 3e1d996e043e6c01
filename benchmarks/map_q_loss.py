"""mAP_Q loss forward + backward: jaxretrieval's fused map_q_loss vs the textbook JAX formula vs
naver's PyTorch APLoss formulation, in one process on the same CPU.

    .venv/bin/python benchmarks/map_q_loss.py                 # B = 1024 and 4096, 128-dim
    .venv/bin/python benchmarks/map_q_loss.py --batch-sizes 1024 --repeats 3

Prints the median of ``--repeats`` timed forward + backward passes (after one warm-up), the speed-up
of the fused loss over each peer, and the compiled JAX temporary memory
(``memory_analysis().temp_size_in_bytes``). The textbook JAX formula is skipped (its memory still
printed) where its temporaries exceed ``--max-textbook-gib``.

The PyTorch formulation is written here from naver/deep-image-retrieval ``dirtorch/loss.py``
(APLoss): a fixed ``Conv1d(1, 2 * nq, kernel_size=1)`` produces the rising and falling lines of every
bin, ``min`` of the two then ``clamp(min=0)`` gives the triangular bins, and autograd does the
backward pass. All three use the same batch semantics: scores = D D^T with the self-match deleted
(``[B, B - 1]``), relevance = same label, 20 bins on [-1, 1].
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval.losses import map_q_loss

NUM_BINS = 20


def textbook_map_q_loss(descriptors, labels):
    """1 - mean AP_Q with the [B, bins, B - 1] soft-assignment tensor, differentiated by autodiff."""
    batch_size = descriptors.shape[0]
    off_diagonal = ~np.eye(batch_size, dtype=bool)
    scores = (descriptors @ descriptors.T)[off_diagonal].reshape(batch_size, batch_size - 1)
    relevance = (labels[:, None] == labels[None, :])[off_diagonal].reshape(batch_size, batch_size - 1)
    slope = (NUM_BINS - 1) / 2.0
    offsets = jnp.arange(NUM_BINS, 0, -1, dtype=jnp.float32)
    falling = -slope * (scores[:, None, :] + 1.0) + offsets[None, :, None]
    rising = slope * (scores[:, None, :] + 1.0) + (2.0 - offsets)[None, :, None]
    falling = falling.at[:, 0].set(1.0)
    rising = rising.at[:, -1].set(1.0)
    weights = jnp.maximum(jnp.minimum(falling, rising), 0.0)
    counts = weights.sum(-1)
    positives = (weights * relevance[:, None, :]).sum(-1)
    precision = jnp.cumsum(positives, -1) / (1e-16 + jnp.cumsum(counts, -1))
    recall = positives / positives.sum(-1, keepdims=True)
    return 1.0 - jnp.mean(jnp.sum(precision * recall, -1))


def torch_aploss_step(torch, descriptors_np, labels_np, device="cpu"):
    """Returns a function running naver's APLoss forward + backward on a fresh leaf tensor."""
    nq, low, high = NUM_BINS, -1.0, 1.0
    quantizer = torch.nn.Conv1d(1, 2 * nq, kernel_size=1, bias=True)
    quantizer.weight.requires_grad_(False)
    quantizer.bias.requires_grad_(False)
    slope = (nq - 1) / (high - low)
    with torch.no_grad():
        quantizer.weight[:nq] = -slope
        quantizer.bias[:nq] = torch.from_numpy(slope * low + np.arange(nq, 0, -1))
        quantizer.weight[nq:] = slope
        quantizer.bias[nq:] = torch.from_numpy(np.arange(2 - nq, 2, 1) - slope * low)
        quantizer.weight[0] = quantizer.weight[-1] = 0
        quantizer.bias[0] = quantizer.bias[-1] = 1
    quantizer = quantizer.to(device)
    batch_size = descriptors_np.shape[0]
    labels = torch.from_numpy(labels_np).to(device)
    off_diagonal = ~torch.eye(batch_size, dtype=torch.bool, device=device)
    relevance = (labels[:, None] == labels[None, :])[off_diagonal].view(batch_size, batch_size - 1)

    def step():
        descriptors = torch.from_numpy(descriptors_np).to(device).requires_grad_(True)
        scores = (descriptors @ descriptors.t())[off_diagonal].view(batch_size, batch_size - 1)
        q = quantizer(scores.unsqueeze(1))
        q = torch.min(q[:, :nq], q[:, nq:]).clamp(min=0)
        counts = q.sum(dim=-1)
        positives = (q * relevance.view(batch_size, 1, -1).float()).sum(dim=-1)
        precision = positives.cumsum(dim=-1) / (1e-16 + counts.cumsum(dim=-1))
        recall = positives / positives.sum(dim=-1).unsqueeze(1)
        loss = 1 - (precision * recall).sum(dim=-1).mean()
        loss.backward()
        return loss.item(), descriptors.grad.cpu()  # .item() and .cpu() also synchronise a GPU

    return step


def median_seconds(run, repeats):
    run()  # warm-up (and compilation for JAX)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-textbook-gib", type=float, default=4.0)
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--torch-device", default="cpu", help="cpu or cuda (GPU runs)")
    args = parser.parse_args()

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()}")
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), numpy {np.__version__}")
    torch = None
    if not args.skip_torch:
        import torch
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.torch_device}")

    # On a GPU, reductions run in another order (and torch/JAX may pick TF32 for float32 matmuls):
    # compare the implementations at a looser tolerance there.
    tolerance = 1e-5 if jax.devices()[0].platform == "cpu" and args.torch_device == "cpu" else 1e-3
    rows = []
    for batch_size in args.batch_sizes:
        rng = np.random.default_rng(batch_size)
        descriptors = rng.standard_normal((batch_size, args.dim)).astype(np.float32)
        descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
        labels = rng.integers(0, max(batch_size // 16, 2), batch_size).astype(np.int32)
        jax_descriptors, jax_labels = jnp.asarray(descriptors), jnp.asarray(labels)

        fused = jax.jit(jax.value_and_grad(map_q_loss)).lower(jax_descriptors, jax_labels).compile()
        fused_temp = fused.memory_analysis().temp_size_in_bytes
        fused_loss, fused_grad = fused(jax_descriptors, jax_labels)
        fused_time = median_seconds(
            lambda: jax.block_until_ready(fused(jax_descriptors, jax_labels)), args.repeats)
        row = {"B": batch_size, "fused_s": fused_time, "fused_temp_mb": fused_temp / 2**20}

        textbook = jax.jit(jax.value_and_grad(lambda d: textbook_map_q_loss(d, labels)))
        textbook_compiled = textbook.lower(jax_descriptors).compile()
        textbook_temp = textbook_compiled.memory_analysis().temp_size_in_bytes
        row["textbook_temp_mb"] = textbook_temp / 2**20
        if textbook_temp <= args.max_textbook_gib * 2**30:
            textbook_loss, textbook_grad = textbook_compiled(jax_descriptors)
            np.testing.assert_allclose(textbook_loss, fused_loss, atol=tolerance)
            np.testing.assert_allclose(textbook_grad, fused_grad, atol=tolerance)
            row["textbook_s"] = median_seconds(
                lambda: jax.block_until_ready(textbook_compiled(jax_descriptors)), args.repeats)
        del textbook_compiled

        if torch is not None:
            step = torch_aploss_step(torch, descriptors, labels, args.torch_device)
            torch_loss, torch_grad = step()
            np.testing.assert_allclose(torch_loss, fused_loss, atol=tolerance)
            np.testing.assert_allclose(torch_grad.numpy(), fused_grad, atol=tolerance)
            row["torch_s"] = median_seconds(step, args.repeats)
        rows.append(row)

        line = (f"B={batch_size:5d}  fused {row['fused_s']:.3f} s (temp {row['fused_temp_mb']:.0f} MiB, "
                f"bound 4*B*B*4 = {4 * batch_size * batch_size * 4 / 2**20:.0f} MiB)")
        if "textbook_s" in row:
            line += (f" | textbook JAX {row['textbook_s']:.3f} s (temp {row['textbook_temp_mb']:.0f} MiB,"
                     f" x{row['textbook_s'] / row['fused_s']:.1f})")
        else:
            line += f" | textbook JAX skipped (temp would be {row['textbook_temp_mb']:.0f} MiB)"
        if "torch_s" in row:
            line += f" | torch APLoss {row['torch_s']:.3f} s (fused x{row['torch_s'] / row['fused_s']:.1f})"
        print(line, flush=True)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
