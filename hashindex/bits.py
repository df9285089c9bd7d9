"""Conversion between 0/1 bit arrays and the packed uint8 rows indexes store.

Bit order is numpy's default, ``bitorder="big"``: bit j of a code is bit
``7 - j % 8`` of byte ``j // 8``, so ``pack_bits(b)`` equals
``numpy.packbits(b, axis=-1)``. Hamming distance does not depend on the order,
but codes packed elsewhere must use the same one to round-trip through
``unpack_bits``.
"""
from __future__ import annotations

import numpy as np

from ._validate import _type_name, int_arg


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Packs 0/1 values along the last axis: shape (..., nbits) -> (..., ceil(nbits / 8)) uint8.

    The last byte is zero-padded when nbits is not a multiple of 8, as numpy.packbits does.
    """
    if not isinstance(bits, np.ndarray):
        raise TypeError(f"bits: expected a numpy.ndarray of 0/1 values, got {_type_name(bits)}")
    if bits.dtype != np.bool_ and bits.dtype.kind not in "iu":
        raise TypeError(f"bits: expected a bool or integer dtype holding 0/1, got {bits.dtype}")
    if bits.ndim == 0:
        raise ValueError("bits: expected at least 1 dimension (..., nbits), got a scalar")
    if bits.dtype != np.bool_ and bits.size and (bits.min() < 0 or bits.max() > 1):
        raise ValueError(f"bits: expected only 0 and 1, got values in [{bits.min()}, {bits.max()}]")
    return np.packbits(bits.astype(np.bool_, copy=False), axis=-1, bitorder="big")


def unpack_bits(codes: np.ndarray, nbits: int | None = None) -> np.ndarray:
    """Inverse of pack_bits: (..., code_size) uint8 -> (..., nbits) uint8 of 0/1.

    nbits defaults to 8 * code_size; a smaller value drops the padding bits.
    """
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8:
        raise TypeError(f"codes: expected a numpy.ndarray of uint8, got {_type_name(codes)}")
    if codes.ndim == 0:
        raise ValueError("codes: expected at least 1 dimension (..., code_size), got a scalar")
    width = 8 * codes.shape[-1]
    if nbits is None:
        nbits = width
    nbits = int_arg(nbits, "nbits", minimum=0)
    if nbits > width or nbits <= width - 8 and width > 0:
        raise ValueError(f"nbits: {codes.shape[-1]} bytes per code hold {width - 7}..{width} bits, got {nbits}")
    return np.unpackbits(codes, axis=-1, count=nbits, bitorder="big")
