"""The video experiment (paper sec. 4.4): record episodes, train the frame VQ-VAE, fit the action-conditional prior
in its latent space, then generate futures from real frames and score them against the environment's truth.

``python experiments/run.py video [--config FILE] [--stage all|record|vqvae|prior|generate] [--resume] [key=value ...]``
runs the stages of :data:`SPEC` (through :func:`core.stages.run_domain`).

Axis legend: N frames or windows, T actions, G given frames, F generated frames, H W frame size, h w latent grid.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.checkpoint import earlier_stage_checkpoint, stage_checkpoint
from core.data import data_variance
from core.stages import DomainSpec, StageContext
from core.tracking import stage_tracker
from core.trainer import fit_stage, resolve_device
from image.experiment import ImageVQVAETrainer
from video.config import VideoConfig
from video.data import Episode, FrameDataset, WindowDataset
from video.envs import action_index
from video.evaluate import build_windows, evaluate_generation
from video.media import curves_figure, gif_frames, strip, write_gif
from video.prior_stage import (
    VideoPriorTrainer,
    episode_actions,
    episode_codes,
    load_frame_vqvae,
    load_prior,
)
from video.record import load_or_record


@dataclasses.dataclass
class Splits:
    """The recorded (or on-disk) training and held-out episodes."""

    train: list[Episode]
    val: list[Episode]
    action_names: list[str]
    key: str  # identifies the episodes (keys the code cache)


def load_splits(cfg: VideoConfig) -> Splits:
    """Record both splits (or reuse the cache, or read ``data.root``).

    Raises:
        ValueError: the two splits name different actions.
    """
    cache = cfg.data.cache_dir or str(Path(cfg.train.output_dir) / "episodes")
    train, train_manifest = load_or_record(cfg.env, cfg.data, "train", cache)
    val, val_manifest = load_or_record(cfg.env, cfg.data, "val", cache)
    if train_manifest["action_names"] != val_manifest["action_names"]:
        raise ValueError(f"training and held-out episodes name different actions: "
                         f"{train_manifest['action_names']} vs {val_manifest['action_names']}")
    key = json.dumps([train_manifest.get("config"), train_manifest["episodes"], val_manifest.get("config"),
                      val_manifest["episodes"]], sort_keys=True)
    return Splits(train, val, list(train_manifest["action_names"]), key)


class FrameVQVAETrainer(ImageVQVAETrainer):
    """Stage "vqvae": the paper's image VQ-VAE (:class:`image.model.ImageVQVAE`) trained on single frames of the
    training episodes and evaluated (MSE, NMSE, PSNR, codebook health) on frames of the held-out episodes."""

    def __init__(self, cfg: VideoConfig, train_frames: FrameDataset, val_frames: FrameDataset, variance: float,
                 splits: Splits):
        self.splits = splits
        super().__init__(cfg, train_frames, val_frames, variance)  # a VideoConfig is a VQVAEStageConfig

    def extra_params(self) -> dict[str, Any]:
        return {**super().extra_params(), "derived.train_episodes": len(self.splits.train),
                "derived.val_episodes": len(self.splits.val), "derived.action_names": self.splits.action_names}


def run_record(cfg: VideoConfig) -> tuple[Splits, dict[str, float]]:
    """Stage "record": the episodes of both splits, recorded once and cached."""
    start = time.perf_counter()
    splits = load_splits(cfg)
    metrics = {f"{name}_episodes": float(len(eps)) for name, eps in (("train", splits.train), ("val", splits.val))}
    metrics.update({f"{name}_frames": float(sum(len(e.frames) for e in eps))
                    for name, eps in (("train", splits.train), ("val", splits.val))})
    print(f"\nepisodes of {cfg.env.env_id} ({cfg.env.frame_size}×{cfg.env.frame_size}, actions "
          f"{splits.action_names}): " + ", ".join(f"{k} {v:.0f}" for k, v in metrics.items()) +
          f" ({time.perf_counter() - start:.1f} s)")
    return splits, metrics


def _vqvae_checkpoint(cfg: VideoConfig) -> Path:
    return earlier_stage_checkpoint(cfg.prior.vqvae_checkpoint, cfg.train.output_dir)


def _prior_checkpoint(cfg: VideoConfig) -> Path:
    return stage_checkpoint(cfg.train.output_dir, "prior")


def run_vqvae(cfg: VideoConfig, splits: Splits, resume: bool) -> dict[str, float]:
    """Stage "vqvae": train the frame VQ-VAE and evaluate it on held-out frames."""
    train_frames = FrameDataset(splits.train)
    val_frames = FrameDataset(splits.val, max_items=cfg.data.val_frames)
    trainer = FrameVQVAETrainer(cfg, train_frames, val_frames, data_variance(train_frames), splits)
    return fit_stage(trainer, resume, "held-out frames (vqvae)")


def _frozen_vqvae(cfg: VideoConfig, device: torch.device):
    """The frozen frame VQ-VAE and its hash, checked against this config's frames; and their latent grid."""
    vqvae, vqvae_hash = load_frame_vqvae(_vqvae_checkpoint(cfg), device)
    size = cfg.env.frame_size
    if size % vqvae.downsampling:
        raise ValueError(f"env.frame_size {size} is not divisible by the VQ-VAE's downsampling {vqvae.downsampling}")
    shape = vqvae.latent_shape(size, size)
    grid = (shape[0], shape[1] * (shape[2] if len(shape) == 3 else 1))  # (h, w·G)
    return vqvae, vqvae_hash, grid


