"""Images -> normal and abnormal anatomy codes, ready for hashindex; pseudo-normal images; labels."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .data import SliceSet
from .hashing import CodeHasher
from .model import DecompositionNet
from .train import model_from_checkpoint, read_checkpoint

SHIPPED = "base.pt"
DECODER_OUTPUTS = ("segment", "pseudo_normal", "reconstruct")


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

    def select(self, rows) -> Codes:
        """The codes of these rows (an index array, a slice or a boolean mask)."""
        latents = None if self.latents is None else (self.latents[0][rows], self.latents[1][rows])
        return Codes(self.normal_indices[rows], self.abnormal_indices[rows], self.normal_bits[rows],
                     self.abnormal_bits[rows], self.normal_nbits, self.abnormal_nbits, latents)


class CodeEncoder:
    """A trained decomposition network with the hashers of its two codebooks."""

    # Default hashing chosen by benchmarks/bench_codes.py (RESULTS.md): ITQ signatures of 16 bits per
    # cell (1024 bits per code) keep more of the latent Euclidean ranking than one-hot cells.
    # Batches of 16 keep torch's working set small: with glibc's default thresholds they encode
    # faster than batches of 128, and no slower once tuned (RESULTS.md, "Encoding throughput").
    def __init__(self, model: DecompositionNet, method: str = "signature", bits: int | None = 16,
                 device: str = "cpu", batch_size: int = 16):
        self.model = model.to(device).eval()
        self.cfg = model.cfg
        self.device, self.batch_size = device, batch_size
        cells = self.cfg.grid**2
        self.normal_hasher = CodeHasher(model.normal_vq.codebook.cpu().numpy(), cells, method, bits)
        self.abnormal_hasher = CodeHasher(model.abnormal_vq.codebook.cpu().numpy(), cells, method, bits)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, **kwargs) -> CodeEncoder:
        """From a checkpoint written by ``hashindex train`` (default: the shipped base model)."""
        path = shipped_checkpoint() if path is None else path
        encoder = cls(model_from_checkpoint(read_checkpoint(path), kwargs.get("device", "cpu")), **kwargs)
        encoder.checkpoint = Path(path)
        return encoder

    checkpoint: Path | None = None  # the file it was loaded from, if any

    def identity(self) -> dict:
        """What makes two encoders give the same codes: a SHA-256 of the weights (parameters and
        buffers, by name; the same whatever file they came from) and the hashing. An archive records it."""
        import hashlib

        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        for hasher in (self.normal_hasher, self.abnormal_hasher):
            digest.update(np.ascontiguousarray(hasher.table).tobytes())
        return {"sha256": digest.hexdigest(), "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
                "hashing": self.normal_hasher.method, "bits": self.normal_hasher.bits_per_cell,
                "image_size": self.image_size, "normal_nbits": self.normal_hasher.nbits,
                "abnormal_nbits": self.abnormal_hasher.nbits}

    def tumour_pixels(self, codes: Codes) -> np.ndarray:
        """(N,) int64: pixels the segmentation decoder labels tumour, from the abnormal codes alone."""
        return (self.decode(abnormal_indices=codes.abnormal_indices, outputs=("segment",))["segment"] > 0).sum(
            axis=(1, 2)).astype(np.int64)

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

    def _present(self, images: np.ndarray, present) -> np.ndarray | None:
        """(N, 4) bool contrasts of each image: given, or the channels with a non-zero pixel."""
        if present is None:
            present = np.any(images != 0, axis=(2, 3))
            if not self.cfg.contrast_inputs:
                partial = present.any(1) & ~present.all(1)  # an image with some contrasts but not all
                if partial.any():
                    raise ValueError(f"images: image {int(np.argmax(partial))} lacks a contrast (an all-zero channel), "
                                     "and this model was trained on all four contrasts; load a model trained with "
                                     "contrast inputs (the shipped 'base' model) to encode a subset")
                return None
        present = np.asarray(present, dtype=bool)
        if present.ndim == 1:
            present = np.broadcast_to(present, (len(images), present.shape[0]))
        if present.shape != (len(images), self.cfg.in_channels):
            raise ValueError(f"present: expected shape ({len(images)}, {self.cfg.in_channels}) or "
                             f"({self.cfg.in_channels},) (which of T1, T1CE, T2, FLAIR each image has), got {present.shape}")
        if not self.cfg.contrast_inputs and not present.all():
            raise ValueError("present: this model was trained on all four contrasts; load a model trained "
                             "with contrast inputs (the shipped 'base' model) to encode a subset")
        if self.cfg.contrast_inputs and not present.any(1).all():
            raise ValueError("present: every image needs at least one contrast (an all-zero image has none)")
        return present if self.cfg.contrast_inputs else None

    @torch.no_grad()
    def _batches(self, images, fn, present=None) -> list:
        images = self._check(images)
        present = self._present(images, present)
        out = []
        for i in range(0, len(images), self.batch_size):
            x = torch.from_numpy(images[i:i + self.batch_size]).to(self.device)
            p = None if present is None else torch.from_numpy(np.ascontiguousarray(present[i:i + self.batch_size])).to(self.device)
            out.append(fn(x, p))
        if not out:
            zero = torch.zeros((0,) + images.shape[1:])
            out.append(fn(zero, None if present is None else torch.zeros((0, images.shape[1]), dtype=torch.bool)))
        return out

    def _indices(self, x: torch.Tensor, present, keep_latents: bool):
        z_n, z_a = self.model.latents(x, present)
        grid = self.cfg.grid
        flat = lambda z: z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # noqa: E731
        n = self.model.normal_vq.nearest(flat(z_n)).view(-1, grid, grid)
        a = self.model.abnormal_vq.nearest(flat(z_a)).view(-1, grid, grid)
        latents = (z_n.cpu().numpy(), z_a.cpu().numpy()) if keep_latents else None
        return n.cpu().numpy(), a.cpu().numpy(), latents

    def encode(self, images, keep_latents: bool = False, present=None) -> Codes:
        """Index maps and packed bits of both codes for (N, 4, S, S) z-scored slices; with
        ``keep_latents`` also the continuous latents of the same forward pass. ``present``: (N, 4)
        or (4,) bool, the contrasts each image has (absent ones are zero); default: the channels
        that hold a non-zero pixel."""
        parts = self._batches(images, lambda x, p: self._indices(x, p, keep_latents), present)
        normal = np.concatenate([p[0] for p in parts]).astype(np.int64)
        abnormal = np.concatenate([p[1] for p in parts]).astype(np.int64)
        latents = None
        if keep_latents:
            latents = (np.concatenate([p[2][0] for p in parts]), np.concatenate([p[2][1] for p in parts]))
        return Codes(normal, abnormal, self.normal_hasher(normal), self.abnormal_hasher(abnormal),
                     self.normal_hasher.nbits, self.abnormal_hasher.nbits, latents)

    def latents(self, images, present=None) -> tuple[np.ndarray, np.ndarray]:
        """Continuous (unquantised) normal and abnormal latents, (N, D, g, g) each."""
        return self.encode(images, keep_latents=True, present=present).latents

    def pseudo_normal(self, images, present=None) -> np.ndarray:
        """The image without its tumour: the NAC decoded with an empty tumour map (all four
        contrasts, also those the scan lacks: the model's guess of them)."""
        return np.concatenate(self._batches(images, lambda x, p: self.model.pseudo_normal(x, p).cpu().numpy(), present))

    def reconstruct(self, images, present=None) -> np.ndarray:
        """The image decoded from both codes (the NAC with the predicted tumour map)."""
        return np.concatenate(self._batches(images, lambda x, p: self.model(x, p)["recon"].cpu().numpy(), present))

    def segment(self, images, present=None) -> np.ndarray:
        """(N, S, S) uint8 tumour labels (0 none, 1 necrotic/non-enhancing, 2 oedema, 3 enhancing)."""
        parts = self._batches(images, lambda x, p: labels_of(self.model.segment(x, p)).cpu().numpy(), present)
        return np.concatenate(parts)

    @torch.no_grad()
    def decode(self, normal_indices: np.ndarray | None = None, abnormal_indices: np.ndarray | None = None,
               outputs=DECODER_OUTPUTS) -> dict[str, np.ndarray]:
        """What the decoders make of index maps alone, with no encoder pass: for slices already
        encoded, ``segment`` (from the abnormal code), ``pseudo_normal`` (from the normal code) and
        ``reconstruct`` (from both) equal the methods of the same names on the images, up to float
        rounding (those quantise straight-through). ``outputs``: which of them to compute."""
        unknown = set(outputs) - set(DECODER_OUTPUTS)
        if unknown or not outputs:
            raise ValueError(f"outputs: expected a non-empty subset of {DECODER_OUTPUTS}, got {list(outputs)}")
        needs = {"segment": ("abnormal",), "pseudo_normal": ("normal",), "reconstruct": ("normal", "abnormal")}
        given = {"normal": normal_indices, "abnormal": abnormal_indices}
        maps = {}
        for name in sorted({n for o in outputs for n in needs[o]}):
            maps[name] = self._check_indices(given[name], f"{name}_indices")
        n = len(next(iter(maps.values())))
        if any(len(m) != n for m in maps.values()):
            raise ValueError(f"normal_indices, abnormal_indices: expected the same number of maps, got "
                             f"{len(maps['normal'])} and {len(maps['abnormal'])}")
        parts: dict[str, list] = {o: [] for o in outputs}
        for i in range(0, n, self.batch_size):
            idx = {k: torch.from_numpy(m[i:i + self.batch_size]).to(self.device) for k, m in maps.items()}
            q_n = self.model.normal_vq.lookup(idx["normal"]) if "normal" in idx else None
            logits = self.model.seg_decoder(self.model.abnormal_vq.lookup(idx["abnormal"])) if "abnormal" in idx else None
            if "segment" in parts:
                parts["segment"].append(labels_of(logits).cpu().numpy())
            if "reconstruct" in parts:
                parts["reconstruct"].append(self.model.image_decoder(q_n, self.model.tumour_map(logits)).cpu().numpy())
            if "pseudo_normal" in parts:
                empty = q_n.new_zeros((len(q_n), self.cfg.classes - 1, self.cfg.image_size, self.cfg.image_size))
                parts["pseudo_normal"].append(self.model.image_decoder(q_n, empty).cpu().numpy())
        s, c = self.cfg.image_size, self.cfg.in_channels
        empty_shape = {"segment": ((0, s, s), np.uint8), "pseudo_normal": ((0, c, s, s), np.float32),
                       "reconstruct": ((0, c, s, s), np.float32)}
        return {o: np.concatenate(p) if p else np.zeros(*empty_shape[o]) for o, p in parts.items()}

    def _check_indices(self, maps, name: str) -> np.ndarray:
        g, size = self.cfg.grid, self.cfg.codebook_size
        if maps is None:
            raise ValueError(f"{name}: required for the outputs asked for")
        maps = np.asarray(maps)
        if maps.ndim != 3 or maps.shape[1:] != (g, g) or maps.dtype.kind not in "iu":
            raise ValueError(f"{name}: expected integer index maps of shape (N, {g}, {g}) (Codes.{name}), "
                             f"got {maps.dtype} {maps.shape}")
        if maps.size and (maps.min() < 0 or maps.max() >= size):
            raise ValueError(f"{name}: expected codebook indices in [0, {size}), got [{maps.min()}, {maps.max()}]")
        return np.ascontiguousarray(maps, dtype=np.int64)


def labels_of(logits: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) logits -> (B, H, W) uint8 argmax, first class on ties as ``argmax``: a running
    maximum over the few classes, several times faster than ``argmax(1)`` on CPU (a strided
    reduction over the channel axis)."""
    best, labels = logits[:, 0], torch.zeros(logits.shape[:1] + logits.shape[2:], dtype=torch.uint8,
                                             device=logits.device)
    for c in range(1, logits.shape[1]):
        higher = logits[:, c] > best
        best = torch.where(higher, logits[:, c], best)
        labels.masked_fill_(higher, c)
    return labels


def encode_slices(encoder: CodeEncoder, slices: SliceSet, log=print) -> tuple[Codes, Codes | None]:
    """Codes (with their continuous latents, from the same forward pass) of every slice and, for
    phantoms, of its healthy counterpart."""
    from tqdm import tqdm

    start = time.perf_counter()
    parts, healthy_parts = [], []
    step = 256
    for i in tqdm(range(0, len(slices), step), desc="encoding", unit="batch"):
        rows = slice(i, i + step)
        parts.append(encoder.encode(slices.images[rows], keep_latents=True, present=slices.contrasts[rows]))
        if slices.healthy is not None:
            healthy_parts.append(encoder.encode(slices.healthy[rows], present=slices.contrasts[rows]))
    elapsed = time.perf_counter() - start
    codes = concat_codes(parts)
    healthy = concat_codes(healthy_parts) if healthy_parts else None
    also = " and their healthy counterparts" if healthy_parts else ""
    log(f"encoded {len(slices)} slices{also} in {elapsed:.1f} s ({len(slices) * (2 if also else 1) / max(elapsed, 1e-9):.0f}/s): "
        f"normal code {codes.normal_nbits} bits, abnormal code {codes.abnormal_nbits} bits")
    return codes, healthy


def concat_codes(parts: list[Codes]) -> Codes:
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    latents = None
    if parts[0].latents is not None:
        latents = tuple(np.concatenate([p.latents[j] for p in parts]) for j in (0, 1))
    return Codes(cat("normal_indices"), cat("abnormal_indices"), cat("normal_bits"), cat("abnormal_bits"),
                 parts[0].normal_nbits, parts[0].abnormal_nbits, latents)
