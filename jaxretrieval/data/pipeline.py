"""grain input pipelines: shuffled, host-sharded training batches and padded, masked evaluation batches.

Both pipelines address the data by *global* batch: global batch ``b`` of an epoch holds positions
``[b * G, (b + 1) * G)`` of that epoch's order (``G = global_batch_size``), and host ``h`` of
``shard_count`` reads the contiguous slice ``[b * G + h * L, b * G + (h + 1) * L)`` with
``L = G // shard_count``. The hosts therefore see disjoint examples that together make up each global
batch, and ``jax.make_array_from_process_local_data`` puts them back together in order.

Training order is a per-epoch permutation drawn by numpy's generator seeded with ``(seed, epoch)``
(so every epoch differs and nothing depends on the number of hosts or workers); the last
incomplete global batch of each epoch is dropped. The iterator's ``get_state()`` is just a position,
so restoring it resumes with exactly the next examples, mid-epoch included.

Unreadable images (:class:`~jaxretrieval.data.report.UnreadableExampleError`) are recorded in the
source's report. Training replaces one with the next readable example of the epoch's order (batch
shapes and the number of steps stay the same on every host); evaluation keeps its slot with
``mask=False``.
"""
from __future__ import annotations

import dataclasses

import grain
import jax
import numpy as np
from absl import flags

from jaxretrieval.data.report import LoadReport, UnreadableExampleError

# Training gives up (with an error) after this many unreadable images in a row: the data set is broken.
MAX_CONSECUTIVE_UNREADABLE = 64


# eq=False: fields hold arrays, whose == is elementwise; identity is the only meaningful equality.
@dataclasses.dataclass(frozen=True, eq=False)
class Subset:
    """A subset of a data source: ``source[indices[i]]`` is its ``i``-th example."""

    source: object
    indices: np.ndarray

    def __post_init__(self):
        indices = np.asarray(self.indices, dtype=np.int64)
        if indices.ndim != 1:
            raise ValueError(f"Subset indices must be one-dimensional, got shape {indices.shape}")
        object.__setattr__(self, "indices", indices)

    def __len__(self) -> int:
        return len(self.indices)


def _resolve_shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    if shard_index is None or shard_count is None:
        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index={shard_index} must lie in [0, shard_count={shard_count})")
    return int(shard_index), int(shard_count)


def _local_batch_size(global_batch_size: int, shard_count: int) -> int:
    if global_batch_size <= 0 or global_batch_size % shard_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of shard_count={shard_count}"
        )
    return global_batch_size // shard_count


def _report_of(source) -> LoadReport:
    report = getattr(source, "report", None)
    return report if report is not None else LoadReport()


def _finish(dataset: grain.MapDataset, *, worker_count: int, prefetch: int) -> grain.DatasetIterator:
    """Threads (``prefetch`` batches ahead) or worker processes (``worker_count``) and the iterator."""
    if worker_count < 0 or prefetch < 0:
        raise ValueError(f"worker_count={worker_count} and prefetch={prefetch} must be >= 0")
    if worker_count:
        # grain's worker processes read absl flags; outside an absl app (scripts, tests) nothing parsed
        # them, so take their defaults. An absl app has parsed them already and is left alone.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        iter_dataset = dataset.to_iter_dataset().mp_prefetch(
            grain.MultiprocessingOptions(num_workers=worker_count, per_worker_buffer_size=max(prefetch, 1))
        )
    else:
        iter_dataset = dataset.to_iter_dataset(
            grain.ReadOptions(num_threads=prefetch, prefetch_buffer_size=prefetch)
        )
    return iter(iter_dataset)


