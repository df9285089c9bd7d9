"""Training the decomposition network (``hashindex train``), its checkpoints and its metrics.

Resumable: the slice order of epoch ``e`` is drawn from ``(seed, e)`` and the augmentation of batch
``b`` from ``(seed, e, b)``, so a checkpoint written in the middle of an epoch (every
``checkpoint_seconds``, and at each epoch's end) resumes at the next batch with the same data it
would have had.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .data import SliceSet, load_slices
from .losses import decomposition_losses, dice_scores, gradient_penalty
from .model import CONFIGS, DecompositionNet, EncoderConfig, LatentCritic

CHECKPOINT_FORMAT = "hashindex-encoder"
CHECKPOINT_VERSION = 1
MAX_ROTATION_DEG = 10.0  # the paper's augmentation: flips and rotations up to 10 degrees


# --- data -----------------------------------------------------------------------------------

def training_slices(data: str | os.PathLike | SliceSet, size: int, progress: bool = False) -> SliceSet:
    """Slices from a BraTS/phantom folder or a saved SliceSet (.npz); they must carry tumour labels."""
    if isinstance(data, SliceSet):
        slices = data
    elif Path(data).suffix == ".npz":
        slices = SliceSet.load(data)
    else:
        slices = load_slices(data, size=size, progress=progress)
    if slices.size != size:
        raise ValueError(f"data: slices are {slices.size}x{slices.size}, the model expects {size}x{size}")
    if slices.seg is None:
        raise ValueError("data: training needs tumour segmentations, and some cases have none")
    return slices


def split_by_case(case_ids: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, list[str]]:
    """Boolean mask of training rows and the held-out case ids (no case is in both)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction: expected a share in [0, 1), got {val_fraction!r}")
    cases = sorted(set(case_ids.tolist()))
    held = int(round(val_fraction * len(cases)))
    if val_fraction > 0 and len(cases) > 1:
        held = max(held, 1)
    held = min(held, len(cases) - 1)
    order = np.random.default_rng([seed, 7]).permutation(len(cases))
    val_cases = sorted(cases[i] for i in order[:held])
    return ~np.isin(case_ids, val_cases), val_cases


