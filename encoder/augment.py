"""Training-time augmentation: geometry (the paper's flips and rotations), intensities (scanners and
normalisations differ between sources) and contrast dropout (any subset of contrasts must encode).
All draws come from a torch.Generator, so a resumed run sees the same batches."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_ROTATION_DEG = 10.0  # the paper's augmentation: flips and rotations up to 10 degrees


def augment(images: torch.Tensor, seg: torch.Tensor, gen: torch.Generator,
            extra: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Left-right flips and rotations, the same for images (bilinear), labels (nearest) and
    ``extra`` images (the healthy counterparts, if given)."""
    b = images.shape[0]
    flip = (torch.rand(b, generator=gen) < 0.5).to(images.device)
    angle = ((torch.rand(b, generator=gen) * 2 - 1) * math.radians(MAX_ROTATION_DEG)).to(images.device)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)

    def move(t: torch.Tensor, mode: str) -> torch.Tensor:
        t = torch.where(flip[:, None, None, None], t.flip(-2), t)
        return F.grid_sample(t, grid, mode=mode, padding_mode="zeros", align_corners=False)

    out_images = move(images, "bilinear")
    out_seg = move(seg[:, None].to(images.dtype), "nearest")[:, 0].long()
    if extra is None:
        return out_images, out_seg
    return out_images, out_seg, move(extra, "bilinear")


def intensity_jitter(images: torch.Tensor, gen: torch.Generator, others: tuple = ()) -> tuple[torch.Tensor, ...]:
    """Per image and contrast, the same random gain (x0.8-1.25), offset (+-0.2) and a little noise on
    the brain: scanners and normalisations differ between sources (phantoms, BraTS 2013's z-scores,
    raw TCGA intensities), so the codes must not key on exact intensities. ``others`` (counterparts)
    get the same gain and offset."""
    b, c = images.shape[:2]
    gain = torch.exp((torch.rand(b, c, 1, 1, generator=gen) * 2 - 1) * 0.22).to(images.device, images.dtype)
    shift = ((torch.rand(b, c, 1, 1, generator=gen) * 2 - 1) * 0.2).to(images.device, images.dtype)
    sigma = (torch.rand(b, 1, 1, 1, generator=gen) * 0.08).to(images.device, images.dtype)

    noise_gen = torch.Generator(device=images.device).manual_seed(int(torch.randint(2**62, (1,), generator=gen)))

    def apply(t: torch.Tensor, noise: bool) -> torch.Tensor:
        brain = t != 0
        out = t * gain + shift
        if noise:
            out = out + sigma * torch.randn(t.shape, generator=noise_gen, device=t.device, dtype=t.dtype)
        return torch.where(brain, out, torch.zeros_like(out))

    return (apply(images, True),) + tuple(apply(t, False) for t in others)


def drop_contrasts(available: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """With probability ``p`` per image, keep a random non-empty subset of its available contrasts
    (half of those draws keep FLAIR and T1CE only when it has both: the common clinical pair and
    BraTS 2013's). Returns the (B, C) contrasts the encoder sees."""
    b, c = available.shape
    drop = torch.rand(b, generator=gen) < p
    subset = torch.rand(b, c, generator=gen) < 0.5
    pair = torch.zeros(b, c, dtype=torch.bool)
    pair[:, [1, 3]] = True  # T1CE, FLAIR
    use_pair = torch.rand(b, generator=gen) < 0.5
    avail = available.cpu()
    chosen = torch.where(use_pair[:, None] & (avail & pair).sum(1, keepdim=True).eq(2), pair, subset) & avail
    empty = ~chosen.any(1)
    if empty.any():  # keep one available contrast at random
        scores = torch.rand(b, c, generator=gen) * avail
        one = F.one_hot(scores.argmax(1), c).bool()
        chosen = torch.where(empty[:, None], one, chosen)
    return torch.where(drop[:, None], chosen, avail).to(available.device)