class _TrainExampleReader:
    """Host position -> example: global position in the epoch's shuffled order, then the source."""

    def __init__(self, subset: Subset, *, seed: int, global_batch_size: int, local_batch_size: int, shard_index: int):
        self.source = subset.source
        self.indices = subset.indices
        self.num_examples = len(subset.indices)
        self.seed = seed
        self._epoch_order: tuple[int, np.ndarray] = (-1, np.zeros(0, np.int64))
        self.global_batch_size = global_batch_size
        self.local_batch_size = local_batch_size
        self.shard_index = shard_index
        self.host_examples_per_epoch = (self.num_examples // global_batch_size) * local_batch_size
        self.report = _report_of(subset.source)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of subset positions for ``epoch`` (drawn once per epoch and process)."""
        cached_epoch, order = self._epoch_order
        if cached_epoch != epoch:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.num_examples)
            self._epoch_order = (epoch, order)  # one tuple: threads see the old or the new pair
        return order

    def __call__(self, host_position: int, _unused) -> dict:
        epoch, offset = divmod(host_position, self.host_examples_per_epoch)
        step, slot = divmod(offset, self.local_batch_size)
        position = step * self.global_batch_size + self.shard_index * self.local_batch_size + slot
        order = self.epoch_order(epoch)
        for attempt in range(min(MAX_CONSECUTIVE_UNREADABLE, self.num_examples)):
            subset_index = order[(position + attempt) % self.num_examples]
            try:
                return self.source[int(self.indices[subset_index])]
            except UnreadableExampleError as error:
                self.report.add(error.path, error.reason)
        raise RuntimeError(
            f"{MAX_CONSECUTIVE_UNREADABLE} unreadable images in a row in {self.source!r}; "
            f"see the load report ({len(self.report)} skipped so far)"
        )


def train_batches(
    subset: Subset,
    *,
    global_batch_size: int,
    seed: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_epochs: int | None = None,
    worker_count: int = 0,
    prefetch: int = 2,
) -> grain.DatasetIterator:
    """Shuffled training batches of this host's shard, as a checkpointable grain iterator.

    Args:
      subset: the examples to train on.
      global_batch_size: examples per step over all hosts; each host yields ``global_batch_size //
        shard_count`` (it must divide).
      seed: the shuffle seed; each epoch is permuted differently from it.
      shard_index, shard_count: this host and the number of hosts (default ``jax.process_index()`` /
        ``jax.process_count()``).
      num_epochs: ``None`` repeats forever; else stops after that many epochs of
        ``len(subset) // global_batch_size`` steps (the remainder of each epoch is dropped).
      worker_count: grain worker processes (0 = read in this process).
      prefetch: batches read ahead (by threads in this process, or per worker).

    Returns:
      An iterator of ``{"image": uint8 [L, H, W, C], "label": float32 [L, C], "index": int64 [L]}``
      with ``get_state()`` / ``set_state(state)``.
    """
    shard_index, shard_count = _resolve_shard(shard_index, shard_count)
    local_batch_size = _local_batch_size(global_batch_size, shard_count)
    if len(subset) < global_batch_size:
        raise ValueError(f"the subset has {len(subset)} examples, fewer than global_batch_size={global_batch_size}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be None or >= 1, got {num_epochs}")
    reader = _TrainExampleReader(
        subset,
        seed=seed,
        global_batch_size=global_batch_size,
        local_batch_size=local_batch_size,
        shard_index=shard_index,
    )
    dataset = (
        grain.MapDataset.range(reader.host_examples_per_epoch)
        .repeat(num_epochs)
        .map_with_index(reader)
        .batch(local_batch_size, drop_remainder=True)
    )
    return _finish(dataset, worker_count=worker_count, prefetch=prefetch)


class _EvalExampleReader:
    """Host position -> example with ``mask``; padding and unreadable images are masked out."""

    def __init__(self, subset: Subset, *, global_batch_size: int, local_batch_size: int, shard_index: int):
        self.source = subset.source
        self.indices = subset.indices
        self.global_batch_size = global_batch_size
        self.local_batch_size = local_batch_size
        self.shard_index = shard_index
        self.report = _report_of(subset.source)
        if hasattr(subset.source, "image_shape") and hasattr(subset.source, "class_names"):
            image_shape, num_classes = tuple(subset.source.image_shape), len(subset.source.class_names)
        else:
            first = subset.source[int(subset.indices[0])]
            image_shape, num_classes = first["image"].shape, first["label"].shape[0]
        self.blank_image = np.zeros(image_shape, np.uint8)
        self.blank_label = np.zeros(num_classes, np.float32)

    def __call__(self, host_position: int, _unused) -> dict:
        step, slot = divmod(host_position, self.local_batch_size)
        position = step * self.global_batch_size + self.shard_index * self.local_batch_size + slot
        if position >= len(self.indices):
            return {"image": self.blank_image, "label": self.blank_label, "index": np.int64(-1), "mask": False}
        index = int(self.indices[position])
        try:
            example = self.source[index]
        except UnreadableExampleError as error:
            self.report.add(error.path, error.reason)
            return {"image": self.blank_image, "label": self.blank_label, "index": np.int64(index), "mask": False}
        return {**example, "mask": True}


def eval_batches(
    subset: Subset,
    *,
    global_batch_size: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
    worker_count: int = 0,
    prefetch: int = 2,
) -> grain.DatasetIterator:
    """Every example of ``subset`` exactly once, in index order, padded to whole global batches.

    All hosts yield ``ceil(len(subset) / global_batch_size)`` batches. Padding slots (``index`` -1) and
    unreadable images (their real ``index``, recorded in the report) have ``mask`` False and zero
    images and labels.

    Returns:
      An iterator of ``{"image": uint8 [L, H, W, C], "label": float32 [L, C], "index": int64 [L],
      "mask": bool [L]}``, ``L = global_batch_size // shard_count``.
    """
    shard_index, shard_count = _resolve_shard(shard_index, shard_count)
    local_batch_size = _local_batch_size(global_batch_size, shard_count)
    if len(subset) == 0:
        raise ValueError("cannot evaluate on an empty subset")
    num_batches = -(-len(subset) // global_batch_size)
    reader = _EvalExampleReader(
        subset, global_batch_size=global_batch_size, local_batch_size=local_batch_size, shard_index=shard_index
    )
    dataset = (
        grain.MapDataset.range(num_batches * local_batch_size)
        .map_with_index(reader)
        .batch(local_batch_size)
    )
    return _finish(dataset, worker_count=worker_count, prefetch=prefetch)
