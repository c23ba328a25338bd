"""Loading the trained speech VQ-VAE for the later stages (probe, conversion, prior, sampling)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from audio.config import AudioConfig
from audio.model import AudioVQVAE
from core.checkpoint import FrozenVQVAE
from core.checkpoint import load_frozen_vqvae as load_frozen_checkpoint
from core.config import from_dict


def read_audio_config(stored: dict) -> AudioConfig:
    """The audio experiment's config as a checkpoint stores it."""
    return from_dict(AudioConfig, stored)


def load_frozen_vqvae(path: str | Path, device: torch.device, postfilter: float | None = None) -> FrozenVQVAE:
    """The speech VQ-VAE of a checkpoint, frozen; its ``extras["speakers"]`` name the speaker ids it was trained on.

    ``postfilter``: the reading run's ``model.postfilter``, which replaces the stored one (it changes how log-mel
    frames are rendered, not the trained model); ``None`` keeps the stored value.

    Raises:
        FileNotFoundError / ValueError: for a missing or foreign checkpoint.
    """
    def read(stored: dict) -> AudioConfig:
        cfg = read_audio_config(stored)
        if postfilter is not None:
            cfg = replace(cfg, model=replace(cfg.model, postfilter=postfilter))
        return cfg

    def build(cfg: AudioConfig, payload: dict) -> AudioVQVAE:
        return AudioVQVAE(cfg.model, cfg.quantizer, num_speakers=len(payload["speakers"]),
                          sample_rate=cfg.data.sample_rate)

    return load_frozen_checkpoint(path, read, build, device)
