"""Whole utterances through the frozen speech VQ-VAE: codes, encoder outputs and phone labels per code frame.

Axis legend: T waveform samples, N code frames (one per ``hop`` samples), D code dim.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from audio.datasets import Utterance
from audio.phones import frame_labels
from core.files import keyed_cache


def pad_to_hop(wave: torch.Tensor, hop: int) -> torch.Tensor:
    """Zero-pad a waveform ``[T]`` at the end to a multiple of ``hop`` samples (at least one hop)."""
    length = max(hop, -(-wave.shape[-1] // hop) * hop)
    return torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))


@torch.no_grad()
def utterance_z_e(model, utterances: list[Utterance], sample_rate: int, device: torch.device
                  ) -> tuple[np.ndarray, torch.Tensor]:
    """Encoder outputs and phone labels of every code frame of aligned utterances, concatenated.

    Returns:
        ``z_e`` ``[ΣN_u, D]`` float32 and ``labels`` ``[ΣN_u]`` long (each frame's phone at its centre, frames of
        ``hop / sample_rate`` seconds).
    """
    zs, labels = [], []
    for utt in utterances:
        z = model.z_e(pad_to_hop(utt.waveform, model.hop)[None].to(device))[0]  # [N, D]
        zs.append(z.float().cpu().numpy())
        labels.append(frame_labels(utt.segments, z.shape[0], model.hop / sample_rate))
    return np.concatenate(zs), torch.cat(labels)


@torch.no_grad()
def utterance_codes(model, utterances: list[Utterance], device: torch.device) -> list[torch.Tensor]:
    """Code indices ``[N_u]`` (first codebook) of every utterance, one utterance at a time."""
    out = []
    for utt in utterances:
        idx = model.encode(pad_to_hop(utt.waveform, model.hop)[None].to(device))[0]  # [N] or [N, G]
        out.append(idx.reshape(idx.shape[0], -1)[:, 0].cpu())
    return out


def cached_utterance_codes(path: Path, model, vqvae_hash: str, utterances: list[Utterance],
                           device: torch.device) -> list[torch.Tensor]:
    """:func:`utterance_codes`, cached in ``path`` and reused only for the same VQ-VAE weights and utterances."""
    key = {"vqvae_hash": vqvae_hash, "utterances": [(u.speaker, u.sentence_id, u.waveform.numel()) for u in utterances]}
    return keyed_cache(path, key, lambda: utterance_codes(model, utterances, device))


def phone_labels(utterances: list[Utterance], codes: list[torch.Tensor], hop: int, sample_rate: int) -> torch.Tensor:
    """Phone label of every code frame ``[ΣN_u]`` long, from each utterance's alignment at the frame centres."""
    return torch.cat([frame_labels(u.segments, c.shape[0], hop / sample_rate) for u, c in zip(utterances, codes)])
