"""The normal/abnormal anatomy decomposition network of Kobayashi et al. (Medical Image Analysis 74,
2021), as the authors' published training code builds it:

    image -> shared stem -> normal branch   -> EMA VQ (NAC codebook) -> SPADE image decoder -> image
                         -> abnormal branch -> EMA VQ (AAC codebook) -> segmentation decoder -> labels
                                                                          | (detached, tumour classes)
                                                                          +-> SPADE conditioning

Decoding the NAC with the segmentation reconstructs the input; with a zero map it gives the
pseudo-normal image (the anatomy without the tumour).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    name: str
    image_size: int
    filters: tuple[int, ...]  # one per resolution level, image_size down to the code grid
    stem_levels: int  # levels shared by both branches
    codebook_size: int  # K
    code_dim: int  # D
    in_channels: int = 4  # T1, T1CE, T2, FLAIR
    # The stem also reads one constant plane per contrast saying whether the scan has it (absent
    # contrasts are zero), so one model encodes any non-empty subset (trained with contrast dropout).
    contrast_inputs: bool = False
    classes: int = 4  # background, necrotic/non-enhancing, oedema, enhancing
    decay: float = 0.99
    eps: float = 1e-5
    commitment: float = 0.25
    groups: int = 8

    def __post_init__(self) -> None:
        if self.image_size % 2 ** (len(self.filters) - 1):
            raise ValueError(f"image_size {self.image_size} must halve {len(self.filters) - 1} times exactly")
        if not 1 <= self.stem_levels < len(self.filters):
            raise ValueError(f"stem_levels must be in [1, {len(self.filters) - 1}], got {self.stem_levels}")

    @property
    def grid(self) -> int:
        return self.image_size // 2 ** (len(self.filters) - 1)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["filters"] = list(self.filters)
        return out

    @staticmethod
    def from_dict(data: dict) -> EncoderConfig:
        """From ``to_dict``; checkpoints of version 0.1 also stored training settings (learning rate,
        batch size, loss weights) here, which now live in hashindex.encoder.train.TrainConfig."""
        names = {f.name for f in fields(EncoderConfig)}
        return EncoderConfig(**{**{k: v for k, v in data.items() if k in names}, "filters": tuple(data["filters"])})


CONFIGS = {
    # 256 x 256 -> 64 x 64 in the stem -> 8 x 8 x 64 per branch, K = 512 (the paper).
    "paper": EncoderConfig("paper", 256, (32, 64, 128, 128, 128, 128), stem_levels=3, codebook_size=512, code_dim=64),
    # For 2 CPU cores: 64 x 64 -> 32 x 32 in the stem -> the same 8 x 8 grid, smaller codebooks; at
    # 128 x 128 a training step on 2 cores was too slow to train in well under an hour
    # (benchmarks/RESULTS.md, "Measurements behind the code").
    "small": EncoderConfig("small", 64, (16, 32, 64, 64), stem_levels=2, codebook_size=128, code_dim=32),
    # The shipped default: 128 x 128 -> 32 x 32 in the stem -> 8 x 8 x 64 per branch, K = 512 as the
    # paper, any subset of contrasts. Sized to train on a GPU in minutes and to encode on 2 CPU cores.
    "base": EncoderConfig("base", 128, (16, 32, 64, 96, 96), stem_levels=3, codebook_size=512, code_dim=64,
                          contrast_inputs=True),
}


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class ResBlock(nn.Module):
    """Pre-activation residual block: GroupNorm(8), LeakyReLU(0.2), 3x3 conv, twice."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm(cin, groups), nn.LeakyReLU(0.2), nn.Conv2d(cin, cout, 3, padding=1),
            _norm(cout, groups), nn.LeakyReLU(0.2), nn.Conv2d(cout, cout, 3, padding=1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class SPADE(nn.Module):
    """Parameter-free normalisation modulated per pixel by the segmentation map (Park et al., 2019)."""

    def __init__(self, channels: int, cond_channels: int, groups: int, hidden: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, channels), channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cond = F.interpolate(cond, size=x.shape[-2:], mode="nearest")
        h = self.shared(cond)
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SPADEResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_channels: int, groups: int):
        super().__init__()
        self.n1, self.c1 = SPADE(cin, cond_channels, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = SPADE(cout, cond_channels, groups), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.leaky_relu(self.n1(x, cond), 0.2))
        h = self.c2(F.leaky_relu(self.n2(h, cond), 0.2))
        return self.skip(x) + h


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Conv2d(cin, cout, 3, stride=2, padding=1)


def _up(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1))


