"""Choosing held-out utterances for generation (reconstruction, conversion) and its thread count.

Axis legend: T waveform samples.
"""

from __future__ import annotations

import contextlib

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
