"""Argument checks and the relevance / AP arithmetic shared by the metrics."""
from __future__ import annotations

import numpy as np

from jaxretrieval import codes
from jaxretrieval.search._hamming import to_words

# Database entries handled per query chunk: bounds a chunk's ranking (its int32 indices and keys).
CHUNK_ENTRIES = 1 << 24


def as_array(name: str, value) -> np.ndarray:
    """``value`` as a real or boolean numpy array without NaN or infinite values."""
    array = np.asarray(value)
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers or booleans, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values (shape {array.shape})")
    return array


def code_bits(name: str, values) -> np.ndarray:
    """``[n, num_bits]`` bool bits of non-empty codes (:func:`jaxretrieval.codes.code_bits`)."""
    shape = np.shape(values)
    if len(shape) != 2 or 0 in shape:
        raise ValueError(f"{name} must be a non-empty [n, num_bits] array, got shape {shape}")
    return np.asarray(codes.code_bits(values, name=name))


def label_words(name: str, labels, num_rows: int, num_classes: int | None = None) -> np.ndarray:
    """Multi-hot labels ``[n, num_classes]`` -> ``[n, words]`` uint32: the positive labels as bits.

    The bits are :func:`jaxretrieval.codes.pack_codes`'s layout read four bytes at a time (as the
    Hamming search reads codes); only ``&`` tests between rows are made of them.
    """
    array = as_array(name, labels)
    if array.ndim != 2 or array.shape[0] != num_rows or array.shape[1] == 0:
        raise ValueError(f"{name} must have shape [{num_rows}, num_classes], got {array.shape}")
    if num_classes is not None and array.shape[1] != num_classes:
        raise ValueError(
            f"{name} has {array.shape[1]} classes but the other labels have {num_classes} (shape {array.shape})"
        )
    return np.asarray(to_words(codes.pack_codes(array > 0)))


def positive_int(name: str, value, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def query_slices(num_queries: int, entries_per_query: int, *, most: int = 1024) -> list[slice]:
    """Query chunks of a power-of-two size whose ``[chunk, entries_per_query]`` arrays stay bounded."""
    size = 1 << max(0, (CHUNK_ENTRIES // max(entries_per_query, 1)).bit_length() - 1)
    size = max(1, min(size, most, 1 << max(0, num_queries - 1).bit_length()))
    return [slice(start, min(start + size, num_queries)) for start in range(0, num_queries, size)]


def ranked_relevance(query_masks: np.ndarray, db_masks: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``[q, k]`` bool: item ``indices[i, j]`` shares a label with query ``i``; index -1 never does."""
    if db_masks.shape[1] == 1:  # up to 32 classes: one word per row, 2-D arrays of the narrowest type
        width = np.min_scalar_type(int(db_masks.max(initial=0)))
        shared = (db_masks[:, 0].astype(width)[indices] & query_masks[:, :1].astype(width)) != 0
    else:
        shared = (db_masks[indices] & query_masks[:, None, :]).any(axis=-1)
    return shared & (indices >= 0)


def num_relevant(query_masks: np.ndarray, db_masks: np.ndarray) -> np.ndarray:
    """``[q]`` int64: database items sharing a label with each query, per distinct database label set."""
    label_sets, set_sizes = np.unique(db_masks, axis=0, return_counts=True)
    step = max(1, CHUNK_ENTRIES // label_sets.size)
    return np.concatenate([
        ((query_masks[start : start + step, None, :] & label_sets[None]) != 0).any(axis=-1) @ set_sizes
        for start in range(0, query_masks.shape[0], step)
    ] or [np.zeros(0, np.int64)])


def average_precision(relevant: np.ndarray, normaliser: np.ndarray | None = None) -> np.ndarray:
    """``[q]`` AP of ranked relevance ``[q, k]``: sum over relevant positions of (rank among the
    relevant / position), divided by ``normaliser`` (default: relevant items found); 0 where that is 0."""
    rows, positions = np.divmod(np.flatnonzero(relevant), relevant.shape[1])  # 1-D scan: faster than 2-D
    found = np.bincount(rows, minlength=relevant.shape[0])
    rank_among_relevant = np.arange(1, rows.size + 1) - (np.cumsum(found) - found)[rows]
    precision_sum = np.bincount(rows, weights=rank_among_relevant / (positions + 1.0), minlength=relevant.shape[0])
    normaliser = found if normaliser is None else normaliser
    return np.where(normaliser > 0, precision_sum / np.maximum(normaliser, 1), 0.0)
