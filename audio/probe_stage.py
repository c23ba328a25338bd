"""The phoneme-probe stage: codes of whole training and held-out utterances, the paper's code → phone mapping and
the linear probe on ``z_e`` (see :mod:`audio.probe`), with the mapping saved for the conversion stage.

Axis legend: N code frames, K codebook size, P phone labels.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from audio.config import AudioConfig
from audio.datasets import AudioSplits
from audio.frames import cached_utterance_codes, phone_labels, utterance_z_e
from audio.phones import PHONES
from audio.probe import probe_codes
from core.files import read_keyed, save_keyed
from core.pipeline import code_cache
from core.tracking import stage_tracker

LINEAR_PROBE_UTTERANCES = 300  # per split: z_e of this many utterances feed the logistic regression


def _subset(utterances: list, count: int, seed: int) -> list:
    if count <= 0 or count >= len(utterances):
        return list(utterances)
    return random.Random(seed).sample(list(utterances), count)


def aligned(utterances: list) -> list:
    """The utterances that carry a phone alignment."""
    return [u for u in utterances if u.segments]


@torch.no_grad()
def run_probe(cfg: AudioConfig, model, splits: AudioSplits, device: torch.device, out_dir: Path,
              vqvae_hash: str, log: bool = False) -> dict[str, float]:
    """Fit and score the probes; returns metrics (``phone_accuracy``, ``phone_majority_accuracy``,
    ``phone_accuracy_ratio``, ``phone_linear_probe_accuracy``) or ``{}`` when the data has no alignments.

    Codes of whole utterances are cached in :func:`core.pipeline.code_cache` (shared with the prior stage).
    Saves ``{"mapping": [K] long, "key": vqvae_hash}`` to ``out_dir/mapping.pt``. With ``log`` the metrics go to an
    MLflow run of their own (stage "probe").
    """
    train_utts = _subset(aligned(splits.train), cfg.eval.probe_utterances, cfg.data.seed)
    val_utts = aligned(splits.val)
    if not train_utts or not val_utts:
        print("phoneme probe skipped: the utterances have no phone alignments")
        return {}
    model.eval()
    sr, hop = cfg.data.sample_rate, model.hop
    train_codes = cached_utterance_codes(code_cache(cfg, "train"), model, vqvae_hash, splits.train, device)
    val_codes = cached_utterance_codes(code_cache(cfg, "val"), model, vqvae_hash, splits.val, device)
    position = {id(u): i for i, u in enumerate(splits.train)}
    train_codes = [train_codes[position[id(u)]] for u in train_utts]
    position = {id(u): i for i, u in enumerate(splits.val)}
    val_codes = [val_codes[position[id(u)]] for u in val_utts]
    z_train = utterance_z_e(model, _subset(train_utts, LINEAR_PROBE_UTTERANCES, cfg.data.seed + 1), sr, device)
    z_val = utterance_z_e(model, _subset(val_utts, LINEAR_PROBE_UTTERANCES, cfg.data.seed + 2), sr, device)
    k = model.quantizer.codebook_size
    result, mapping = probe_codes(torch.cat(train_codes), phone_labels(train_utts, train_codes, hop, sr),
                                  torch.cat(val_codes), phone_labels(val_utts, val_codes, hop, sr), k, len(PHONES),
                                  linear=(*z_train, *z_val), seed=cfg.data.seed)
    save_keyed(out_dir / "mapping.pt", vqvae_hash, mapping)
    metrics = {**result.metrics(), "phone_frames_train": float(result.frames_train),
               "phone_frames_val": float(result.frames_val), "phones_seen": float(result.num_phones_seen)}
    print(f"phoneme probe: code → phone {result.code_accuracy:.1%} vs majority phone {result.majority_accuracy:.1%} "
          f"({result.ratio:.2f}×), linear probe on z_e {result.linear_accuracy:.1%}; "
          f"{result.frames_train} training / {result.frames_val} held-out frames")
    if log:
        tracker = stage_tracker(cfg.tracking, "probe", cfg, {"derived.vqvae_hash": vqvae_hash,
                                                             "derived.probe_utterances": len(train_utts)})
        tracker.log_metrics({f"val/{k}": v for k, v in metrics.items()}, 0)
        tracker.end()
    return metrics


def load_mapping(out_dir: Path, vqvae_hash: str) -> torch.Tensor | None:
    """The saved code → phone mapping ``[K]`` when it belongs to ``vqvae_hash``, else None."""
    return read_keyed(out_dir / "mapping.pt", vqvae_hash)
