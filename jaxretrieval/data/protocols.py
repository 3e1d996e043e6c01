"""Retrieval protocols: deterministic query / train / database index sets, written down and re-used.

Every protocol draws from one labelled *pool* of ``N`` examples (``labels uint8 [N, C]`` multi-hot)
and, where it needs one, a ``partition int [N]`` telling where each example came from:

================== ============================================================================
protocol           query / train / database
================== ============================================================================
digits             50 queries per class; train = database = the rest
cifar10_I          100 queries + 500 train per class from train+test; database = the rest
                   (CIFAR-10: 1,000 / 5,000 / 54,000, train and database disjoint)
cifar10_II         query = test part (partition 1); train = database = train part (partition 0), as SPQ
deephash_cifar10_1 100 queries + 500 train per class; database = all but the queries (train inside it),
                   DeepHash-pytorch's ``cifar10-1``
per_class          ``num_query_per_class`` + ``num_train_per_class`` per class; database = all but the
                   queries; ``num_train_per_class=0`` makes train = database
list_files         the given lists: partition 0 = train, 1 = query (test list), 2 = database
================== ============================================================================

Per-class sampling visits the classes in order and draws without replacement from the examples of
that class not drawn yet, so a multi-label example is drawn at most once. Query and train index sets
are sorted. The database is not: every protocol but ``list_files`` puts it in a fixed pseudo-random
order drawn from the seed (``list_files`` keeps the database list's order). Rankings break distance
ties by database position (as faiss does), and pools are often stored one class after another (an
image folder lists its class folders in turn): in that order, ties would favour the first classes.
On CIFAR-10 protocol II a 64-bit CSQ model (6,324 distinct codes for 50,000 images) scored mAP@1000
0.365 with its class-sorted database and 0.527 to 0.537 with shuffled ones, its tie-aware mAP@1000
being 0.533 (``python -m studies.tie_order``).
In a random order, index ties are one unbiased draw of the random tie orders that the tie-aware mAP
averages over, as in the references, whose CIFAR-10 database keeps the data set's own mixed order.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence

import numpy as np


# protocol -> (queries per class, train per class, train examples also in the database); None = config.
_PER_CLASS_PROTOCOLS = {
    "digits": (50, 0, True),
    "cifar10_I": (100, 500, False),
    "deephash_cifar10_1": (100, 500, True),
    "per_class": (None, None, True),
}
PROTOCOLS = (*_PER_CLASS_PROTOCOLS, "cifar10_II", "list_files")
# Stream of the database-order draw, so that it does not depend on the per-class draws.
_DATABASE_ORDER_STREAM = 1


@dataclasses.dataclass(frozen=True)
class Splits:
    """``int64`` index arrays into the pool: query and train sorted, the database in its ranking order."""

    query: np.ndarray
    train: np.ndarray
    database: np.ndarray

    def as_lists(self) -> dict[str, list[int]]:
        return {name: getattr(self, name).tolist() for name in ("query", "train", "database")}


def _sorted_indices(values) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=np.int64))


def _database_order(database: np.ndarray, seed: int) -> np.ndarray:
    """The database indices in a pseudo-random order fixed by ``seed`` (see the module docstring)."""
    return np.random.default_rng([_DATABASE_ORDER_STREAM, seed]).permutation(database)


def _sample_per_class(
    labels: np.ndarray,
    num_query: int,
    num_train: int,
    seed: int,
    class_names: Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    drawn = np.zeros(len(labels), bool)
    queries, train = [], []
    for class_id in range(labels.shape[1]):
        candidates = np.flatnonzero((labels[:, class_id] > 0) & ~drawn)
        if len(candidates) < num_query + num_train:
            name = class_names[class_id] if class_names else class_id
            raise ValueError(
                f"class {name!r} has {len(candidates)} examples left to draw from, but the protocol needs "
                f"{num_query} queries + {num_train} training examples per class"
            )
        chosen = rng.permutation(candidates)[: num_query + num_train]
        drawn[chosen] = True
        queries.append(chosen[:num_query])
        train.append(chosen[num_query:])
    return _sorted_indices(np.concatenate(queries)), _sorted_indices(np.concatenate(train))


def protocol_parameters(protocol: str, *, num_query_per_class: int, num_train_per_class: int) -> dict:
    """The parameters that determine ``protocol``'s splits (recorded in, and checked against, the file)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if protocol not in _PER_CLASS_PROTOCOLS:
        return {}
    num_query, num_train, train_in_database = _PER_CLASS_PROTOCOLS[protocol]
    return {
        "num_query_per_class": num_query_per_class if num_query is None else num_query,
        "num_train_per_class": num_train_per_class if num_train is None else num_train,
        "train_in_database": train_in_database,
    }