def augment(images: torch.Tensor, seg: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-right flips and rotations, the same for images (bilinear) and labels (nearest)."""
    b = images.shape[0]
    flip = (torch.rand(b, generator=gen) < 0.5).to(images.device)
    images = torch.where(flip[:, None, None, None], images.flip(-2), images)
    seg = torch.where(flip[:, None, None], seg.flip(-2), seg)
    angle = ((torch.rand(b, generator=gen) * 2 - 1) * math.radians(MAX_ROTATION_DEG)).to(images.device)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    seg = F.grid_sample(seg[:, None].to(images.dtype), grid, mode="nearest", align_corners=False)[:, 0].long()
    return images, seg


# --- metrics --------------------------------------------------------------------------------

def codebook_stats(indices: np.ndarray, size: int) -> dict:
    """Perplexity (exp of the entropy of code use) and the share of codewords used at all."""
    counts = np.bincount(indices.ravel(), minlength=size).astype(np.float64)
    p = counts / max(counts.sum(), 1.0)
    nz = p[p > 0]
    return {"perplexity": float(np.exp(-(nz * np.log(nz)).sum())), "usage": float((counts > 0).mean())}


@torch.no_grad()
def evaluate(model: DecompositionNet, slices: SliceSet, batch_size: int = 64, device: str = "cpu") -> dict:
    """Held-out metrics: reconstruction error, pseudo-normal error (against the input outside the
    tumour, and against the true healthy counterpart where the slices have one), segmentation Dice,
    and codebook use."""
    was_training = model.training
    model.eval()
    sums = {"recon_mse": 0.0, "pseudo_mse_outside_tumour": 0.0, "pseudo_mse_vs_healthy_in_tumour": 0.0}
    counts = {k: 0.0 for k in sums}
    preds, targets, normal, abnormal = [], [], [], []
    for start in range(0, len(slices), batch_size):
        rows = slice(start, start + batch_size)
        x = torch.from_numpy(slices.images[rows]).to(device)
        seg = torch.from_numpy(slices.seg[rows].astype(np.int64)).to(device)
        out = model(x)
        tumour = (seg > 0)[:, None].expand_as(x)
        sums["recon_mse"] += float(((out["recon"] - x) ** 2).sum())
        counts["recon_mse"] += x.numel()
        sums["pseudo_mse_outside_tumour"] += float(((out["pseudo_normal"] - x) ** 2)[~tumour].sum())
        counts["pseudo_mse_outside_tumour"] += float((~tumour).sum())
        if slices.healthy is not None and tumour.any():
            h = torch.from_numpy(slices.healthy[rows]).to(device)
            sums["pseudo_mse_vs_healthy_in_tumour"] += float(((out["pseudo_normal"] - h) ** 2)[tumour].sum())
            counts["pseudo_mse_vs_healthy_in_tumour"] += float(tumour.sum())
        preds.append(out["seg_logits"].argmax(1).cpu())
        targets.append(seg.cpu())
        normal.append(out["normal_indices"].cpu().numpy())
        abnormal.append(out["abnormal_indices"].cpu().numpy())
    model.train(was_training)
    metrics = {k: (sums[k] / counts[k] if counts[k] else float("nan")) for k in sums}
    metrics.update({f"dice_{k}": v for k, v in dice_scores(torch.cat(preds), torch.cat(targets)).items()})
    k = model.cfg.codebook_size
    for name, idx in (("normal", normal), ("abnormal", abnormal)):
        for key, value in codebook_stats(np.concatenate(idx), k).items():
            metrics[f"{name}_{key}"] = value
    return metrics


# --- checkpoints ----------------------------------------------------------------------------

def _save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    try:
        state = torch.load(str(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: not a hashindex encoder checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a hashindex encoder checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {state.get('version')}, this version reads {CHECKPOINT_VERSION}")
    return state


def model_from_checkpoint(state: dict, device: str = "cpu") -> DecompositionNet:
    model = DecompositionNet(EncoderConfig.from_dict(state["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
    return model.to(device).eval()


def export_weights(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The model alone, weights in float16 (half the size; the codebooks stay float32 so that the
    nearest-codeword choice is unchanged), with the training record but no optimiser state."""
    state = read_checkpoint(checkpoint)
    model = {k: (v.half() if v.is_floating_point() and "vq." not in k else v) for k, v in state["model"].items()}
    keep = {k: state[k] for k in ("format", "version", "config", "history", "data", "seed", "command", "step", "epoch")}
    _save({**keep, "model": model}, Path(out))
    return Path(out)


# --- the loop -------------------------------------------------------------------------------

def train(
    data: str | os.PathLike | SliceSet,
    out: str | os.PathLike,
    config: str | EncoderConfig = "small",
    epochs: int = 20,
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    resume: bool = True,
    val_fraction: float = 0.1,
    critic: bool = False,
    checkpoint_seconds: float = 300.0,
    max_steps: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Trains, writing ``out`` (a resumable checkpoint) as it goes; returns the last metrics."""
    if isinstance(config, str) and config not in CONFIGS:
        raise ValueError(f"config: expected one of {sorted(CONFIGS)}, got {config!r}")
    cfg = CONFIGS[config] if isinstance(config, str) else config
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but torch sees no CUDA device")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    batch_size = batch_size or cfg.batch_size
    out = Path(out)
    slices = training_slices(data, cfg.image_size, progress=progress)
    train_rows, val_cases = split_by_case(slices.case_ids, val_fraction, seed)
    train_set = slices.select(train_rows)
    val_set = slices.select(~train_rows) if val_cases else None

    torch.manual_seed(seed)
    model = DecompositionNet(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.9999), weight_decay=1e-5)
    latent_critic = LatentCritic(cfg).to(device) if critic else None
    critic_opt = torch.optim.Adam(latent_critic.parameters(), lr=cfg.lr, betas=(0.5, 0.9)) if critic else None
    epoch, batch_start, step, history = 0, 0, 0, []
    if resume and out.exists():
        state = read_checkpoint(out, map_location=device)
        if state["config"] != cfg.to_dict() or state.get("seed") != seed:
            raise ValueError(f"{out}: a checkpoint of another config or seed; pass another --out or resume=False")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if critic and "critic" in state:
            latent_critic.load_state_dict(state["critic"])
            critic_opt.load_state_dict(state["critic_optimizer"])
        epoch, batch_start, step, history = state["epoch"], state["batch"], state["step"], state["history"]
        torch.set_rng_state(state["torch_rng"])  # codebook restarts draw from it
        log(f"resuming {out} at epoch {epoch + 1}, batch {batch_start}, step {step}")

    def checkpoint(next_epoch: int, next_batch: int) -> None:
        state = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": cfg.to_dict(),
            "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": next_epoch, "batch": next_batch,
            "step": step, "history": history, "seed": seed, "command": " ".join(sys.argv),
            "torch_rng": torch.get_rng_state(),
            "data": {"source": str(data) if not isinstance(data, SliceSet) else "SliceSet",
                     "train_slices": len(train_set), "val_cases": val_cases},
        }
        if critic:
            state["critic"], state["critic_optimizer"] = latent_critic.state_dict(), critic_opt.state_dict()
        _save(state, out)

    batches = math.ceil(len(train_set) / batch_size)
    last_save = time.monotonic()
    metrics: dict = history[-1] if history else {}
    model.train()
    while epoch < epochs:
        order = np.random.default_rng([seed, epoch]).permutation(len(train_set))
        rows_iter = range(batch_start, batches)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(rows_iter, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False)
            rows_iter = bar
        running: dict[str, float] = {}
        for b in rows_iter:
            gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, epoch, b]).integers(2**62)))
            rows = np.sort(order[b * batch_size:(b + 1) * batch_size])
            x = torch.from_numpy(train_set.images[rows]).to(device)
            seg = torch.from_numpy(train_set.seg[rows].astype(np.int64)).to(device)
            x, seg = augment(x, seg, gen)
            out_ = model(x)
            losses = decomposition_losses(out_, x, seg, cfg)
            total = losses["total"]
            if critic:
                total = total + _critic_step(latent_critic, critic_opt, out_, seg, cfg)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            step += 1
            for k, v in losses.items():
                v = float(v.detach())
                running[k] = 0.9 * running.get(k, v) + 0.1 * v
            if bar is not None:
                bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()})
            if time.monotonic() - last_save > checkpoint_seconds:
                checkpoint(epoch, b + 1)
                last_save = time.monotonic()
            if max_steps is not None and step >= max_steps:
                break
        batch_start = 0
        epoch += 1
        metrics = {"epoch": epoch, "step": step, **{f"train_{k}": v for k, v in running.items()}}
        if val_set is not None:
            metrics.update(evaluate(model, val_set, device=device))
        history.append(metrics)
        log(_format_metrics(metrics))
        checkpoint(epoch, 0)
        last_save = time.monotonic()
        if max_steps is not None and step >= max_steps:
            break
    return metrics


def _critic_step(critic, critic_opt, out: dict, seg: torch.Tensor, cfg: EncoderConfig) -> torch.Tensor:
    """Density matching: the critic tells NACs of tumour slices from those of healthy slices
    (WGAN-GP); the encoder is pushed to make them indistinguishable."""
    has_tumour = (seg > 0).flatten(1).any(1)
    z = out["z_normal"]
    if has_tumour.all() or not has_tumour.any():
        return z.sum() * 0.0
    real, fake = z[~has_tumour].detach(), z[has_tumour].detach()
    n = min(len(real), len(fake))
    loss_c = critic(fake).mean() - critic(real).mean() + 10.0 * gradient_penalty(critic, real[:n], fake[:n])
    critic_opt.zero_grad(set_to_none=True)
    loss_c.backward()
    critic_opt.step()
    return -cfg.w_critic * critic(z[has_tumour]).mean()


def _format_metrics(m: dict) -> str:
    keys = ("epoch", "train_total", "recon_mse", "pseudo_mse_outside_tumour", "pseudo_mse_vs_healthy_in_tumour",
            "dice_whole", "normal_perplexity", "normal_usage", "abnormal_perplexity", "abnormal_usage")
    return "  ".join(f"{k}={m[k]:.4g}" if isinstance(m.get(k), float) else f"{k}={m.get(k)}" for k in keys if k in m)