class VectorQuantizer(nn.Module):
    """EMA vector quantiser (van den Oord et al. 2017; Razavi et al. 2019) with dead-code restarts.

    Codewords follow the running mean of the encoder outputs assigned to them (decay, Laplace
    smoothing eps); gradients pass straight through; the commitment loss pulls the encoder towards its
    codeword. A codeword whose running assignment count falls below ``restart_below`` is moved onto a
    random encoder output of the batch, so that the codebook stays in use. Distances in fp32.
    """

    def __init__(self, size: int, dim: int, decay: float = 0.99, eps: float = 1e-5, restart_below: float = 0.5):
        super().__init__()
        self.size, self.dim, self.decay, self.eps, self.restart_below = size, dim, decay, eps, restart_below
        codebook = torch.randn(size, dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embed_sum", codebook.clone())
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        flat = flat.float()
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t() + self.codebook.pow(2).sum(1)[None]
        return dist.argmin(1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, H, W) indices -> (B, D, H, W) codewords."""
        return F.embedding(indices, self.codebook).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor):
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not bool(self.initialised):
            self._initialise(flat.detach().float())
        indices = self.nearest(flat)
        if self.training:
            self._ema_update(flat.detach().float(), indices)
        quantized = self.codebook[indices].to(flat.dtype)
        commitment = F.mse_loss(flat, quantized.detach())
        quantized = flat + (quantized - flat).detach()  # straight-through
        quantized = quantized.view(b, h, w, d).permute(0, 3, 1, 2).contiguous()
        return quantized, indices.view(b, h, w), commitment

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        """Codewords start on encoder outputs of the first batch: a random init far from them
        leaves most codewords unused until restarts bring them in (benchmarks/RESULTS.md, "Measurements
        behind the code")."""
        pick = torch.randint(0, flat.shape[0], (self.size,), device=flat.device)
        self.codebook.copy_(flat[pick] + 1e-3 * torch.randn_like(flat[pick]))
        self.embed_sum.copy_(self.codebook * self.cluster_size[:, None])
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        onehot = F.one_hot(indices, self.size).type(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        dead = self.cluster_size < self.restart_below
        count = int(dead.sum())
        if count:
            pick = torch.randint(0, flat.shape[0], (count,), device=flat.device)
            fresh = flat[pick] + 1e-3 * torch.randn_like(flat[pick])
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh * self.restart_below
            self.cluster_size[dead] = self.restart_below
            self.restarts += count


def build_stem(cfg: EncoderConfig) -> nn.Sequential:
    """The layers both branches share: image (and presence planes) -> features at the stem's scale."""
    f, g = cfg.filters, cfg.groups
    inputs = cfg.in_channels * (2 if cfg.contrast_inputs else 1)
    layers: list[nn.Module] = [nn.Conv2d(inputs, f[0], 3, padding=1)]
    for level in range(cfg.stem_levels):
        if level:
            layers.append(_down(f[level - 1], f[level]))
        layers.append(ResBlock(f[level], f[level], g))
    return nn.Sequential(*layers)


def build_branch(cfg: EncoderConfig) -> nn.Sequential:
    """One branch (normal or abnormal): stem features -> (D, grid, grid) continuous latent."""
    f, g = cfg.filters, cfg.groups
    layers: list[nn.Module] = []
    for level in range(cfg.stem_levels, len(f)):
        layers += [_down(f[level - 1], f[level]), ResBlock(f[level], f[level], g)]
    layers += [_norm(f[-1], g), nn.LeakyReLU(0.2), nn.Conv2d(f[-1], cfg.code_dim, 1)]
    return nn.Sequential(*layers)


class SegmentationDecoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        f, g = cfg.filters, cfg.groups
        layers: list[nn.Module] = [nn.Conv2d(cfg.code_dim, f[-1], 1)]
        for level in range(len(f) - 1, 0, -1):
            layers += [ResBlock(f[level], f[level], g), _up(f[level], f[level - 1])]
        layers += [ResBlock(f[0], f[0], g), _norm(f[0], g), nn.LeakyReLU(0.2), nn.Conv2d(f[0], cfg.classes, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.net(q)


class ImageDecoder(nn.Module):
    """From the quantised NAC; every block SPADE-conditioned on the tumour map."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        f, g = cfg.filters, cfg.groups
        cond = cfg.classes - 1
        self.inp = nn.Conv2d(cfg.code_dim, f[-1], 1)
        self.blocks = nn.ModuleList(SPADEResBlock(f[level], f[level], cond, g) for level in range(len(f) - 1, -1, -1))
        self.ups = nn.ModuleList(_up(f[level], f[level - 1]) for level in range(len(f) - 1, 0, -1))
        self.out = nn.Sequential(_norm(f[0], g), nn.LeakyReLU(0.2), nn.Conv2d(f[0], cfg.in_channels, 3, padding=1))

    def forward(self, q: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.inp(q)
        for i, block in enumerate(self.blocks):
            h = block(h, cond)
            if i < len(self.ups):
                h = self.ups[i](h)
        return self.out(h)


class DecompositionNet(nn.Module):
    """The whole network; ``forward`` returns everything the losses need."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = build_stem(cfg)
        self.normal_branch = build_branch(cfg)
        self.abnormal_branch = build_branch(cfg)
        self.normal_vq = VectorQuantizer(cfg.codebook_size, cfg.code_dim, cfg.decay, cfg.eps)
        self.abnormal_vq = VectorQuantizer(cfg.codebook_size, cfg.code_dim, cfg.decay, cfg.eps)
        self.seg_decoder = SegmentationDecoder(cfg)
        self.image_decoder = ImageDecoder(cfg)

    def stem_input(self, x: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        """The images with absent contrasts zeroed and, for ``contrast_inputs`` models, the presence
        planes appended. ``present``: (B, C) bool, None for all contrasts."""
        if not self.cfg.contrast_inputs:
            if present is not None and not bool(present.all()):
                raise ValueError("present: this model was trained on all four contrasts; it cannot encode a subset")
            return x
        b, c, h, w = x.shape
        if present is None:
            present = torch.ones(b, c, dtype=torch.bool, device=x.device)
        if present.shape != (b, c):
            raise ValueError(f"present: expected shape ({b}, {c}), got {tuple(present.shape)}")
        if not bool(present.any(1).all()):
            raise ValueError("present: every image needs at least one contrast")
        p = present.to(x.dtype)[:, :, None, None]
        return torch.cat([x * p, p.expand(b, c, h, w)], 1)

    def latents(self, x: torch.Tensor, present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous (unquantised) NAC and AAC, each (B, D, grid, grid)."""
        h = self.stem(self.stem_input(x, present))
        return self.normal_branch(h), self.abnormal_branch(h)

    @staticmethod
    def tumour_map(seg_logits: torch.Tensor) -> torch.Tensor:
        """Detached tumour-class probabilities, zero where the argmax is background."""
        probs = seg_logits.detach().softmax(1)
        return probs[:, 1:] * (probs.argmax(1, keepdim=True) > 0)

    def forward(self, x: torch.Tensor, present: torch.Tensor | None = None) -> dict:
        z_n, z_a = self.latents(x, present)
        q_n, idx_n, commit_n = self.normal_vq(z_n)
        q_a, idx_a, commit_a = self.abnormal_vq(z_a)
        seg_logits = self.seg_decoder(q_a)
        cond = self.tumour_map(seg_logits)
        return {
            "z_normal": z_n, "z_abnormal": z_a, "q_normal": q_n, "q_abnormal": q_a,
            "normal_indices": idx_n, "abnormal_indices": idx_a,
            "commitment": commit_n + commit_a,
            "seg_logits": seg_logits,
            "recon": self.image_decoder(q_n, cond),
            "pseudo_normal": self.image_decoder(q_n, torch.zeros_like(cond)),
        }

    def segment(self, x: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """Segmentation logits alone: the abnormal path, without the image decoder's two passes."""
        h = self.stem(self.stem_input(x, present))
        return self.seg_decoder(self.abnormal_vq(self.abnormal_branch(h))[0])

    def pseudo_normal(self, x: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """The pseudo-normal image alone: the quantised NAC decoded with an empty tumour map."""
        h = self.stem(self.stem_input(x, present))
        q_n = self.normal_vq(self.normal_branch(h))[0]
        cond = torch.zeros((x.shape[0], self.cfg.classes - 1) + x.shape[2:], dtype=q_n.dtype, device=x.device)
        return self.image_decoder(q_n, cond)

    def decode_indices(self, normal: torch.Tensor, abnormal: torch.Tensor) -> dict:
        """Images and labels from index maps alone (e.g. a synthetic NAC of A with the AAC of B)."""
        q_n, q_a = self.normal_vq.lookup(normal), self.abnormal_vq.lookup(abnormal)
        seg_logits = self.seg_decoder(q_a)
        cond = self.tumour_map(seg_logits)
        return {"seg_logits": seg_logits, "recon": self.image_decoder(q_n, cond),
                "pseudo_normal": self.image_decoder(q_n, torch.zeros_like(cond))}


class LatentCritic(nn.Module):
    """WGAN-GP critic on NACs, for the optional density matching of tumour and healthy slices."""

    def __init__(self, cfg: EncoderConfig, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(cfg.code_dim, hidden, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(hidden * ((cfg.grid + 1) // 2) ** 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)
