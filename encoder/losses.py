"""Losses of the decomposition network (weights in train.TrainConfig, values from the paper's code)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _band(n: int, g: torch.Tensor) -> torch.Tensor:
    """(n, n + len(g) - 1): the 1-D filter g over n outputs with no padding, as a matrix."""
    rows = torch.arange(n, device=g.device)
    band = g.new_zeros(n, n + len(g) - 1)
    for j, weight in enumerate(g):
        band[rows, rows + j] = weight
    return band


def ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float = 8.0, window: int = 11,
             per_channel: bool = False) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004) with an 11x11 Gaussian window, channels averaged -> (B, 1, H, W)
    (or (B, C, H, W) with ``per_channel``).

    ``data_range`` 8: z-scored MRI spans roughly -3..5.
    """
    c = a.shape[1]
    # The 2-D Gaussian is the outer product of a 1-D one: filtered down the columns, then along the
    # rows, each a product with a banded matrix (torch's depthwise convolutions were most of the
    # evaluation's image scores on CPU), the five local moments at once.
    g = _gaussian(window, device=a.device).to(a.dtype)
    pad = window // 2
    moments = F.pad(torch.cat([a, b, a * a, b * b, a * b], 1), (pad,) * 4, mode="reflect")
    mu_a, mu_b, aa, bb, ab = (_band(a.shape[2], g) @ moments @ _band(a.shape[3], g).T).split(c, 1)
    var_a = aa - mu_a**2
    var_b = bb - mu_b**2
    cov = ab - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s if per_channel else s.mean(1, keepdim=True)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.expand_as(values).to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def image_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
               channels: torch.Tensor | None = None) -> torch.Tensor:
    """MSE + (1 - SSIM), over the pixels where ``mask`` (B, 1, H, W) is true (all when None) and the
    contrasts where ``channels`` (B, C) is true (all when None: a contrast the scan lacks has no target)."""
    if mask is None:
        mask = torch.ones_like(target[:, :1], dtype=torch.bool)
    if channels is not None:
        mask = mask & channels[:, :, None, None]
        return _masked_mean((pred - target) ** 2, mask) + _masked_mean(1 - ssim_map(pred, target, per_channel=True), mask)
    return _masked_mean((pred - target) ** 2, mask) + _masked_mean(1 - ssim_map(pred, target), mask)


def generalised_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Generalised Dice (Sudre et al. 2017): classes weighted by 1 / volume^2 over the batch."""
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)
    volume = onehot.sum(dims)
    weight = 1.0 / volume.clamp_min(1.0) ** 2
    intersect = (weight * (probs * onehot).sum(dims)).sum()
    union = (weight * (probs + onehot).sum(dims)).sum()
    return 1 - 2 * intersect / (union + eps)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    logp = F.log_softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
    return (-((1 - logp.exp()) ** gamma) * logp).mean()


def dice_scores(pred: torch.Tensor, target: torch.Tensor, classes: int = 4) -> dict:
    """Dice of the whole tumour (labels > 0) and of each tumour class, summed over the batch."""
    out = {}
    pairs = {"whole": (pred > 0, target > 0)}
    pairs.update({f"class{c}": (pred == c, target == c) for c in range(1, classes)})
    for name, (p, t) in pairs.items():
        total = p.sum() + t.sum()
        out[name] = float(2 * (p & t).sum() / total) if total > 0 else float("nan")
    return out


def decomposition_losses(out: dict, images: torch.Tensor, seg: torch.Tensor, weights, channels: torch.Tensor | None = None,
                         seg_known: torch.Tensor | None = None, healthy: torch.Tensor | None = None,
                         healthy_known: torch.Tensor | None = None) -> dict:
    """All terms and their weighted total. Tumour pixels get an extra reconstruction term; the
    pseudo-normal image is asked to match the input where there is no tumour (the paper) and, for
    rows whose true healthy counterpart is given (phantoms: ``healthy``, ``healthy_known``),
    to match that counterpart everywhere, with ``weights.pseudo_tumour_weight`` x its MSE on the tumour's
    pixels on top (the tumour is a few % of the image, and the only place where the two differ). ``channels`` (B, 4): contrasts that have a target;
    ``seg_known`` (B,): rows whose tumour labels are known (the others get no segmentation loss and
    count as tumour-free nowhere: their pseudo-normal target is the input everywhere but no pixel)."""
    b = images.shape[0]
    tumour = (seg > 0)[:, None]
    if seg_known is None:
        seg_known = torch.ones(b, dtype=torch.bool, device=images.device)
    recon = image_loss(out["recon"], images, channels=channels)
    chan = torch.ones_like(images, dtype=torch.bool) if channels is None else channels[:, :, None, None].expand_as(images)
    if tumour.any():
        recon = recon + _masked_mean((out["recon"] - images) ** 2, tumour & chan)
    outside = ~tumour & seg_known[:, None, None, None]
    pseudo = image_loss(out["pseudo_normal"], images, outside, channels)
    if healthy is not None and healthy_known is not None and bool(healthy_known.any()):
        rows = healthy_known
        chans = None if channels is None else channels[rows]
        pseudo = pseudo + image_loss(out["pseudo_normal"][rows], healthy[rows], None, chans)
        inside = tumour[rows] & (chan[rows] if channels is not None else True)
        if weights.pseudo_tumour_weight and bool(inside.any()):
            pseudo = pseudo + weights.pseudo_tumour_weight * _masked_mean((out["pseudo_normal"][rows] - healthy[rows]) ** 2, inside)
    if bool(seg_known.any()):
        logits, target = out["seg_logits"][seg_known], seg[seg_known]
        seg_loss = generalised_dice_loss(logits, target) + focal_loss(logits, target)
    else:
        seg_loss = out["seg_logits"].sum() * 0.0
    total = (weights.w_recon * recon + weights.w_pseudo * pseudo + weights.w_seg * seg_loss
             + weights.w_latent * out["commitment"])
    return {"total": total, "recon": recon, "pseudo": pseudo, "seg": seg_loss, "commit": out["commitment"]}


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)[0]
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
