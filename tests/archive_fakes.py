"""A stand-in encoder for the archive's tests: deterministic, numpy only, milliseconds per case, so
that crash tests can start dozens of processes. It hashes a 4x-downsampled slice by random
projections (similar slices get near codes) and calls bright FLAIR pixels tumour."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

SIZE = 32


class FakeEncoder:
    image_size = SIZE

    def __init__(self, seed: int = 0, nbits: int = 64) -> None:
        rng = np.random.default_rng(seed)
        dims = 4 * (SIZE // 4) ** 2
        self.seed, self.nbits = seed, nbits
        self.normal = rng.standard_normal((dims, nbits))
        self.abnormal = rng.standard_normal((dims, nbits))

    def identity(self) -> dict:
        return {"sha256": f"fake-{self.seed}-{self.nbits}", "checkpoint": None, "hashing": "fake", "bits": 1,
                "image_size": SIZE, "normal_nbits": self.nbits, "abnormal_nbits": self.nbits}

    def encode(self, images: np.ndarray, present=None) -> SimpleNamespace:
        images = np.asarray(images, np.float32)
        assert images.shape[1:] == (4, SIZE, SIZE), images.shape
        small = images.reshape(len(images), 4, SIZE // 4, 4, SIZE // 4, 4).mean(axis=(3, 5)).reshape(len(images), -1)
        pack = lambda x: np.packbits(x > 0, axis=1, bitorder="little")  # noqa: E731
        return SimpleNamespace(normal_bits=pack(small @ self.normal), abnormal_bits=pack(small @ self.abnormal),
                               normal_nbits=self.nbits, abnormal_nbits=self.nbits, images=images)

    def tumour_pixels(self, codes: SimpleNamespace) -> np.ndarray:
        return (codes.images[:, 3] > 2.0).sum(axis=(1, 2)).astype(np.int64)
