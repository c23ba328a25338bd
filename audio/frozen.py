"""Loading the trained speech VQ-VAE for the later stages (probe, conversion, prior, sampling)."""

from __future__ import annotations

from pathlib import Path

import torch

from audio.config import AudioConfig
from audio.model import AudioVQVAE
from core.checkpoint import earlier_stage_checkpoint, load_frozen
from core.config import from_dict


def vqvae_checkpoint(cfg: AudioConfig) -> Path:
    """The VQ-VAE checkpoint the later stages use: ``prior.vqvae_checkpoint``, else this run's own."""
    return earlier_stage_checkpoint(cfg.prior.vqvae_checkpoint, cfg.train.output_dir)


def load_frozen_vqvae(path: str | Path, device: torch.device) -> tuple[AudioVQVAE, AudioConfig, list[str], str]:
    """The speech VQ-VAE of a checkpoint, frozen: ``(model, its config, its speakers, hash of its weights)``."""
    def build(payload):
        c = from_dict(AudioConfig, payload["config"])
        return AudioVQVAE(c.model, c.quantizer, num_speakers=len(payload["speakers"]),
                          sample_rate=c.data.sample_rate)

    model, payload, digest = load_frozen(path, build, device)
    return model, from_dict(AudioConfig, payload["config"]), list(payload["speakers"]), digest
