"""Images -> normal and abnormal anatomy codes, ready for hashindex; pseudo-normal images; labels."""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .hashing import CodeHasher
from .model import DecompositionNet
from .train import model_from_checkpoint, read_checkpoint

SHIPPED = "small.pt"


def shipped_checkpoint() -> Path:
    """The small model trained on phantoms that ships inside the package (see weights/README.md)."""
    return Path(str(resources.files("hashindex.encoder") / "weights" / SHIPPED))


@dataclass
class Codes:
    normal_indices: np.ndarray  # (N, g, g) int64 codebook indices
    abnormal_indices: np.ndarray
    normal_bits: np.ndarray  # (N, normal_nbits // 8) uint8, for hashindex
    abnormal_bits: np.ndarray
    normal_nbits: int
    abnormal_nbits: int
    latents: tuple[np.ndarray, np.ndarray] | None = None  # continuous (N, D, g, g) pair, if asked for


class CodeEncoder:
    """A trained decomposition network with the hashers of its two codebooks."""

    # Default hashing measured by benchmarks/bench_codes.py on held-out phantom slices (shipped model):
    # ITQ signatures of 16 bits per cell (1024 bits per code) keep recall@10 of the latent Euclidean
    # ranking at 0.72 (normal) / 0.69 (abnormal), against 0.62 / 0.64 for 8192-bit one-hot codes.
    def __init__(self, model: DecompositionNet, method: str = "signature", bits: int | None = 16,
                 device: str = "cpu", batch_size: int = 128):
        self.model = model.to(device).eval()
        self.cfg = model.cfg
        self.device, self.batch_size = device, batch_size
        cells = self.cfg.grid**2
        self.normal_hasher = CodeHasher(model.normal_vq.codebook.cpu().numpy(), cells, method, bits)
        self.abnormal_hasher = CodeHasher(model.abnormal_vq.codebook.cpu().numpy(), cells, method, bits)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, **kwargs) -> "CodeEncoder":
        """From a checkpoint written by ``hashindex train`` (default: the shipped small model)."""
        state = read_checkpoint(shipped_checkpoint() if path is None else path)
        return cls(model_from_checkpoint(state, kwargs.get("device", "cpu")), **kwargs)

    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    def _check(self, images) -> np.ndarray:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images: expected a numpy array or torch tensor, got {type(images).__name__}")
        if images.ndim == 3:
            images = images[None]
        c, s = self.cfg.in_channels, self.cfg.image_size
        if images.ndim != 4 or images.shape[1:] != (c, s, s):
            raise ValueError(f"images: expected shape (N, {c}, {s}, {s}) (T1, T1CE, T2, FLAIR slices, z-scored), "
                             f"got {images.shape}")
        if images.dtype.kind not in "fiu":
            raise TypeError(f"images: expected a numeric array, got dtype {images.dtype}")
        images = np.ascontiguousarray(images, dtype=np.float32)
        if not np.isfinite(images).all():
            raise ValueError("images: contains NaN or infinite values")
        return images

    @torch.no_grad()
    def _batches(self, images, fn) -> list:
        images = self._check(images)
        return [fn(torch.from_numpy(images[i:i + self.batch_size]).to(self.device))
                for i in range(0, len(images), self.batch_size)] or [fn(torch.zeros((0,) + images.shape[1:]))]

    def _indices(self, x: torch.Tensor, keep_latents: bool):
        z_n, z_a = self.model.latents(x)
        grid = self.cfg.grid
        flat = lambda z: z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # noqa: E731
        n = self.model.normal_vq.nearest(flat(z_n)).view(-1, grid, grid)
        a = self.model.abnormal_vq.nearest(flat(z_a)).view(-1, grid, grid)
        latents = (z_n.cpu().numpy(), z_a.cpu().numpy()) if keep_latents else None
        return n.cpu().numpy(), a.cpu().numpy(), latents

    def encode(self, images, keep_latents: bool = False) -> Codes:
        """Index maps and packed bits of both codes for (N, 4, S, S) z-scored slices; with
        ``keep_latents`` also the continuous latents of the same forward pass."""
        parts = self._batches(images, lambda x: self._indices(x, keep_latents))
        normal = np.concatenate([p[0] for p in parts]).astype(np.int64)
        abnormal = np.concatenate([p[1] for p in parts]).astype(np.int64)
        latents = None
        if keep_latents:
            latents = (np.concatenate([p[2][0] for p in parts]), np.concatenate([p[2][1] for p in parts]))
        return Codes(normal, abnormal, self.normal_hasher(normal), self.abnormal_hasher(abnormal),
                     self.normal_hasher.nbits, self.abnormal_hasher.nbits, latents)

    def latents(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Continuous (unquantised) normal and abnormal latents, (N, D, g, g) each."""
        return self.encode(images, keep_latents=True).latents

    def pseudo_normal(self, images) -> np.ndarray:
        """The image without its tumour: the NAC decoded with an empty tumour map."""
        return np.concatenate(self._batches(images, lambda x: self.model(x)["pseudo_normal"].cpu().numpy()))

    def segment(self, images) -> np.ndarray:
        """(N, S, S) uint8 tumour labels (0 none, 1 necrotic/non-enhancing, 2 oedema, 3 enhancing)."""
        parts = self._batches(images, lambda x: self.model(x)["seg_logits"].argmax(1).to(torch.uint8).cpu().numpy())
        return np.concatenate(parts)
