"""Choosing held-out utterances for generation (reconstruction, conversion), and decoding one of them.

Axis legend: S speakers, T waveform samples.
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


@torch.no_grad()
def decode_as(model, wave: torch.Tensor, speakers: torch.Tensor, temperature: float = 1.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One utterance ``[T]`` encoded alone (zero-padded to whole codes; no other item's padding inside an
    instance-normalised encoding) and decoded as each of ``speakers [S]``: ``[S, T]`` on the CPU, cut to ``T``."""
    device = speakers.device
    x = pad_to_hop(wave, model.hop)[None].to(device)  # [1, T']
    codes = model.encode(x)  # [1, N]
    with generation_threads(model):
        out = model.decode(codes.expand(len(speakers), *codes.shape[1:]), speakers, temperature=temperature,
                           generator=generator)  # [S, T']
    return out[:, :wave.shape[0]].cpu()

