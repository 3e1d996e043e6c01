"""jaxretrieval.codes: the one binarisation and the one bit layout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxretrieval import codes


# Shapes from small sets (each new shape compiles); the values are what varies.
@settings(max_examples=12)
@given(st.sampled_from([1, 8, 9, 64, 70]), st.sampled_from([0, 1, 5]), st.integers(0, 2**31 - 1))
def test_pack_is_numpy_packbits_of_the_sign_and_unpack_inverts_it(num_bits, num_rows, seed):
    values = np.random.default_rng(seed).standard_normal((num_rows, num_bits))
    values[:, :1] = 0.0  # sign(0) = +1
    packed = np.asarray(codes.pack_codes(values))
    np.testing.assert_array_equal(packed, np.packbits(values >= 0, axis=1))
    np.testing.assert_array_equal(np.asarray(codes.unpack_codes(packed, num_bits)), np.where(values >= 0, 1, -1))
    np.testing.assert_array_equal(np.asarray(codes.sign_codes(values)), np.where(values >= 0, 1, -1))


def test_sign_codes_runs_under_jit_and_maps_zero_to_plus_one():
    values = jnp.array([[0.0, -0.0, -1e-30, 3.0, -jnp.inf, jnp.inf]])
    expected = [[1, 1, -1, 1, -1, 1]]
    np.testing.assert_array_equal(jax.jit(codes.sign_codes)(values), expected)
    np.testing.assert_array_equal(codes.sign_codes(values), expected)
    assert codes.sign_codes(values).dtype == jnp.int8


def test_booleans_are_bits_and_signed_integers_must_be_plus_minus_one():
    np.testing.assert_array_equal(codes.code_bits(np.array([[True, False]])), [[True, False]])
    np.testing.assert_array_equal(codes.code_bits(np.array([[1, -1]], np.int32)), [[True, False]])
    with pytest.raises(ValueError, match=r"integer codes must be -1 or \+1, found values \[0, 1\]"):
        codes.pack_codes(np.array([[0, 1, 1]], np.int64))  # 0/1 read at 0 would all be +1
    with pytest.raises(TypeError, match="unsigned uint8 codes are ambiguous"):
        codes.pack_codes(np.array([[0, 1, 1]], np.uint8))
    with pytest.raises(ValueError, match="contain NaN"):
        codes.sign_codes(np.array([[np.nan, 1.0]]))
    with pytest.raises(TypeError, match="must hold real numbers"):
        codes.code_bits(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"shape \[n, num_bits\]"):
        codes.code_bits(np.ones(3))
    with pytest.raises(ValueError, match="num_bits=17 does not match"):
        codes.unpack_codes(np.zeros((1, 2), np.uint8), 17)


def test_every_module_binarises_and_packs_through_codes():
    # One layout: what search, metrics, the index and the classic hashes see is codes.pack_codes'.
    from jaxretrieval import classic_hashing, index, search

    assert search.pack_codes is codes.pack_codes and search.unpack_codes is codes.unpack_codes
    values = np.random.default_rng(0).standard_normal((5, 12)).astype(np.float32)
    hamming = index.HammingIndex(12)
    hamming.add(values)
    np.testing.assert_array_equal(hamming._codes, np.packbits(values >= 0, axis=1))
    linear_hash = classic_hashing.LinearHash(mean=jnp.zeros(12), projection=jnp.eye(12))
    np.testing.assert_array_equal(linear_hash.encode(values), codes.sign_codes(values))
