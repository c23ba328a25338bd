"""The video experiment's prior stage: codes of the frozen frame VQ-VAE, and the action-conditional prior's fit.

Axis legend: N frames, T actions of an episode, k context frames, H W frame size, h w latent grid (w·G with G
codebooks per latent, as in :mod:`image.prior_stage`), K codebook size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from core.checkpoint import FrozenVQVAE, load_frozen_vqvae
from core.config import QuantizerConfig, from_dict
from core.pipeline import LN2, PriorTrainer, code_cache, vqvae_checkpoint
from core.pipeline import load_prior as load_pipeline_prior
from image.config import ImageModelConfig
from image.model import ImageVQVAE
from priors.action_pixelcnn import ActionConditionalPixelCNN
from priors.codes import cached_codes
from video.config import VideoConfig
from video.data import Episode, FrameDataset, WindowDataset, split_by_episode

EVAL_BATCH = 256


def load_frame_vqvae(path: str | Path, device: torch.device) -> FrozenVQVAE:
    """The frame VQ-VAE of a checkpoint (video or image experiment: only its ``model`` and ``quantizer`` sections
    are read; the record's ``cfg`` is the stored config dict), frozen, in eval mode.

    Raises:
        FileNotFoundError / ValueError: a missing or foreign checkpoint.
    """
    def build(stored: dict[str, Any], _) -> ImageVQVAE:
        return ImageVQVAE(from_dict(ImageModelConfig, stored["model"]), from_dict(QuantizerConfig, stored["quantizer"]))

    return load_frozen_vqvae(path, dict, build, device)


def load_checked_vqvae(cfg: VideoConfig, device: torch.device, path: str | Path | None = None) -> FrozenVQVAE:
    """The frozen frame VQ-VAE the run's later stages read (``path``, default :func:`core.pipeline.vqvae_checkpoint`),
    checked against this config's frames.

    Raises:
        ValueError: ``env.frame_size`` is not divisible by the VQ-VAE's downsampling.
    """
    frozen = load_frame_vqvae(path or vqvae_checkpoint(cfg), device)
    size = cfg.env.frame_size
    if size % frozen.model.downsampling:
        raise ValueError(f"env.frame_size {size} is not divisible by the VQ-VAE's downsampling "
                         f"{frozen.model.downsampling}")
    return frozen


def latent_grid(cfg: VideoConfig, vqvae: ImageVQVAE) -> tuple[int, int]:
    """The prior's grid ``(h, w·G)`` of one frame of ``env.frame_size``."""
    shape = vqvae.latent_shape(cfg.env.frame_size, cfg.env.frame_size)
    return shape[0], shape[1] * (shape[2] if len(shape) == 3 else 1)


def split_codes(cfg: VideoConfig, episodes: list[Episode], split: str, frozen: FrozenVQVAE, device: torch.device,
                data_key: str) -> list[torch.Tensor]:
    """Codes ``[T_e + 1, h, w·G]`` of every frame of every episode of one split, extracted once and cached in
    :func:`core.pipeline.code_cache` (reused only for the same VQ-VAE weights and episodes ``data_key``)."""
    frames = FrameDataset(episodes)
    codes, _ = cached_codes(code_cache(cfg, split), frozen.model, frozen.vqvae_hash, frames, len(frames), device,
                            data_key)
    return split_by_episode(codes, episodes)


def episode_actions(episodes: list[Episode]) -> list[torch.Tensor]:
    """Each episode's actions as a ``[T_e]`` long tensor."""
    return [torch.from_numpy(e.actions).long() for e in episodes]


def build_prior(cfg: VideoConfig, num_codes: int, num_actions: int) -> ActionConditionalPixelCNN:
    """The prior that ``cfg.prior`` describes."""
    p = cfg.prior
    return ActionConditionalPixelCNN(num_codes, num_actions, p.context_frames, channels=p.channels,
                                     num_layers=p.num_layers, kernel_size=p.kernel_size,
                                     context_channels=p.context_channels, context_blocks=p.context_blocks,
                                     code_embedding_dim=p.code_embedding_dim,
                                     action_embedding_dim=p.action_embedding_dim)


class VideoPriorTrainer(PriorTrainer):
    """Stage "prior": fits :class:`~priors.action_pixelcnn.ActionConditionalPixelCNN` to windows of the frozen
    frame VQ-VAE's codes; ``train/nll_bits_per_code``, and on held-out episodes ``val/nll_bits_per_code`` and
    ``val/nll_bits_per_code_shuffled_actions``.

    Args:
        cfg: the experiment config.
        frozen: the frozen frame VQ-VAE.
        train_windows, val_windows: :class:`~video.data.WindowDataset` of the training and held-out episodes.
        action_names: one name per action.
    """

    def __init__(self, cfg: VideoConfig, frozen: FrozenVQVAE, train_windows: WindowDataset,
                 val_windows: WindowDataset, action_names: list[str]):
        self.val_windows, self.action_names = val_windows, list(action_names)
        self.grid = tuple(train_windows[0][2].shape)  # (h, w·G)
        k = frozen.model.quantizer.codebook_size
        super().__init__(cfg, frozen, lambda: build_prior(cfg, k, len(action_names)), train_windows,
                         fits={"codebook_size": k, "grid": self.grid, "action_names": self.action_names,
                               "context_frames": cfg.prior.context_frames},
                         derived={"prior_grid": self.grid, "action_names": self.action_names,
                                  "train_windows": len(train_windows), "val_windows": len(val_windows)})

    def batch_nll(self, batch) -> torch.Tensor:
        context, actions, target = batch
        return self.model.loss(target, context, actions)  # nats per code

    def logits_call(self, batch):
        context, actions, target = batch  # logits of the next frame's codes given context codes and actions
        return (lambda m, t, c, a: m(t, c, a)), {"codes": target, "context": context, "actions": actions}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out NLL in bits per code, with the true actions and with the actions permuted across windows (the
        difference is what the prior gets from the action)."""
        perm = torch.randperm(len(self.val_windows), generator=torch.Generator().manual_seed(0))
        totals, count = {"nll_bits_per_code": 0.0, "nll_bits_per_code_shuffled_actions": 0.0}, 0
        for start, (context, actions, target) in zip(range(0, len(perm), EVAL_BATCH),
                                                     DataLoader(self.val_windows, batch_size=EVAL_BATCH)):
            shuffled = torch.stack([self.val_windows[int(i)][1] for i in perm[start:start + len(actions)]])
            context, target = context.to(self.device), target.to(self.device)
            for key, acts in (("nll_bits_per_code", actions), ("nll_bits_per_code_shuffled_actions", shuffled)):
                logits = self.model(target, context, acts.to(self.device))
                totals[key] += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            count += target.numel()
        return {key: total / (max(count, 1) * LN2) for key, total in totals.items()}


def load_prior(path: str | Path, frozen: FrozenVQVAE, grid: tuple[int, ...],
               device: torch.device) -> tuple[ActionConditionalPixelCNN, dict[str, Any]]:
    """The prior of a checkpoint, refused (ValueError) unless it was fitted to this VQ-VAE's codes (same codebook
    size and weights, :func:`core.pipeline.load_prior`) on the latent grid ``grid`` (h, w·G) of the frames it will
    continue.

    Returns:
        ``(prior in eval mode, checkpoint payload)``; the payload holds ``grid``, ``action_names`` and
        ``context_frames``.
    """
    fits = {"codebook_size": frozen.model.quantizer.codebook_size, "grid": grid}
    return load_pipeline_prior(path, frozen, fits, lambda p: build_prior(
        from_dict(VideoConfig, _current(p["config"])), p["codebook_size"], len(p["action_names"])), device)


def _current(stored: dict) -> dict:
    """A stored config without the evaluation keys retired since (``prior.moving_threshold_db``: the moving
    steps are defined by consecutive true frames now); they do not shape the prior."""
    prior = {k: v for k, v in stored.get("prior", {}).items() if k not in RETIRED_PRIOR_KEYS}
    return {**stored, "prior": prior}


RETIRED_PRIOR_KEYS = ("moving_threshold_db",)
