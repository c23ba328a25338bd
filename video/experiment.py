"""The video experiment (paper sec. 4.4): record episodes, train the frame VQ-VAE, fit the action-conditional prior
in its latent space, then generate futures from real frames and score them against the environment's truth.

``python experiments/run.py video [--config FILE] [--stage all|record|vqvae|prior|generate] [--resume] [key=value ...]``
runs the stages of :data:`SPEC` (through :func:`core.stages.run_domain`).

Axis legend: N frames or windows, T actions, G given frames, F generated frames, H W frame size, h w latent grid.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from core.checkpoint import FrozenVQVAE
from core.data import data_variance
from core.pipeline import PipelineAdapter, needs_prior, needs_vqvae, pipeline_stages
from core.stages import DomainSpec, StageContext
from image.vqvae_stage import ImageVQVAETrainer
from video.config import VideoConfig
from video.data import FrameDataset, WindowDataset
from video.generate_stage import run_generate
from video.prior_stage import (
    VideoPriorTrainer,
    episode_actions,
    latent_grid,
    load_checked_vqvae,
    load_prior,
    split_codes,
)
from video.splits import Splits, load_splits


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


class VideoAdapter(PipelineAdapter):
    """The video domain in the core pipeline: the image VQ-VAE on single frames, the action-conditional PixelCNN
    over windows of frame codes. Its samples are the ``generate`` stage's (futures of real frames), not ``sample``."""

    def vqvae_trainer(self, ctx: StageContext) -> FrameVQVAETrainer:
        cfg, splits = ctx.cfg, _recorded(ctx)[0]
        train_frames = FrameDataset(splits.train)
        val_frames = FrameDataset(splits.val, max_items=cfg.data.val_frames)
        return FrameVQVAETrainer(cfg, train_frames, val_frames, data_variance(train_frames), splits)

    def load_vqvae(self, ctx: StageContext, path: Path) -> FrozenVQVAE:
        return load_checked_vqvae(ctx.cfg, ctx.device, path)

    def prior_trainer(self, ctx: StageContext, frozen: FrozenVQVAE) -> VideoPriorTrainer:
        cfg, device, splits = ctx.cfg, ctx.device, _recorded(ctx)[0]
        grid = latent_grid(cfg, frozen.model)
        train_codes = split_codes(cfg, splits.train, "train", frozen, device, splits.key)
        val_codes = split_codes(cfg, splits.val, "val", frozen, device, splits.key)
        if tuple(train_codes[0].shape[1:]) != grid:
            raise ValueError(f"codes of grid {tuple(train_codes[0].shape[1:])}, expected {grid}")
        k = cfg.prior.context_frames
        train_windows = WindowDataset(train_codes, episode_actions(splits.train), k)
        val_windows = WindowDataset(val_codes, episode_actions(splits.val), k, max_items=cfg.prior.val_windows)
        print(f"\nprior on {grid[0]}×{grid[1]} codes of the VQ-VAE {frozen.vqvae_hash}: {len(train_windows)} "
              f"training windows, {len(val_windows)} held-out windows, {k} context frames")
        return VideoPriorTrainer(cfg, frozen, train_windows, val_windows, splits.action_names)

    def load_prior(self, ctx: StageContext, frozen: FrozenVQVAE, path: Path):
        return load_prior(path, frozen, latent_grid(ctx.cfg, frozen.model), ctx.device)


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
_PIPELINE = pipeline_stages(VideoAdapter())
SPEC = DomainSpec(
    name="video", config_class=VideoConfig,
    requires={"prior": needs_vqvae, "generate": needs_prior},
    stages={"record": lambda ctx: _recorded(ctx)[1],
            "vqvae": _after_record(lambda ctx, splits: _PIPELINE["vqvae"](ctx)),
            "prior": _after_record(lambda ctx, splits: _PIPELINE["prior"](ctx)),
            "generate": _after_record(lambda ctx, splits: run_generate(ctx.cfg, splits, ctx.device))})
STAGES = SPEC.known()
