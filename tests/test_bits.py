import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hashindex


@given(n=st.integers(0, 20), nbits=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_pack_matches_numpy_and_round_trips(n, nbits, seed):
    bits = np.random.default_rng(seed).integers(0, 2, (n, nbits), dtype=np.uint8)
    packed = hashindex.pack_bits(bits)
    np.testing.assert_array_equal(packed, np.packbits(bits, axis=-1))
    np.testing.assert_array_equal(hashindex.unpack_bits(packed, nbits), bits)


def test_bit_order_is_big_endian_within_bytes():
    assert hashindex.pack_bits(np.array([1, 0, 0, 0, 0, 0, 0, 0])).tolist() == [128]
    assert hashindex.pack_bits(np.array([True] + [False] * 8)).tolist() == [128, 0]


def test_hamming_of_packed_equals_count_of_differing_bits():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, (2, 1, 96), dtype=np.uint8)
    d = hashindex.hamming_distances(hashindex.pack_bits(a), hashindex.pack_bits(b))
    assert d[0, 0] == (a != b).sum()


def test_bad_bits():
    with pytest.raises(TypeError, match="bits"):
        hashindex.pack_bits([0, 1])
    with pytest.raises(TypeError, match="float"):
        hashindex.pack_bits(np.zeros(8))
    with pytest.raises(ValueError, match="only 0 and 1"):
        hashindex.pack_bits(np.array([0, 2]))
    with pytest.raises(ValueError, match="nbits"):
        hashindex.unpack_bits(np.zeros((1, 2), np.uint8), 17)
    with pytest.raises(ValueError, match="nbits"):
        hashindex.unpack_bits(np.zeros((1, 2), np.uint8), 8)
    with pytest.raises(TypeError):
        hashindex.unpack_bits(np.zeros((1, 2), np.int8))
