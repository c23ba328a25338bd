"""Choosing and cutting held-out utterances for generation (reconstruction, conversion).

Axis legend: B batch, T waveform samples.
"""

from __future__ import annotations

import contextlib

import torch

from audio.frames import pad_to_hop
from core.trainer import num_threads


def generation_threads(model):
    """Context for decoding with ``model``: one thread for sample-by-sample WaveNet generation (tiny ops per step),
    all threads for the mel decoder (convolutions and Griffin-Lim)."""
    return num_threads(1) if model.autoregressive else contextlib.nullcontext()


def pick_utterances(utterances, count: int) -> list:
    """``count`` utterances of distinct speakers where possible (first by sentence id), in a fixed order."""
    by_speaker: dict[str, list] = {}
    for u in sorted(utterances, key=lambda u: (u.sentence_id, u.speaker)):
        by_speaker.setdefault(u.speaker, []).append(u)
    picked, round_ = [], 0
    while len(picked) < count and any(round_ < len(v) for v in by_speaker.values()):
        for name in sorted(by_speaker):
            if round_ < len(by_speaker[name]) and len(picked) < count:
                picked.append(by_speaker[name][round_])
        round_ += 1
    return picked


def clip_batch(waves: list[torch.Tensor], max_seconds: float, sample_rate: int, hop: int) -> torch.Tensor:
    """Waveforms ``[T_i]`` cut to ``max_seconds`` (a multiple of ``hop``) and zero-padded to one ``[B, T]``."""
    limit = max(hop, int(max_seconds * sample_rate) // hop * hop)
    clips = [pad_to_hop(w[:limit], hop) for w in waves]
    length = max(c.shape[0] for c in clips)
    return torch.stack([torch.nn.functional.pad(c, (0, length - c.shape[0])) for c in clips])  # [B, T]