def _codes(cfg: VideoConfig, episodes: list[Episode], split: str, vqvae, vqvae_hash: str, device: torch.device,
           key: str) -> list[torch.Tensor]:
    """Per-episode codes of one split, cached under ``<output_dir>/prior/codes/<split>.pt``."""
    path = Path(cfg.train.output_dir) / "prior" / "codes" / f"{split}.pt"
    return episode_codes(path, vqvae, vqvae_hash, episodes, device, key)


def run_prior(cfg: VideoConfig, splits: Splits, resume: bool) -> dict[str, float]:
    """Stage "prior": codes of the frozen frame VQ-VAE (cached), then the action-conditional prior's fit."""
    device = resolve_device(cfg.train.device)
    vqvae, vqvae_hash, grid = _frozen_vqvae(cfg, device)
    train_codes = _codes(cfg, splits.train, "train", vqvae, vqvae_hash, device, splits.key)
    val_codes = _codes(cfg, splits.val, "val", vqvae, vqvae_hash, device, splits.key)
    if tuple(train_codes[0].shape[1:]) != grid:
        raise ValueError(f"codes of grid {tuple(train_codes[0].shape[1:])}, expected {grid}")
    k = cfg.prior.context_frames
    train_windows = WindowDataset(train_codes, episode_actions(splits.train), k)
    val_windows = WindowDataset(val_codes, episode_actions(splits.val), k, max_items=cfg.prior.val_windows)
    print(f"\nprior on {grid[0]}×{grid[1]} codes of the VQ-VAE {vqvae_hash}: {len(train_windows)} training windows, "
          f"{len(val_windows)} held-out windows, {k} context frames")
    trainer = VideoPriorTrainer(cfg, vqvae, vqvae_hash, train_windows, val_windows, splits.action_names)
    return fit_stage(trainer, resume, "held-out windows (prior)")


def _table(curves: dict[str, np.ndarray], metric: str) -> str:
    """One line per curve whose name starts with ``metric + "_"`` (``psnr``, ``moving/ssim``…): per step, then the
    mean over the steps (NaN steps left out)."""
    rows = [(name[len(metric) + 1:], values) for name, values in curves.items() if name.startswith(metric + "_")]
    steps = len(rows[0][1])
    head = f"{metric.upper():>30} " + " ".join(f"{i:>6d}" for i in range(1, steps + 1)) + "    mean"
    lines = [head] + [f"{name:>30} " + " ".join(f"{v:6.3f}" if "ssim" in metric else f"{v:6.2f}" for v in values) +
                      f"  {np.nanmean(values):6.3f}" for name, values in rows]
    return "\n".join(lines)


@torch.no_grad()
def _vqvae_psnr(vqvae, frames: FrameDataset, device: torch.device) -> float:
    """Mean per-frame PSNR (dB) of the frame VQ-VAE's reconstructions of held-out frames."""
    from core.metrics import psnr

    total, count = 0.0, 0
    for start in range(0, len(frames), 256):
        x = torch.stack([frames[i][0] for i in range(start, min(start + 256, len(frames)))]).to(device)
        x_hat = vqvae(x).x_hat.clamp(0, 1)
        total += float(psnr(x, x_hat)) * len(x)
        count += len(x)
    return total / max(count, 1)


