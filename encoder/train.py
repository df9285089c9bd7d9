"""Training the decomposition network (``hashindex train``), its checkpoints and its metrics.

Resumable: the slice order of epoch ``e`` is drawn from ``(seed, e)`` and the augmentation of batch
``b`` from ``(seed, e, b)``, so a checkpoint written in the middle of an epoch (every
``checkpoint_seconds``, and at each epoch's end) resumes at the next batch with the same data it
would have had.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .augment import augment, drop_contrasts, intensity_jitter
from .data import SliceSet, load_slices
from .losses import decomposition_losses, dice_scores, gradient_penalty
from .model import CONFIGS, DecompositionNet, EncoderConfig, LatentCritic

CHECKPOINT_FORMAT = "hashindex-encoder"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (the model itself is an EncoderConfig). Loss weights are the paper's.

    ``counterpart``: where a slice's true healthy counterpart is known (phantoms), the pseudo-normal
    image is also trained against it and the normal latent of the tumour slice pulled onto the
    counterpart's (a signal the paper never had; False trains with the paper's losses alone), with
    ``pseudo_tumour_weight`` x the pseudo-normal MSE on the tumour's pixels on top.
    ``contrast_dropout``: the share of images shown with a random subset of their contrasts (None:
    0.5 for models with contrast inputs, else 0). ``real_share``: the share of each epoch drawn from
    cases without a healthy counterpart (real scans), repeating them as needed.
    """

    lr: float = 4e-4
    batch_size: int = 64
    w_recon: float = 5.0
    w_pseudo: float = 5.0
    w_seg: float = 5.0
    w_latent: float = 0.25
    w_critic: float = 1e-4
    critic: bool = False
    counterpart: bool = True
    contrast_dropout: float | None = None
    real_share: float = 0.25
    pseudo_tumour_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {self.batch_size!r}")
        if self.contrast_dropout is not None and not 0 <= self.contrast_dropout <= 1:
            raise ValueError(f"contrast_dropout: expected a share in [0, 1], got {self.contrast_dropout!r}")
        if not 0 <= self.real_share < 1:
            raise ValueError(f"real_share: expected a share in [0, 1), got {self.real_share!r}")

    def for_model(self, cfg: EncoderConfig) -> TrainConfig:
        """With the defaults that depend on the model filled in."""
        if self.contrast_dropout is None:
            return replace(self, contrast_dropout=0.5 if cfg.contrast_inputs else 0.0)
        if self.contrast_dropout and not cfg.contrast_inputs:
            raise ValueError(f"contrast_dropout: config {cfg.name!r} has no contrast inputs; it must be 0")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


# Per model: the paper's settings for the paper's model; larger steps for the smaller ones.
TRAINING = {
    "paper": TrainConfig(lr=1e-4, batch_size=112),
    "small": TrainConfig(lr=5e-4, batch_size=32),
    "base": TrainConfig(lr=4e-4, batch_size=64),
}


# --- data -----------------------------------------------------------------------------------

def training_slices(data, size: int, progress: bool = False, workers: int = 1) -> SliceSet:
    """Slices from BraTS/phantom/real folders or saved SliceSets (.npz), several joined with commas or
    given as a list; cases without tumour labels take part in every loss but segmentation."""
    if isinstance(data, SliceSet):
        slices = data
    elif isinstance(data, (list, tuple)) or (isinstance(data, str) and "," in data):
        parts = data.split(",") if isinstance(data, str) else list(data)
        slices = SliceSet.concatenate([training_slices(p, size, progress, workers) for p in parts])
    elif Path(data).suffix == ".npz":
        slices = SliceSet.load(data)
    else:
        slices = load_slices(data, size=size, progress=progress, workers=workers)
    if slices.size != size:
        raise ValueError(f"data: slices are {slices.size}x{slices.size}, the model expects {size}x{size}")
    if slices.seg is None or not (slices.abnormal >= 0).any():
        raise ValueError("data: training needs tumour segmentations, and no case has one")
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


# --- metrics --------------------------------------------------------------------------------

def codebook_stats(indices: np.ndarray, size: int) -> dict:
    """Perplexity (exp of the entropy of code use) and the share of codewords used at all."""
    counts = np.bincount(indices.ravel(), minlength=size).astype(np.float64)
    p = counts / max(counts.sum(), 1.0)
    nz = p[p > 0]
    return {"perplexity": float(np.exp(-(nz * np.log(nz)).sum())), "usage": float((counts > 0).mean())}


