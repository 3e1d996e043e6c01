"""``build_retrieval_data``: a data config in, the query / train / database subsets of a protocol out."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxretrieval.data import protocols, sources
from jaxretrieval.data.pipeline import Subset
from jaxretrieval.data.report import LoadReport

CACHE_MODES = ("auto", "memory", "none")
# cache="auto" decodes file-based data once into memory when the decoded pool is at most this big.
AUTO_CACHE_MAX_BYTES = 2 * 1024**3


# eq=False: fields hold arrays, whose == is elementwise; identity is the only meaningful equality.
@dataclasses.dataclass(frozen=True, eq=False)
class RetrievalData:
    """The subsets of a retrieval protocol over one pool source, and what the model needs to know."""

    train: Subset
    query: Subset
    database: Subset
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    report: LoadReport


def _setting(data_config, key: str, default=None):
    value = data_config.get(key, default)
    if value is None or (isinstance(value, str) and not value and default is None):
        hint = " (pass --config.data.root=/path/to/data)" if key == "root" else ""
        raise ValueError(f"config.data.{key} is required for source={data_config.get('source')!r}{hint}")
    return value


def _partition_from_split_array(split: np.ndarray, data_config, path: str) -> np.ndarray:
    """The .npz ``split`` array: 0/1/2 (train/test/database) or the split names of the config."""
    split = np.asarray(split)
    if np.issubdtype(split.dtype, np.integer):
        return split.astype(np.int8)
    names = [data_config.get("train_split", "train"), data_config.get("test_split", "test"), "database"]
    unknown = sorted(set(split.tolist()) - set(names))
    if unknown:
        raise ValueError(f"{path}: split array holds {unknown}; expected names among {names} or integers 0/1/2")
    return np.asarray([names.index(name) for name in split.tolist()], np.int8)


SourceBuilder = Callable[[Any, LoadReport], "tuple[Any, np.ndarray | None]"]
"""``(config.data, report) -> (pool source, partition or None)``: what :func:`register_source` takes.

