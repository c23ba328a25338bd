"""Second stage of the audio experiment: a speaker-conditional causal dilated-convolution prior (a WaveNet over
code indices, :mod:`priors.wavenet`) fitted to the frozen VQ-VAE's codes, and speech generated from it.

Axis legend: U utterances, N code frames, B batch, S speakers, K codebook size, T waveform samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from audio.clips import generation_threads
from audio.config import AudioConfig
from audio.datasets import AudioSplits, SequenceCrops
from audio.frames import cached_utterance_codes
from audio.media import log_audio_comparison
from core.checkpoint import FrozenVQVAE
from core.pipeline import LN2, PriorTrainer, code_cache
from core.pipeline import load_prior as load_pipeline_prior
from core.tracking import Tracker
from core.trainer import num_threads
from priors.wavenet import build_code_prior

VAL_WINDOWS = 256
VAL_SEED = 12345


class CodeWindows(SequenceCrops):
    """Windows of ``length`` consecutive codes of whole utterances (:class:`~audio.datasets.SequenceCrops`): item i →
    ``(codes [length] long, speaker long)``, a pure function of ``(seed, i)``. Utterances shorter than a window are
    left out (padding would invent codes).

    Raises:
        ValueError: no utterance has ``length`` codes.
    """

    def __init__(self, codes: list[torch.Tensor], speakers: list[int], length: int, num_items: int, seed: int):
        keep = [i for i, c in enumerate(codes) if c.shape[0] >= length]
        if not keep:
            raise ValueError(f"no utterance is {length} codes long; lower prior.crop_codes")
        super().__init__([codes[i] for i in keep], [speakers[i] for i in keep], length, num_items, seed)


class AudioPriorTrainer(PriorTrainer):
    """Stage "prior": fits the code prior; logs ``train/loss`` (nats per code), ``train/nll_bits_per_code`` and
    ``val/nll_bits_per_code`` (with ``val/nll_nats_per_code``)."""

    def __init__(self, cfg: AudioConfig, frozen: FrozenVQVAE, train_ds: CodeWindows, val_ds: CodeWindows):
        self.val_dataset, self.speakers = val_ds, list(frozen.extras["speakers"])
        k = frozen.model.quantizer.codebook_size
        super().__init__(cfg, frozen, lambda: build_prior(cfg, k, len(self.speakers)), train_ds,
                         fits={"codebook_size": k, "speakers": self.speakers})

    def extra_params(self) -> dict[str, Any]:
        return {**super().extra_params(), "derived.prior_receptive_field": self.model.receptive_field}

    def batch_nll(self, batch) -> torch.Tensor:
        codes, speaker = batch
        return self.model.loss(codes, global_ids=speaker)  # nats per code

    def logits_call(self, batch):
        codes, speaker = batch  # logits [B, K, T] of codes [B, T] and speaker ids [B]
        return (lambda m, c, s: m(c, global_ids=s)), {"codes": codes, "speaker": speaker}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        total, count = 0.0, 0
        for codes, speaker in DataLoader(self.val_dataset, batch_size=64):
            codes, speaker = codes.to(self.device), speaker.to(self.device)
            total += float(self.model.loss(codes, global_ids=speaker)) * codes.numel()
            count += codes.numel()
        nats = total / max(count, 1)
        return {"nll_bits_per_code": nats / LN2, "nll_nats_per_code": nats}


def build_prior(cfg: AudioConfig, codebook_size: int, num_speakers: int) -> torch.nn.Module:
    """The speaker-conditional WaveNet over codes of ``cfg.prior``'s sizes."""
    p = cfg.prior
    return build_code_prior(codebook_size, num_speakers, p.residual_channels, p.skip_channels, p.dilation_layers,
                            p.dilation_cycles, p.kernel_size)


def prior_trainer(cfg: AudioConfig, splits: AudioSplits, frozen: FrozenVQVAE,
                  device: torch.device) -> AudioPriorTrainer:
    """The prior stage's trainer: the codes of every utterance (cached, :func:`core.pipeline.code_cache`) cut into
    windows of ``prior.crop_codes``."""
    speakers = list(frozen.extras["speakers"])
    train_codes = cached_utterance_codes(code_cache(cfg, "train"), frozen.model, frozen.vqvae_hash, splits.train,
                                         device)
    val_codes = cached_utterance_codes(code_cache(cfg, "val"), frozen.model, frozen.vqvae_hash, splits.val, device)
    train_spk = [speakers.index(u.speaker) for u in splits.train]
    val_spk = [speakers.index(u.speaker) for u in splits.val]
    p = cfg.prior
    train_ds = CodeWindows(train_codes, train_spk, p.crop_codes, 1_000_000, cfg.data.seed)
    val_ds = CodeWindows(val_codes, val_spk, p.crop_codes, VAL_WINDOWS, VAL_SEED)
    return AudioPriorTrainer(cfg, frozen, train_ds, val_ds)


def load_prior(path: Path, frozen: FrozenVQVAE, cfg: AudioConfig, device: torch.device):
    """The trained prior, refused (ValueError) when fitted to another codebook, speaker set or VQ-VAE."""
    k, speakers = frozen.model.quantizer.codebook_size, list(frozen.extras["speakers"])
    return load_pipeline_prior(path, frozen, {"codebook_size": k, "speakers": speakers},
                               lambda _: build_prior(cfg, k, len(speakers)), device)


@torch.no_grad()
def speak_samples(cfg: AudioConfig, frozen: FrozenVQVAE, prior: torch.nn.Module, tracker: Tracker,
                  device: torch.device) -> dict[str, float]:
    """Stage "sample": codes sampled from the prior for every speaker, spoken by the decoder in the same voice,
    logged as wav files and spectrograms; returns ``utterances`` and ``distinct_codes``."""
    vqvae, speakers = frozen.model, list(frozen.extras["speakers"])
    p = cfg.prior
    num_codes = max(1, int(p.sample_seconds * cfg.data.sample_rate) // vqvae.hop)
    ids = torch.arange(len(speakers), device=device).repeat_interleave(p.samples_per_speaker)  # [B]
    gen = torch.Generator(device="cpu").manual_seed(cfg.train.seed)
    with num_threads(1):
        codes = prior.generate(num_codes, global_ids=ids, temperature=p.temperature, generator=gen)  # [B, N]
    with generation_threads(vqvae):
        waves = vqvae.decode(codes, ids, temperature=cfg.eval.temperature, generator=gen).cpu()  # [B, T]
    names = [f"{speakers[int(s)]}_{i % p.samples_per_speaker}" for i, s in enumerate(ids)]
    log_audio_comparison(tracker, dict(zip(names, waves)), cfg.data.sample_rate, "samples",
                         "speech generated from prior samples of the codes")
    return {"utterances": float(len(names)), "distinct_codes": float(codes.unique().numel())}