@torch.no_grad()
def validation_metrics(model: DecompositionNet, slices: SliceSet, batch_size: int = 64, device: str = "cpu") -> dict:
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
        present = torch.from_numpy(slices.contrasts[rows]).to(device) if model.cfg.contrast_inputs else None
        out = model(x, present)
        tumour = (seg > 0)[:, None].expand_as(x)
        sums["recon_mse"] += float(((out["recon"] - x) ** 2).sum())
        counts["recon_mse"] += x.numel()
        sums["pseudo_mse_outside_tumour"] += float(((out["pseudo_normal"] - x) ** 2)[~tumour].sum())
        counts["pseudo_mse_outside_tumour"] += float((~tumour).sum())
        if slices.healthy is not None and tumour.any():
            h = torch.from_numpy(slices.healthy[rows]).to(device)
            known = torch.from_numpy(slices.healthy_known[rows]).to(device)[:, None, None, None]
            inside = tumour & known
            sums["pseudo_mse_vs_healthy_in_tumour"] += float(((out["pseudo_normal"] - h) ** 2)[inside].sum())
            counts["pseudo_mse_vs_healthy_in_tumour"] += float(inside.sum())
        labelled = torch.from_numpy(slices.abnormal[rows] >= 0)
        preds.append(out["seg_logits"].argmax(1).cpu()[labelled])
        targets.append(seg.cpu()[labelled])
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

def _sampling_order(rng: np.random.Generator, n: int, extra_rows: np.ndarray, share: float) -> np.ndarray:
    """A permutation of 0..n-1 plus ``extra_rows`` repeated so that they make about ``share`` of it:
    the few real cases would otherwise be a rounding error beside thousands of phantom slices."""
    base = rng.permutation(n)
    if share <= 0 or len(extra_rows) == 0 or len(extra_rows) >= n:
        return base
    want = int(round(share / (1 - share) * (n - len(extra_rows)))) - len(extra_rows)
    if want <= 0:
        return base
    repeats = rng.choice(extra_rows, want, replace=True)
    return rng.permutation(np.concatenate([base, repeats]))


def _autocast(device: str, amp: str):
    import contextlib

    if amp == "off":
        return contextlib.nullcontext()
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(kind, dtype=torch.bfloat16)


def _to_device(slices: SliceSet, device: str) -> dict:
    """Training arrays as tensors on ``device`` (a GPU holds them all; indexing there is free)."""
    arrays = {
        "images": torch.from_numpy(slices.images),
        "seg": torch.from_numpy(slices.seg.astype(np.uint8)),
        "seg_known": torch.from_numpy(slices.abnormal >= 0),
        "contrasts": torch.from_numpy(slices.contrasts.astype(bool)),
        "tumour": torch.from_numpy(slices.abnormal == 1),
    }
    if slices.healthy is not None:
        arrays["healthy"] = torch.from_numpy(slices.healthy)
        arrays["healthy_known"] = torch.from_numpy(slices.healthy_known.astype(bool))
    if device != "cpu":
        arrays = {k: v.to(device) for k, v in arrays.items()}
    return arrays


