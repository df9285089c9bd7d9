"""Index maps -> binary codes for hashindex.

An image's code is a grid of codebook indices (8 x 8 for both configs). Two ways to turn it into bits:

- ``onehot``: K bits per cell, bit k set when the cell holds codeword k. Hamming distance is exactly
  2 x (number of cells that differ), whatever the codewords; K x cells bits (8192 for the small model).
- ``signature``: b bits per codeword, learned from the codebook so that Hamming distance between two
  codewords' signatures tracks their Euclidean distance: PCA to b dimensions and the ITQ rotation
  (Gong & Lazebnik, CVPR 2011) for b <= D, sign random projections (Charikar 2002) beyond D.
  b x cells bits.

Which one ranks like the Euclidean distance between the quantised latents is measured, not assumed:
benchmarks/bench_codes.py prints recall@k of each against that ranking. On held-out phantom slices
with the shipped model, 16-bit signatures (1024 bits per code) keep more of it than one-hot codes of
32 times the bits, so signatures are the default (benchmarks/RESULTS.md, "Codes: from index maps
to bits").
"""
from __future__ import annotations

import numpy as np

import hashindex

METHODS = ("onehot", "signature")


def itq_signatures(codebook: np.ndarray, bits: int, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """(K, bits) 0/1 signatures of the codewords."""
    rng = np.random.default_rng(seed)
    x = np.asarray(codebook, dtype=np.float64)
    x = x - x.mean(0)
    if bits > x.shape[1]:
        return (x @ rng.standard_normal((x.shape[1], bits)) > 0).astype(np.uint8)
    v = x @ np.linalg.svd(x, full_matrices=False)[2][:bits].T
    r = np.linalg.qr(rng.standard_normal((bits, bits)))[0]
    for _ in range(iterations):
        b = np.where(v @ r >= 0, 1.0, -1.0)
        u, _, wt = np.linalg.svd(v.T @ b)
        r = u @ wt
    return (v @ r >= 0).astype(np.uint8)


class CodeHasher:
    """Packs (N, g, g) index maps into (N, nbits // 8) uint8 rows, ``hashindex.pack_bits`` order."""

    def __init__(self, codebook: np.ndarray, cells: int, method: str = "onehot", bits: int | None = None, seed: int = 0):
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        size = int(codebook.shape[0])
        if method == "onehot":
            if bits not in (None, size):
                raise ValueError(f"bits: one-hot codes take K = {size} bits per cell, got {bits}")
            self.table = np.eye(size, dtype=np.uint8)
        else:
            if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
                raise ValueError(f"bits: expected a positive int of bits per cell, got {bits!r}")
            self.table = itq_signatures(codebook, bits, seed)
        self.method, self.cells, self.bits_per_cell = method, cells, self.table.shape[1]
        self.nbits = cells * self.bits_per_cell
        if self.nbits % 8:
            raise ValueError(f"bits: cells x bits per cell = {self.nbits} must be a multiple of 8")

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.ndim != 3 or indices.shape[1] * indices.shape[2] != self.cells:
            raise ValueError(f"indices: expected (N, g, g) with g*g = {self.cells}, got {indices.shape}")
        bits = self.table[indices.reshape(len(indices), -1)]
        return hashindex.pack_bits(bits.reshape(len(indices), -1))


def latent_distances(codebook: np.ndarray, queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance between quantised latents: sum over cells of codeword distances."""
    cb = np.asarray(codebook, dtype=np.float64)
    pair = ((cb[:, None, :] - cb[None, :, :]) ** 2).sum(-1)
    q = queries.reshape(len(queries), -1)
    d = database.reshape(len(database), -1)
    out = np.zeros((len(q), len(d)))
    for cell in range(q.shape[1]):
        out += pair[q[:, cell][:, None], d[:, cell][None, :]]
    return out


def ranking_recall(codebook: np.ndarray, queries: np.ndarray, database: np.ndarray, hasher: CodeHasher, k: int = 10,
                   ties: bool = False) -> float:
    """Share of each query's k nearest database items by latent Euclidean distance that the Hamming
    search of its hashed codes returns in its own top k (mean over queries). With ``ties``, a
    returned item counts when it is as near (in latent distance) as the k-th reference item: when
    many items share the k-th distance, which k of them the reference lists is arbitrary."""
    dist = latent_distances(codebook, queries, database)
    truth = np.argsort(dist, axis=1, kind="stable")[:, :k]
    index = hashindex.FlatIndex(hasher.nbits)
    index.add(hasher(database))
    found = index.search(hasher(queries), k).ids
    if ties:
        kth = np.take_along_axis(dist, truth[:, -1:], axis=1)
        return float(np.mean([(d[f[f >= 0]] <= t[0] + 1e-9).sum() / k for d, f, t in zip(dist, found, kth)]))
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)]))
