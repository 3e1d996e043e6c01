"""``build_retrieval_data``: a data config in, the query / train / database subsets of a protocol out."""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxretrieval.data import protocols, sources
from jaxretrieval.data.pipeline import Subset
from jaxretrieval.data.report import LoadReport

SOURCES = ("digits", "image_folder", "list_file", "tfds", "arrays")
CACHE_MODES = ("auto", "memory", "none")
# cache="auto" decodes file-based data once into memory when the decoded pool is at most this big.
AUTO_CACHE_MAX_BYTES = 2 * 1024**3
LOAD_REPORT_FILE_NAME = "load_report.jsonl"


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
    if value is None:
        raise ValueError(f"config.data.{key} is required for source={data_config.get('source')!r}")
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


def _pool_source(data_config, report: LoadReport):
    """The source every index refers to, and its partition (origin of each example) or None."""
    kind = _setting(data_config, "source", "digits")
    image_size = int(data_config.get("image_size", 0))
    train_split = data_config.get("train_split", "train")
    test_split = data_config.get("test_split", "test")
    if kind == "digits":
        return sources.load_digits_source(image_size=image_size), None
    if kind == "arrays":
        path = _setting(data_config, "path")
        source, split = sources.ArraySource.from_npz(path, image_size=image_size, report=report)
        return source, None if split is None else _partition_from_split_array(split, data_config, path)
    if kind == "image_folder":
        root = _setting(data_config, "root")
        parts = [
            sources.ImageFolderSource(root, split, image_size=image_size, report=report)
            for split in (train_split, test_split)
        ]
    elif kind == "list_file":
        root = _setting(data_config, "root")
        first = sources.ListFileSource(_setting(data_config, "train_list"), root, image_size=image_size, report=report)
        parts = [first] + [
            sources.ListFileSource(
                _setting(data_config, key), root, num_classes=len(first.class_names), image_size=image_size, report=report
            )
            for key in ("test_list", "database_list")
        ]
    elif kind == "tfds":
        name = _setting(data_config, "tfds_name")
        parts = [
            sources.TfdsSource(name, split, data_dir=data_config.get("tfds_data_dir", None), image_size=image_size, report=report)
            for split in (train_split, test_split)
        ]
    else:
        raise ValueError(f"config.data.source={kind!r} is not one of {SOURCES}")
    pool = sources.ConcatSource(parts)
    return pool, pool.partition


def build_retrieval_data(data_config, *, workdir: str | None) -> RetrievalData:
    """Builds the pool source of ``data_config`` and the subsets of its protocol.

    Args:
      data_config: ``config.data`` (a ConfigDict or dict), see the interfaces: ``source``, ``root``,
        splits and lists, ``tfds_name``/``tfds_data_dir``, ``path``, ``image_size``, ``protocol``,
        ``num_query_per_class``, ``num_train_per_class``, ``seed``; and ``cache``: ``"auto"`` (default:
        decode image files once into memory when they take at most 2 GiB decoded), ``"memory"`` or
        ``"none"`` (decode on every read).
      workdir: the split file ``<workdir>/splits.json`` is written or re-used there, and skipped
        images are also logged to ``<workdir>/load_report.jsonl`` (so grain worker processes' skips
        reach the report). ``None`` keeps everything in memory.

    Returns:
      A :class:`RetrievalData` whose subsets all index the same pool source.

    >>> data = build_retrieval_data({"source": "digits", "protocol": "digits", "seed": 0}, workdir=None)
    >>> len(data.query), len(data.database), len(data.train), data.image_shape, data.num_classes
    (500, 1297, 1297, (8, 8, 1), 10)
    """
    log_path = None
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        log_path = os.path.join(workdir, LOAD_REPORT_FILE_NAME)
    report = LoadReport(log_path)
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
        workdir=workdir,
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
