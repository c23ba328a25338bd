"""The video experiment's prior stage: codes of the frozen frame VQ-VAE, and the action-conditional prior's fit.

Axis legend: N frames, T actions of an episode, k context frames, H W frame size, h w latent grid (w·G with G
codebooks per latent, as in :mod:`image.prior_stage`), K codebook size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from core.checkpoint import check_fits, load_frozen
from core.config import QuantizerConfig, from_dict, stage_train_config, to_dict
from core.trainer import Trainer, seed_everything
from image.config import ImageModelConfig
from image.model import ImageVQVAE
from priors.action_pixelcnn import ActionConditionalPixelCNN
from priors.codes import cached_codes
from video.config import VideoConfig
from video.data import Episode, FrameDataset, WindowDataset, split_by_episode

EVAL_BATCH = 256


def load_frame_vqvae(path: str | Path, device: torch.device) -> tuple[ImageVQVAE, str]:
    """The frame VQ-VAE of a checkpoint (video or image experiment: only its ``model`` and ``quantizer`` sections
    are read), frozen, in eval mode.

    Returns:
        ``(model, hash of its weights)``.

    Raises:
        FileNotFoundError / ValueError: a missing or foreign checkpoint.
    """
    def build(payload: dict[str, Any]) -> ImageVQVAE:
        cfg = payload["config"]
        return ImageVQVAE(from_dict(ImageModelConfig, cfg["model"]), from_dict(QuantizerConfig, cfg["quantizer"]))

    model, _, weights_hash = load_frozen(path, build, device)
    return model, weights_hash


def episode_codes(path: Path, vqvae: ImageVQVAE, vqvae_hash: str, episodes: list[Episode], device: torch.device,
                  data_key: str) -> list[torch.Tensor]:
    """Codes ``[T_e + 1, h, w·G]`` of every frame of every episode, extracted once and cached in ``path`` (reused
    only for the same VQ-VAE weights and data, see :func:`image.prior_stage.cached_codes`)."""
    frames = FrameDataset(episodes)
    codes, _ = cached_codes(path, vqvae, vqvae_hash, frames, len(frames), device, data_key)
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


class VideoPriorTrainer(Trainer):
    """Stage "prior": fits :class:`~priors.action_pixelcnn.ActionConditionalPixelCNN` to windows of the frozen
    frame VQ-VAE's codes; ``train/nll_bits_per_code``, and on held-out episodes ``val/nll_bits_per_code`` and
    ``val/nll_bits_per_code_shuffled_actions``.

    Args:
        cfg: the experiment config.
        vqvae, vqvae_hash: the frozen frame VQ-VAE and the hash of its weights.
        train_windows, val_windows: :class:`~video.data.WindowDataset` of the training and held-out episodes.
        action_names: one name per action.
    """

    def __init__(self, cfg: VideoConfig, vqvae: ImageVQVAE, vqvae_hash: str, train_windows: WindowDataset,
                 val_windows: WindowDataset, action_names: list[str]):
        self.video_cfg, self.vqvae, self.vqvae_hash = cfg, vqvae, vqvae_hash
        self.val_windows, self.action_names = val_windows, list(action_names)
        self.grid = tuple(train_windows[0][2].shape)  # (h, w·G)
        seed_everything(cfg.prior.train.seed)
        prior = build_prior(cfg, vqvae.quantizer.codebook_size, len(action_names))
        train_cfg = stage_train_config(cfg.prior.train, cfg.train)
        super().__init__(prior, train_windows, train_cfg, cfg.tracking, to_dict(cfg), name="prior")

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"vqvae_hash": self.vqvae_hash, "codebook_size": self.vqvae.quantizer.codebook_size,
                "grid": self.grid, "action_names": self.action_names,
                "context_frames": self.video_cfg.prior.context_frames}

    def extra_params(self) -> dict[str, Any]:
        return {"derived.vqvae_hash": self.vqvae_hash, "derived.prior_grid": self.grid,
                "derived.action_names": self.action_names, "derived.train_windows": len(self.train_dataset),
                "derived.val_windows": len(self.val_windows)}

    def compute_loss(self, batch) -> dict[str, torch.Tensor]:
        context, actions, target = batch
        nll = self.model.loss(target, context, actions)  # nats per code
        return {"loss": nll, "nll_bits_per_code": nll.detach() / math.log(2)}

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
        return {key: total / (max(count, 1) * math.log(2)) for key, total in totals.items()}


def load_prior(path: str | Path, vqvae: ImageVQVAE, vqvae_hash: str, grid: tuple[int, ...],
               device: torch.device) -> tuple[ActionConditionalPixelCNN, dict[str, Any]]:
    """The prior of a checkpoint, refused (ValueError) unless it was fitted to this VQ-VAE's codes (same codebook
    size and weights, :func:`core.checkpoint.check_fits`) on the latent grid ``grid`` (h, w·G) of
    the frames it will continue.

    Returns:
        ``(prior in eval mode, checkpoint payload)``; the payload holds ``grid``, ``action_names`` and
        ``context_frames``.
    """
    def build(payload: dict[str, Any]) -> ActionConditionalPixelCNN:
        check_fits(payload, {"codebook_size": vqvae.quantizer.codebook_size, "vqvae_hash": vqvae_hash, "grid": grid})
        return build_prior(from_dict(VideoConfig, payload["config"]), payload["codebook_size"],
                           len(payload["action_names"]))

    prior, payload, _ = load_frozen(path, build, device)
    return prior, payload
