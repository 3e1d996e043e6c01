"""Images per second of the CIFAR-10 input pipeline (decode + augment), with a PyTorch DataLoader peer.

Run by hand (not part of the test suite), from the repository root:

    nice .venv/bin/python benchmarks/data_pipeline.py --root /path/to/cifar10 [--repeats 3]

Measures, on CIFAR-10 as image folders (``<root>/train/<class>/*.jpg``: 50,000 training JPEGs of 32x32):
  listing the folder; decoding every image once into memory (cache_in_memory, threads);
  grain train_batches reading JPEGs on every access (cache "none") and from the in-memory cache;
  the jitted on-device augmentations alone (hashing view, SPQ's two views);
  cached batches + hashing augmentation end to end (the training input path on CPU);
  the peer: torch.utils.data.DataLoader over the same files, per-image PIL decode + random crop with
  padding + flip in numpy (what a torchvision RandomCrop/RandomHorizontalFlip pipeline does), with 0
  and 2 worker processes.
Each figure is the median over ``--repeats`` timed windows (after a warm-up window).
"""
import argparse
import os
import platform
import statistics
import time

import jax
import numpy as np

from jaxretrieval.data import Subset, augment, cache_in_memory, sources, train_batches

BATCH = 256


def _median_rate(run_window, num_images, repeats):
    run_window()  # warm-up: compilation, thread start, page cache
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_window()
        rates.append(num_images / (time.perf_counter() - start))
    return statistics.median(rates)


def _pull(iterator, num_batches, on_batch=None):
    def window():
        for _ in range(num_batches):
            batch = next(iterator)
            if on_batch is not None:
                on_batch(batch)

    return window


class _TorchPeerDataset:
    """Per-image host augmentation, torchvision style: decode, pad 4 + random 32x32 crop, flip, to float."""

    def __init__(self, paths, labels):
        self.paths, self.labels = paths, labels

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        import torch

        rng = np.random.default_rng(index)
        image = sources.decode_image_file(self.paths[index])
        padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
        top, left = rng.integers(0, 9, 2)
        image = padded[top : top + 32, left : left + 32]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
        return tensor, torch.from_numpy(self.labels[index].astype(np.float32))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True, help="CIFAR-10 as image folders: <root>/train/<class>/*.jpg")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    print(f"python {platform.python_version()}, jax {jax.__version__}, torch {torch.__version__}, devices {jax.devices()}")
    results = {}

    start = time.perf_counter()
    train = sources.ImageFolderSource(args.root, "train")
    results["list 50,000 files (s)"] = time.perf_counter() - start

    start = time.perf_counter()
    cached = cache_in_memory(train)
    elapsed = time.perf_counter() - start
    results["decode all once into memory (images/s)"] = len(train) / elapsed

    lazy_batches = train_batches(Subset(train, np.arange(len(train))), global_batch_size=BATCH, seed=0, shard_index=0, shard_count=1)
    results["grain batches, JPEG decode per read (images/s)"] = _median_rate(_pull(lazy_batches, 10, None), 10 * BATCH, args.repeats)

    cached_subset = Subset(cached, np.arange(len(cached)))
    cached_batches = train_batches(cached_subset, global_batch_size=BATCH, seed=0, shard_index=0, shard_count=1)
    results["grain batches from memory cache (images/s)"] = _median_rate(_pull(cached_batches, 100), 100 * BATCH, args.repeats)

    images = next(cached_batches)["image"]
    hashing_view = jax.jit(augment.hashing_train_view)
    spq_views = jax.jit(augment.spq_views)
    keys = iter(jax.random.split(jax.random.key(0), 100_000))
    results["hashing_train_view alone (images/s)"] = _median_rate(
        lambda: [jax.block_until_ready(hashing_view(next(keys), images)) for _ in range(20)], 20 * BATCH, args.repeats
    )
    results["spq_views alone, two views (images/s)"] = _median_rate(
        lambda: [jax.block_until_ready(spq_views(next(keys), images)) for _ in range(5)], 5 * BATCH, args.repeats
    )
    end_to_end = _pull(cached_batches, 40, lambda batch: jax.block_until_ready(hashing_view(next(keys), batch["image"])))
    results["cached batches + hashing_train_view (images/s)"] = _median_rate(end_to_end, 40 * BATCH, args.repeats)

    peer = _TorchPeerDataset(train.paths, train.labels)
    for num_workers in (0, 2):
        loader = torch.utils.data.DataLoader(peer, batch_size=BATCH, shuffle=True, num_workers=num_workers, drop_last=True, persistent_workers=num_workers > 0)
        loader_iterator = iter(loader)
        num_batches = 8
        results[f"peer: torch DataLoader, PIL + numpy crop/flip, {num_workers} workers (images/s)"] = _median_rate(
            _pull(loader_iterator, num_batches), num_batches * BATCH, args.repeats
        )

    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value:>10,.1f}")
    lazy = results["grain batches, JPEG decode per read (images/s)"]
    print(f"ratio cached+augment / peer(2 workers): {results['cached batches + hashing_train_view (images/s)'] / results['peer: torch DataLoader, PIL + numpy crop/flip, 2 workers (images/s)']:.1f}x; "
          f"grain lazy / peer(0 workers): {lazy / results['peer: torch DataLoader, PIL + numpy crop/flip, 0 workers (images/s)']:.2f}x")


if __name__ == "__main__":
    main()