def make_splits(
    labels: np.ndarray,
    *,
    protocol: str,
    seed: int = 0,
    partition: np.ndarray | None = None,
    num_query_per_class: int = 100,
    num_train_per_class: int = 500,
    class_names: Sequence[str] | None = None,
) -> Splits:
    """Builds the query / train / database index sets of ``protocol`` (see the module docstring).

    Args:
      labels: ``uint8 [N, C]`` multi-hot labels of the pool.
      protocol: one of :data:`PROTOCOLS`.
      seed: draws of the per-class protocols; the same seed and labels give the same splits.
      partition: ``int [N]`` origin of each example (``cifar10_II``: 0 train, 1 test; ``list_files``:
        0 train, 1 query, 2 database); required by those two protocols.
      num_query_per_class, num_train_per_class: for ``per_class`` only.
      class_names: to name a class in errors.

    >>> labels = np.eye(2, dtype=np.uint8)[np.array([0, 1] * 5)]
    >>> splits = make_splits(labels, protocol="per_class", num_query_per_class=1, num_train_per_class=2)
    >>> len(splits.query), len(splits.train), len(splits.database)
    (2, 4, 8)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be multi-hot [N, C], got shape {labels.shape}")
    parameters = protocol_parameters(
        protocol, num_query_per_class=num_query_per_class, num_train_per_class=num_train_per_class
    )
    everything = np.arange(len(labels), dtype=np.int64)
    if protocol in _PER_CLASS_PROTOCOLS:
        num_query, num_train = parameters["num_query_per_class"], parameters["num_train_per_class"]
        query, train = _sample_per_class(labels, num_query, num_train, seed, class_names)
        held_out = np.union1d(query, train) if not parameters["train_in_database"] else query
        database = np.setdiff1d(everything, held_out)
        if num_train == 0:
            train = database
        return Splits(query, train, _database_order(database, seed))
    expected_parts = 2 if protocol == "cifar10_II" else 3
    if partition is None or len(partition) != len(labels):
        raise ValueError(f"protocol {protocol!r} needs a partition array of length {len(labels)}")
    partition = np.asarray(partition)
    sizes = [int((partition == part).sum()) for part in range(expected_parts)]
    if min(sizes) == 0:
        raise ValueError(f"protocol {protocol!r} needs {expected_parts} non-empty parts, got sizes {sizes}")
    if protocol == "cifar10_II":
        train = everything[partition == 0]
        return Splits(query=everything[partition == 1], train=train, database=_database_order(train, seed))
    return Splits(query=everything[partition == 1], train=everything[partition == 0], database=everything[partition == 2])


def _sha256(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _indices_checksum(index_lists: dict[str, list[int]]) -> str:
    return _sha256(*(np.asarray(index_lists[name], np.int64) for name in ("query", "train", "database")))


def load_or_make_splits(
    labels: np.ndarray,
    *,
    protocol: str,
    seed: int,
    splits_file: str | os.PathLike | None,
    partition: np.ndarray | None = None,
    num_query_per_class: int = 100,
    num_train_per_class: int = 500,
    class_names: Sequence[str] | None = None,
) -> Splits:
    """:func:`make_splits`, written to ``splits_file`` with a checksum and re-used from it.

    The file records the protocol, its parameters, the seed and a fingerprint of the pool (its size and
    a hash of its labels and partition). When the file exists its indices are re-used as written,
    after checking that the checksum matches them and that it was written for the same protocol,
    parameters, seed and data; otherwise a ``ValueError`` says what differs and where the file is.
    With ``splits_file=None`` nothing is read or written.
    """
    labels = np.asarray(labels, np.uint8)
    header = {
        "protocol": protocol,
        "seed": int(seed),
        "parameters": protocol_parameters(
            protocol, num_query_per_class=num_query_per_class, num_train_per_class=num_train_per_class
        ),
        "data": {
            "num_examples": int(len(labels)),
            "num_classes": int(labels.shape[1]),
            "fingerprint": _sha256(labels, np.zeros(0) if partition is None else np.asarray(partition, np.int64)),
        },
    }
    path = None if splits_file is None else os.fspath(splits_file)
    if path is not None and os.path.exists(path):
        with open(path, encoding="utf-8") as split_file:
            stored = json.load(split_file)
        index_lists = {name: stored.get(name, []) for name in ("query", "train", "database")}
        if stored.get("checksum") != _indices_checksum(index_lists):
            raise ValueError(f"{path}: checksum does not match the stored indices (file damaged or edited)")
        differences = [
            f"{key}: file has {stored.get(key)!r}, this run has {value!r}"
            for key, value in header.items()
            if stored.get(key) != value
        ]
        if differences:
            raise ValueError(
                f"{path} was written for another split ({'; '.join(differences)}); "
                "use a new run directory or delete the file to draw new splits"
            )
        return Splits(
            query=_sorted_indices(index_lists["query"]),
            train=_sorted_indices(index_lists["train"]),
            database=np.asarray(index_lists["database"], np.int64),  # its ranking order, as written
        )
    splits = make_splits(
        labels,
        protocol=protocol,
        seed=seed,
        partition=partition,
        num_query_per_class=num_query_per_class,
        num_train_per_class=num_train_per_class,
        class_names=class_names,
    )
    if path is not None:
        index_lists = splits.as_lists()
        content = {**header, "checksum": _indices_checksum(index_lists), **index_lists}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Write-then-rename: every host may write the same file; a reader never sees half of it.
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".splits-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as split_file:
            json.dump(content, split_file)
        os.replace(temporary, path)
    return splits