def train(
    data,
    out: str | os.PathLike,
    config: str | EncoderConfig = "base",
    training: TrainConfig | None = None,
    epochs: int = 20,
    seed: int = 0,
    device: str = "cpu",
    resume: bool = True,
    val_fraction: float = 0.1,
    checkpoint_seconds: float = 300.0,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    amp: str = "auto",
    workers: int = 1,
    init_from: str | os.PathLike | None = None,
) -> dict:
    """Trains, writing ``out`` (a resumable checkpoint) as it goes; returns the last metrics.

    ``training``: how (default: ``TRAINING[config]``, or ``TrainConfig()`` for a custom config).
    ``amp``: "auto" (bf16 autocast on CUDA), "bf16" or "off". ``max_seconds``: stop (with a
    checkpoint) after this much training time; a later call resumes. ``init_from``: start a new run
    from another checkpoint's weights (fine-tuning with other settings or data).
    """
    if isinstance(config, str) and config not in CONFIGS:
        raise ValueError(f"config: expected one of {sorted(CONFIGS)}, got {config!r}")
    cfg = CONFIGS[config] if isinstance(config, str) else config
    if training is None:
        training = TRAINING.get(cfg.name, TrainConfig())
    if not isinstance(training, TrainConfig):
        raise TypeError(f"training: expected a TrainConfig, got {type(training).__name__}")
    training = training.for_model(cfg)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but torch sees no CUDA device")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    if amp not in ("auto", "bf16", "off"):
        raise ValueError(f"amp: expected 'auto', 'bf16' or 'off', got {amp!r}")
    # On CPUs with native bf16 (AVX-512 BF16, AMX) "bf16" pays for the base model: 12.9 images/s
    # against 4.3 in fp32 on this project's Sapphire Rapids host; for tiny models it costs more than
    # it saves, so "auto" leaves the CPU in fp32.
    amp = ("bf16" if device.startswith("cuda") else "off") if amp == "auto" else amp
    batch_size, critic = training.batch_size, training.critic
    out = Path(out)
    slices = training_slices(data, cfg.image_size, progress=progress, workers=workers)
    if not cfg.contrast_inputs and not slices.contrasts.all():
        raise ValueError(f"data: some cases lack contrasts, and config {cfg.name!r} needs all four; use 'base'")
    train_rows, val_cases = split_by_case(slices.case_ids, val_fraction, seed)
    train_set = slices.select(train_rows)
    val_set = slices.select(~train_rows) if val_cases else None
    if val_set is not None and not (val_set.abnormal >= 0).any():
        val_set = None
    arrays = _to_device(train_set, device)
    real_rows = (np.flatnonzero(~train_set.healthy_known) if train_set.healthy_known is not None
                 else np.zeros(0, np.int64))
    real_share = training.real_share
    use_counterpart = training.counterpart and "healthy" in arrays

    torch.manual_seed(seed)
    model = DecompositionNet(cfg).to(device)
    if device.startswith("cuda"):
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=training.lr, betas=(0.9, 0.9999), weight_decay=1e-5)
    latent_critic = LatentCritic(cfg).to(device) if critic else None
    critic_opt = torch.optim.Adam(latent_critic.parameters(), lr=training.lr, betas=(0.5, 0.9)) if critic else None
    options = {**training.to_dict(), "init_from": None if init_from is None else str(init_from)}
    epoch, batch_start, step, history, seconds = 0, 0, 0, [], 0.0
    if init_from is not None and not (resume and out.exists()):
        start = read_checkpoint(init_from, map_location=device)
        if EncoderConfig.from_dict(start["config"]) != cfg:
            raise ValueError(f"init_from: {init_from} holds a {start['config'].get('name')!r} model, not {cfg.name!r}")
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in start["model"].items()})
        log(f"starting from the weights of {init_from} (step {start.get('step')})")
    if resume and out.exists():
        state = read_checkpoint(out, map_location=device)
        if EncoderConfig.from_dict(state["config"]) != cfg or state.get("seed") != seed:
            raise ValueError(f"{out}: a checkpoint of another config or seed; pass another --out or resume=False")
        if state.get("training") != options:
            raise ValueError(f"{out}: a checkpoint trained with {state.get('training')}, not {options}; "
                             "pass the same training settings, another --out, or init_from to fine-tune")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if critic and "critic" in state:
            latent_critic.load_state_dict(state["critic"])
            critic_opt.load_state_dict(state["critic_optimizer"])
        epoch, batch_start, step, history = state["epoch"], state["batch"], state["step"], state["history"]
        seconds = float(state.get("seconds", 0.0))
        torch.set_rng_state(state["torch_rng"])  # codebook restarts draw from it
        log(f"resuming {out} at epoch {epoch + 1}, batch {batch_start}, step {step}")

    def checkpoint(next_epoch: int, next_batch: int) -> None:
        state = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": cfg.to_dict(),
            "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": next_epoch, "batch": next_batch,
            "step": step, "history": history, "seed": seed, "command": " ".join(sys.argv),
            "torch_rng": torch.get_rng_state(), "training": options, "seconds": seconds,
            "data": {"source": str(data) if not isinstance(data, SliceSet) else "SliceSet",
                     "train_slices": len(train_set), "val_cases": val_cases},
        }
        if critic:
            state["critic"], state["critic_optimizer"] = latent_critic.state_dict(), critic_opt.state_dict()
        _save(state, out)

    def order_of(e: int) -> np.ndarray:
        return _sampling_order(np.random.default_rng([seed, e]), len(train_set), real_rows, real_share)

    last_save = time.monotonic()
    metrics: dict = history[-1] if history else {}
    model.train()
    stop = False
    while epoch < epochs and not stop:
        order = order_of(epoch)
        batches = len(order) // batch_size or 1
        rows_iter = range(batch_start, batches)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(rows_iter, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False)
            rows_iter = bar
        running: dict[str, float] = {}
        started, images_seen = time.monotonic(), 0
        for b in rows_iter:
            gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, epoch, b]).integers(2**62)))
            rows = torch.from_numpy(np.sort(order[b * batch_size:(b + 1) * batch_size])).to(device)
            losses = _train_step(model, opt, arrays, rows, gen, training, device, amp, use_counterpart,
                                 cfg.contrast_inputs, latent_critic, critic_opt)
            step += 1
            images_seen += len(rows)
            for k, v in losses.items():
                running[k] = 0.9 * running.get(k, v) + 0.1 * v
            if bar is not None:
                bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()})
            now = time.monotonic()
            if max_seconds is not None and seconds + (now - started) >= max_seconds:
                stop = True
            if max_steps is not None and step >= max_steps:
                stop = True
            if stop or now - last_save > checkpoint_seconds:
                seconds += now - started
                images_per_s = images_seen / max(now - started, 1e-9)
                started, images_seen = now, 0
                if stop and b + 1 < batches:
                    checkpoint(epoch, b + 1)
                    metrics = {**metrics, "images_per_s": images_per_s}
                    log(f"stopped at epoch {epoch + 1}, batch {b + 1}, step {step} ({seconds:.0f} s trained)")
                    return metrics
                checkpoint(epoch, b + 1)
                last_save = time.monotonic()
            if stop:
                break
        seconds += time.monotonic() - started
        images_per_s = images_seen / max(time.monotonic() - started, 1e-9)
        batch_start = 0
        epoch += 1
        metrics = {"epoch": epoch, "step": step, "seconds": round(seconds, 1), "images_per_s": images_per_s,
                   **{f"train_{k}": v for k, v in running.items()}}
        if val_set is not None:
            metrics.update(validation_metrics(model, val_set, device=device))
        history.append(metrics)
        log(_format_metrics(metrics))
        checkpoint(epoch, 0)
        last_save = time.monotonic()
    return metrics