def run_generate(cfg: VideoConfig, splits: Splits) -> dict[str, float]:
    """Stage "generate": 10 frames from 6 real ones under the true, shuffled and fixed actions on held-out episodes;
    per-step PSNR/SSIM as ``generate/*`` metrics (step = generated frame 1..F), gif strips as artifacts."""
    p = cfg.prior
    device = resolve_device(cfg.train.device)
    vqvae, vqvae_hash, grid = _frozen_vqvae(cfg, device)
    prior, payload = load_prior(_prior_checkpoint(cfg), vqvae, vqvae_hash, grid, device)
    if payload["action_names"] != splits.action_names:
        raise ValueError(f"the prior knows actions {payload['action_names']}, the episodes {splits.action_names}")
    if p.given_frames < prior.context_frames:
        raise ValueError(f"prior.given_frames ({p.given_frames}) < the prior's context frames ({prior.context_frames})")
    fixed = {name: action_index(splits.action_names, name) for name in p.fixed_actions}
    val_codes = _codes(cfg, splits.val, "val", vqvae, vqvae_hash, device, splits.key)
    windows = build_windows(splits.val, val_codes, p.given_frames, p.generated_frames, p.eval_stride, p.eval_windows)
    curves, media = evaluate_generation(prior, vqvae, windows, cfg.env, splits.val, fixed, p.temperature,
                                        p.train.seed, p.eval_samples, p.moving_threshold_db)
    recon_psnr = _vqvae_psnr(vqvae, FrameDataset(splits.val, max_items=cfg.data.val_frames), device)

    tracker = stage_tracker(cfg.tracking, "generate", cfg, {
        "derived.vqvae_hash": vqvae_hash, "derived.prior_checkpoint": str(_prior_checkpoint(cfg)),
        "derived.eval_windows": len(windows.starts), "derived.action_names": splits.action_names})
    for step in range(p.generated_frames):
        tracker.log_metrics({f"generate/{name}": float(values[step]) for name, values in curves.items()
                             if np.isfinite(values[step])}, step + 1)
    means = {f"generate/{name}_mean": float(np.nanmean(values)) for name, values in curves.items()}
    metrics = {**means, "generate/vqvae_psnr": recon_psnr, "generate/windows": float(len(windows.starts))}
    tracker.log_metrics(metrics, p.generated_frames)
    out_dir = Path(cfg.train.output_dir) / "generate"
    shown = slice(0, p.media_examples)
    for name, (given, generated, truth) in media.items():
        truth = None if truth is None else truth[shown]
        # the recorded actions' pictures also show the same windows under shuffled actions, below / to the right
        shuffled = media["shuffled_actions"][1][shown] if name == "true_actions" else None
        tracker.log_image(strip(given[shown], generated[shown], truth, shuffled), f"strips/{name}.png")
        gif = write_gif(gif_frames(given[shown], generated[shown], truth, shuffled),
                        out_dir / "gifs" / f"{name}.gif")
        tracker.log_artifact(gif, "gifs")
    import matplotlib.pyplot as plt

    for metric in ("psnr", "ssim"):
        fig = curves_figure(curves, metric, p.eval_samples)
        tracker.log_figure(fig, f"curves/{metric}_per_step.png")
        plt.close(fig)
    tracker.end()
    print(f"\ngeneration on {len(windows.starts)} held-out windows: {p.given_frames} given frames, "
          f"{p.generated_frames} generated (temperature {p.temperature}); frame VQ-VAE PSNR on held-out frames "
          f"{recon_psnr:.2f} dB")
    for metric in ("psnr", "ssim", "moving/psnr", "moving/ssim"):
        print(_table(curves, metric))
    print("moving fraction per step: " + " ".join(f"{v:.2f}" for v in curves["moving_fraction"]))
    print(f"MLflow UI: {tracker.ui_command()}")
    return metrics


def _recorded(ctx: StageContext) -> tuple[Splits, dict[str, float]]:
    """The episodes (and the record stage's metrics), recorded or read once per run before any other stage."""
    def record():
        if ctx.cfg.train.threads > 0:
            torch.set_num_threads(ctx.cfg.train.threads)
        return run_record(ctx.cfg)

    return ctx.shared("record", record)


def _after_record(run):
    """A stage that needs the episodes: its metrics come after the record stage's, as in the ``all`` run."""
    def stage(ctx: StageContext) -> dict[str, float]:
        splits, recorded = _recorded(ctx)
        return {**recorded, **run(ctx, splits)}
    return stage


# ``all`` = record → vqvae → prior → generate; every stage reads the recorded episodes first.
SPEC = DomainSpec(
    name="video", config_class=VideoConfig,
    requires={"prior": lambda cfg: {"vqvae": _vqvae_checkpoint(cfg)},
              "generate": lambda cfg: {"vqvae": _vqvae_checkpoint(cfg), "prior": _prior_checkpoint(cfg)}},
    stages={"record": lambda ctx: _recorded(ctx)[1],
            "vqvae": _after_record(lambda ctx, splits: run_vqvae(ctx.cfg, splits, ctx.resume)),
            "prior": _after_record(lambda ctx, splits: run_prior(ctx.cfg, splits, ctx.resume)),
            "generate": _after_record(lambda ctx, splits: run_generate(ctx.cfg, splits))})
STAGES = SPEC.known()