The pool source is indexable (``source[i]`` is ``{"image": uint8 [H, W, C], "label": multi-hot}``)
with ``len``, ``labels`` ``[n, num_classes]``, ``class_names`` and ``image_shape``; the partition
(0 train, 1 test, 2 database per example, or None) tells the protocol where each example came from.
Skipped or unreadable files go into ``report``.
"""

SOURCES: dict[str, SourceBuilder] = {}
"""``config.data.source`` name -> builder; extend with :func:`register_source`."""


def register_source(name: str, builder: SourceBuilder) -> SourceBuilder:
    """Makes ``config.data.source = name`` build its pool with ``builder`` (see :data:`SourceBuilder`).

    Returns ``builder``, so it also works as a decorator: ``@functools.partial(register_source, "mine")``.
    A name that is taken is an error (no silent replacement of a built-in source).
    """
    if name in SOURCES:
        raise ValueError(f"data source {name!r} is already registered")
    SOURCES[name] = builder
    return builder


def _digits(data_config, report):
    del report
    return sources.load_digits_source(image_size=int(data_config.get("image_size", 0))), None


def _arrays(data_config, report):
    path = _setting(data_config, "path")
    source, split = sources.ArraySource.from_npz(path, image_size=int(data_config.get("image_size", 0)), report=report)
    return source, None if split is None else _partition_from_split_array(split, data_config, path)


def _concatenated(parts):
    pool = sources.ConcatSource(parts)
    return pool, pool.partition


def _image_folder(data_config, report):
    root = _setting(data_config, "root")
    return _concatenated([
        sources.ImageFolderSource(root, data_config.get(key, default), image_size=int(data_config.get("image_size", 0)), report=report)
        for key, default in (("train_split", "train"), ("test_split", "test"))
    ])


def _list_file(data_config, report):
    """DeepHash list files; ``train_list`` / ``test_list`` / ``database_list`` default to
    ``<root>/train.txt``, ``test.txt`` and ``database.txt``."""
    root = _setting(data_config, "root")
    image_size = int(data_config.get("image_size", 0))
    paths = [
        data_config.get(key, "") or os.path.join(root, default)
        for key, default in (("train_list", "train.txt"), ("test_list", "test.txt"), ("database_list", "database.txt"))
    ]
    first = sources.ListFileSource(paths[0], root, image_size=image_size, report=report)
    return _concatenated([first] + [
        sources.ListFileSource(path, root, num_classes=len(first.class_names), image_size=image_size, report=report)
        for path in paths[1:]
    ])


def _tfds(data_config, report):
    name = _setting(data_config, "tfds_name")
    return _concatenated([
        sources.TfdsSource(
            name, data_config.get(key, default), data_dir=data_config.get("tfds_data_dir", None) or None,
            image_size=int(data_config.get("image_size", 0)), report=report,
        )
        for key, default in (("train_split", "train"), ("test_split", "test"))
    ])


for _name, _builder in (("digits", _digits), ("image_folder", _image_folder), ("list_file", _list_file),
                        ("tfds", _tfds), ("arrays", _arrays)):
    register_source(_name, _builder)


def _pool_source(data_config, report: LoadReport):
    """The source every index refers to, and its partition (origin of each example) or None."""
    kind = _setting(data_config, "source", "digits")
    if kind not in SOURCES:
        raise ValueError(f"config.data.source={kind!r} is not one of {sorted(SOURCES)} (add one with register_source)")
    return SOURCES[kind](data_config, report)


def build_retrieval_data(
    data_config, *, splits_file: str | os.PathLike | None = None, load_report_file: str | os.PathLike | None = None
) -> RetrievalData:
    """Builds the pool source of ``data_config`` and the subsets of its protocol.

    Args:
      data_config: ``config.data`` (a ConfigDict or dict), see the interfaces: ``source``, ``root``,
        splits and lists, ``tfds_name``/``tfds_data_dir``, ``path``, ``image_size``, ``protocol``,
        ``num_query_per_class``, ``num_train_per_class``, ``seed``; and ``cache``: ``"auto"`` (default:
        decode image files once into memory when they take at most 2 GiB decoded), ``"memory"`` or
        ``"none"`` (decode on every read).
      splits_file: where the protocol's splits are written, or re-used when the file exists (a run's
        ``splits.json``); ``None`` draws them in memory.
      load_report_file: skipped images are also logged there, one JSON line each (so grain worker
        processes' skips reach the report); ``None`` keeps the report in memory.

    Returns:
      A :class:`RetrievalData` whose subsets all index the same pool source.

    >>> data = build_retrieval_data({"source": "digits", "protocol": "digits", "seed": 0})
    >>> len(data.query), len(data.database), len(data.train), data.image_shape, data.num_classes
    (500, 1297, 1297, (8, 8, 1), 10)
    """
    if load_report_file is not None:
        os.makedirs(os.path.dirname(os.path.abspath(load_report_file)), exist_ok=True)
    report = LoadReport(None if load_report_file is None else os.fspath(load_report_file))
    pool, partition = _pool_source(data_config, report)
    cache = data_config.get("cache", "auto")
    if cache not in CACHE_MODES:
        raise ValueError(f"config.data.cache={cache!r} is not one of {CACHE_MODES}")
    decoded_bytes = len(pool) * int(np.prod(pool.image_shape))
    if not isinstance(pool, sources.ArraySource) and (
        cache == "memory" or (cache == "auto" and decoded_bytes <= AUTO_CACHE_MAX_BYTES)
    ):
        pool = sources.cache_in_memory(pool)
    pool.report = report  # digits and arrays made before the report existed share it too
    splits = protocols.load_or_make_splits(
        pool.labels,
        protocol=_setting(data_config, "protocol", "digits"),
        seed=int(data_config.get("seed", 0)),
        splits_file=splits_file,
        partition=partition,
        num_query_per_class=int(data_config.get("num_query_per_class", 100)),
        num_train_per_class=int(data_config.get("num_train_per_class", 500)),
        class_names=pool.class_names,
    )
    return RetrievalData(
        train=Subset(pool, splits.train),
        query=Subset(pool, splits.query),
        database=Subset(pool, splits.database),
        num_classes=len(pool.class_names),
        class_names=tuple(pool.class_names),
        image_shape=tuple(pool.image_shape),
        report=report,
    )