def _train_step(model, opt, arrays: dict, rows: torch.Tensor, gen: torch.Generator, training: TrainConfig,
                device: str, amp: str, use_counterpart: bool, contrast_inputs: bool,
                latent_critic=None, critic_opt=None) -> dict:
    """One optimiser step on the rows ``rows`` of the training arrays; returns the loss terms."""
    contrast_dropout = training.contrast_dropout or 0.0
    x = arrays["images"][rows].float()
    seg = arrays["seg"][rows].long()
    seg_known = arrays["seg_known"][rows]
    available = arrays["contrasts"][rows]
    pair_rows = None
    healthy = healthy_known = None
    if use_counterpart:
        healthy = arrays["healthy"][rows].float()
        healthy_known = arrays["healthy_known"][rows]
        x, seg, healthy = augment(x, seg, gen, healthy)
        x, healthy = intensity_jitter(x, gen, (healthy,))
        # Tumour slices whose healthy counterpart is known join the batch twice: as themselves and as
        # their counterpart (a tumour-free image with empty labels), so that the normal latents of the
        # pair can be pulled together.
        pair_rows = torch.nonzero(healthy_known & arrays["tumour"][rows]).flatten()
        if len(pair_rows):
            x = torch.cat([x, healthy[pair_rows]])
            seg = torch.cat([seg, torch.zeros_like(seg[pair_rows])])
            seg_known = torch.cat([seg_known, torch.ones_like(seg_known[pair_rows])])
            available = torch.cat([available, available[pair_rows]])
            healthy = torch.cat([healthy, healthy[pair_rows]])
            healthy_known = torch.cat([healthy_known, healthy_known[pair_rows]])
    else:
        x, seg = augment(x, seg, gen)
        (x,) = intensity_jitter(x, gen)
    shown = drop_contrasts(available, gen, contrast_dropout) if contrast_dropout else available
    if pair_rows is not None and len(pair_rows):
        n = len(rows)
        shown[n:] = shown[pair_rows]  # a pair sees the same contrasts
    if device.startswith("cuda"):
        x = x.contiguous(memory_format=torch.channels_last)
    with _autocast(device, amp):
        out = model(x, shown if contrast_inputs else None)
    out = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in out.items()}
    losses = decomposition_losses(out, x, seg, training, channels=available, seg_known=seg_known,
                                  healthy=healthy, healthy_known=healthy_known)
    total = losses["total"]
    if pair_rows is not None and len(pair_rows):
        n = len(rows)
        z = out["z_normal"]
        target = z[n:].detach()
        # relative to the latents' scale, so that shrinking every latent cannot pay this term
        nac = F.mse_loss(z[pair_rows], target) / target.pow(2).mean().clamp_min(1e-6)
        losses["nac"] = nac
        total = total + training.w_recon * nac
    if latent_critic is not None:
        total = total + _critic_step(latent_critic, critic_opt, out, seg, training)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def _critic_step(critic, critic_opt, out: dict, seg: torch.Tensor, training: TrainConfig) -> torch.Tensor:
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
    return -training.w_critic * critic(z[has_tumour]).mean()


def _format_metrics(m: dict) -> str:
    keys = ("epoch", "seconds", "images_per_s", "train_total", "train_nac", "recon_mse", "pseudo_mse_outside_tumour", "pseudo_mse_vs_healthy_in_tumour",
            "dice_whole", "normal_perplexity", "normal_usage", "abnormal_perplexity", "abnormal_usage")
    return "  ".join(f"{k}={m[k]:.4g}" if isinstance(m.get(k), float) else f"{k}={m.get(k)}" for k in keys if k in m)
