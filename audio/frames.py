"""Whole utterances through the frozen speech VQ-VAE: codes, encoder outputs and phone labels per code frame.

Axis legend: T waveform samples, N code frames (one per ``hop`` samples), D code dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audio.datasets import Utterance
from audio.phones import PHONES, frame_labels


def pad_to_hop(wave: torch.Tensor, hop: int) -> torch.Tensor:
    """Zero-pad a waveform ``[T]`` at the end to a multiple of ``hop`` samples (at least one hop)."""
    length = max(hop, -(-wave.shape[-1] // hop) * hop)
    return torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))


NUM_PHONES = len(PHONES)


@dataclass
class UtteranceFrames:
    """Code frames of a list of utterances, concatenated (``offsets[i]:offsets[i+1]`` is utterance i)."""

    codes: torch.Tensor  # [N] long
    labels: torch.Tensor | None  # [N] long phone indices (None when the utterances have no alignments)
    z_e: np.ndarray | None  # [N, D] float32 encoder outputs (None unless asked for)
    offsets: list[int]


@torch.no_grad()
def encode_utterances(model, utterances: list[Utterance], sample_rate: int, device: torch.device,
                      with_z: bool = False) -> UtteranceFrames:
    """Codes (and optionally ``z_e``) of every utterance, one utterance at a time (lengths differ).

    Phone labels come from each utterance's alignment at the centre of each code frame (``hop / sample_rate``
    seconds long); utterances without an alignment are skipped for labels, and ``labels`` is None when none has one.
    """
    hop = model.hop
    codes, labels, zs, offsets = [], [], [], [0]
    have_labels = all(u.segments is not None for u in utterances)
    for utt in utterances:
        x = pad_to_hop(utt.waveform, hop)[None].to(device)  # [1, T]
        if with_z:
            z = model.z_e(x)[0]  # [N, D]
            zs.append(z.float().cpu().numpy())
            idx = model.quantizer(z[None]).indices[0]
        else:
            idx = model.encode(x)[0]
        idx = idx.reshape(idx.shape[0], -1)[:, 0].cpu()  # [N] (first codebook when several)
        codes.append(idx)
        if have_labels:
            labels.append(frame_labels(utt.segments, idx.shape[0], hop / sample_rate))
        offsets.append(offsets[-1] + idx.shape[0])
    return UtteranceFrames(codes=torch.cat(codes) if codes else torch.zeros(0, dtype=torch.long),
                           labels=torch.cat(labels) if have_labels and labels else None,
                           z_e=np.concatenate(zs) if zs else None, offsets=offsets)




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
    if path.is_file():
        cached = torch.load(path, map_location="cpu")
        if cached.get("key") == key:
            return cached["codes"]
    codes = utterance_codes(model, utterances, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"codes": codes, "key": key}, tmp)
    tmp.replace(path)
    return codes


def phone_labels(utterances: list[Utterance], codes: list[torch.Tensor], hop: int, sample_rate: int) -> torch.Tensor:
    """Phone label of every code frame ``[ΣN_u]`` long, from each utterance's alignment at the frame centres."""
    return torch.cat([frame_labels(u.segments, c.shape[0], hop / sample_rate) for u, c in zip(utterances, codes)])
