"""Argument checks shared by the search functions: errors that name the argument and its shape."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be a Python int, got {type(k).__name__} {k!r}")
    if k <= 0:
        raise ValueError(f"k must be positive, got k={k}")
    return int(k)


def check_packed(name: str, packed) -> jax.Array:
    packed = jnp.asarray(packed)
    if packed.dtype != jnp.uint8:
        raise TypeError(
            f"{name} must be packed uint8 codes (see pack_codes), got dtype {packed.dtype} "
            f"with shape {packed.shape}"
        )
    if packed.ndim != 2:
        raise ValueError(f"{name} must have shape [n, num_bytes], got shape {packed.shape}")
    return packed


def check_queries_database(queries, database, num_bits):
    """Checked ``(queries, database, num_bits)`` of packed codes."""
    queries = check_packed("queries", queries)
    database = check_packed("database", database)
    if queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"queries and database must have the same number of bytes per code, got queries "
            f"{queries.shape} and database {database.shape}"
        )
    if database.shape[0] == 0:
        raise ValueError(f"database is empty (shape {database.shape}); add codes before searching")
    if queries.shape[1] == 0:
        raise ValueError(f"codes have zero bytes (queries {queries.shape})")
    num_bytes = queries.shape[1]
    if num_bits is None:
        num_bits = 8 * num_bytes
    elif isinstance(num_bits, bool) or not isinstance(num_bits, (int, np.integer)) or not (
        8 * (num_bytes - 1) < num_bits <= 8 * num_bytes
    ):
        raise ValueError(
            f"num_bits={num_bits!r} does not match {num_bytes} bytes per packed code "
            f"(expected {8 * (num_bytes - 1) + 1}..{8 * num_bytes})"
        )
    return queries, database, int(num_bits)
