"""Binary codes: the one sign binarisation and the one bit layout of jaxretrieval.

Codes are ``+-1`` for the math and packed bytes for storage and search. Every module that binarises
or packs (search, metrics, the index, the classic hashes, the methods' evaluation) goes through here.

- **Binarisation** (:func:`sign_codes`, :func:`code_bits`): a real value ``>= 0`` is ``+1`` (bit 1),
  a negative one ``-1`` (bit 0); ``sign(0) = +1``, as the CSQ, DeepHash and ITQ references do.
  Booleans are bits already. Integer codes must hold ``-1`` and ``+1`` only: ``0/1`` integers are
  refused (read at 0 they would all become ``+1``), and unsigned integers too (packed bytes or 0/1
  bits? say which: :func:`pack_codes` output is bytes, booleans are bits).
- **Bit layout** (:func:`pack_codes` / :func:`unpack_codes`): ``[n, num_bits]`` codes become
  ``[n, ceil(num_bits / 8)]`` ``uint8``; bit ``i`` goes to byte ``i // 8`` at position ``7 - i % 8``
  (most significant bit first), the unused bits of the last byte are 0. This is exactly
  ``np.packbits(codes >= 0, axis=1)`` (``bitorder="big"``), the layout faiss ``IndexBinaryFlat``
  takes, so packed codes go to and from faiss without conversion.

Checks that need values (NaN, integer codes other than ``+-1``) run on concrete arrays; under
``jax.jit`` only shapes and dtypes are checked.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval._concrete import is_concrete

__all__ = ["code_bits", "pack_codes", "sign_codes", "unpack_codes"]

_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def code_bits(codes, *, name: str = "codes") -> jax.Array:
    """``[n, num_bits]`` codes -> ``[n, num_bits]`` bool bits, True where the code is ``+1``.

    Args:
      codes: ``[n, num_bits]`` real values (bit 1 where ``>= 0``), ``+-1`` signed integers, or
        booleans (used as they are).
      name: the argument's name in error messages.

    Raises:
      ValueError: ``codes`` is not 2-D, holds NaN, or (signed integers) values other than ``+-1``.
      TypeError: unsigned integers (ambiguous) or a non-numeric dtype.

    Example:
      >>> code_bits(np.array([[0.5, -0.1, 0.0]]))
      Array([[ True, False,  True]], dtype=bool)
    """
    if not isinstance(codes, jax.Array):
        codes = np.asarray(codes)
    if codes.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, +-1 integers or booleans, got dtype {codes.dtype}")
    codes = jnp.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"{name} must have shape [n, num_bits], got shape {codes.shape}")
    if codes.dtype == jnp.bool_:
        return codes
    if jnp.issubdtype(codes.dtype, jnp.unsignedinteger):
        raise TypeError(
            f"{name}: unsigned {codes.dtype} codes are ambiguous (every value is >= 0): pass +-1 or real "
            "codes, booleans for bits, or bytes from pack_codes where packed codes are expected"
        )
    if jnp.issubdtype(codes.dtype, jnp.integer):
        host = np.asarray(codes) if is_concrete(codes) else None
        if host is not None and host.size and ((host != 1) & (host != -1)).any():
            found = np.unique(host)[:6].tolist()
            raise ValueError(
                f"{name}: integer codes must be -1 or +1, found values {found}; pass booleans for "
                "0/1 bits, or real values (binarised at 0)"
            )
    elif is_concrete(codes) and np.isnan(np.asarray(codes)).any():
        raise ValueError(f"{name} of shape {codes.shape} contain NaN; cannot binarise them")
    return codes >= 0


def sign_codes(values, *, name: str = "values") -> jax.Array:
    """``+-1`` int8 codes of real values: ``+1`` where ``>= 0`` (``sign(0) = +1``), ``-1`` elsewhere.

    Accepts whatever :func:`code_bits` accepts; runs under ``jax.jit``.

    Example:
      >>> sign_codes(np.array([[0.3, -2.0, 0.0]]))
      Array([[ 1, -1,  1]], dtype=int8)
    """
    return jnp.where(code_bits(values, name=name), 1, -1).astype(jnp.int8)


def pack_codes(codes) -> jax.Array:
    """Packs ``[n, num_bits]`` codes into bytes, bit = 1 where the code is ``+1`` (see :func:`code_bits`).

    Args:
      codes: ``[n, num_bits]`` real, ``+-1`` integer or boolean codes.

    Returns:
      ``[n, ceil(num_bits / 8)]`` ``uint8``: bit ``i`` in byte ``i // 8`` at position ``7 - i % 8``
      (most significant first), trailing bits of the last byte zero; identical to
      ``np.packbits(codes >= 0, axis=1)`` and to what faiss ``IndexBinaryFlat`` expects.

    Raises:
      ValueError / TypeError: as :func:`code_bits`.

    Example:
      >>> pack_codes(np.array([[1, -1, -1, -1, -1, -1, -1, 1, 1]]))
      Array([[129, 128]], dtype=uint8)
    """
    bits = code_bits(codes)
    num_bits = bits.shape[1]
    num_bytes = -(-num_bits // 8)
    bits = jnp.pad(bits, ((0, 0), (0, 8 * num_bytes - num_bits)))
    weights = jnp.asarray(_BIT_WEIGHTS, jnp.uint8)
    return (bits.reshape(bits.shape[0], num_bytes, 8).astype(jnp.uint8) * weights).sum(-1, dtype=jnp.uint8)


def unpack_codes(packed, num_bits: int) -> jax.Array:
    """Inverse of :func:`pack_codes`: ``[n, num_bytes]`` ``uint8`` -> ``[n, num_bits]`` int8 ``+-1``.

    Example:
      >>> unpack_codes(np.array([[129, 128]], np.uint8), 9)
      Array([[ 1, -1, -1, -1, -1, -1, -1,  1,  1]], dtype=int8)
    """
    packed = jnp.asarray(packed)
    if packed.dtype != jnp.uint8 or packed.ndim != 2:
        raise TypeError(f"packed must be [n, num_bytes] uint8 (see pack_codes), got {packed.dtype} {packed.shape}")
    if isinstance(num_bits, bool) or not isinstance(num_bits, (int, np.integer)) or not (
        8 * (packed.shape[1] - 1) < num_bits <= 8 * packed.shape[1]
    ):
        raise ValueError(f"num_bits={num_bits!r} does not match packed codes of shape {packed.shape}")
    shifts = jnp.arange(7, -1, -1, dtype=jnp.uint8)
    bits = (packed[:, :, None] >> shifts) & 1
    bits = bits.reshape(packed.shape[0], 8 * packed.shape[1])[:, :num_bits].astype(jnp.int8)
    return 2 * bits - 1
