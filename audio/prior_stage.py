"""Second stage of the audio experiment: a speaker-conditional causal dilated-convolution prior (a WaveNet over
code indices, :mod:`priors.wavenet`) fitted to the frozen VQ-VAE's codes, and speech generated from it.

Axis legend: U utterances, N code frames, B batch, S speakers, K codebook size, T waveform samples.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from audio.clips import generation_threads
from audio.config import AudioConfig
from audio.datasets import AudioSplits, SequenceCrops
from audio.frames import cached_utterance_codes
from audio.frozen import load_frozen_vqvae, vqvae_checkpoint
from audio.media import log_audio_comparison
from core.checkpoint import check_fits, load_frozen, stage_checkpoint
from core.config import stage_train_config, to_dict
from core.tracking import stage_tracker
from core.trainer import Trainer, num_threads, seed_everything
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


class AudioPriorTrainer(Trainer):
    """Stage "prior": fits the code prior; logs ``train/loss`` (nats per code), ``train/nll_bits_per_code`` and
    ``val/nll_bits_per_code`` (the name the image and video priors use for the same quantity)."""

    def __init__(self, cfg: AudioConfig, train_ds: CodeWindows, val_ds: CodeWindows, codebook_size: int,
                 speakers: list[str], vqvae_hash: str):
        p = cfg.prior
        seed_everything(p.train.seed)
        model = build_code_prior(codebook_size, len(speakers), p.residual_channels, p.skip_channels,
                                 p.dilation_layers, p.dilation_cycles, p.kernel_size)
        self.val_dataset, self.speakers, self.vqvae_hash = val_ds, speakers, vqvae_hash
        self.codebook_size = codebook_size
        train_cfg = stage_train_config(p.train, cfg.train)
        super().__init__(model, train_ds, train_cfg, cfg.tracking, to_dict(cfg), name="prior")

    def extra_params(self) -> dict[str, Any]:
        return {"derived.vqvae_hash": self.vqvae_hash, "derived.prior_receptive_field": self.model.receptive_field}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"codebook_size": self.codebook_size, "speakers": self.speakers, "vqvae_hash": self.vqvae_hash}

    def compute_loss(self, batch) -> dict[str, torch.Tensor]:
        codes, speaker = batch
        nll = self.model.loss(codes, global_ids=speaker)  # nats per code
        return {"loss": nll, "nll_bits_per_code": nll.detach() / math.log(2)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        total, count = 0.0, 0
        for codes, speaker in DataLoader(self.val_dataset, batch_size=64):
            codes, speaker = codes.to(self.device), speaker.to(self.device)
            total += float(self.model.loss(codes, global_ids=speaker)) * codes.numel()
            count += codes.numel()
        nats = total / max(count, 1)
        return {"nll_bits_per_code": nats / math.log(2), "nll_nats_per_code": nats}


def run_prior(cfg: AudioConfig, splits: AudioSplits, device: torch.device, resume: bool) -> dict[str, float]:
    """Extract the codes of every utterance with the frozen VQ-VAE, then fit the prior."""
    vqvae, _, speakers, digest = load_frozen_vqvae(vqvae_checkpoint(cfg), device)
    cache = Path(cfg.train.output_dir) / "codes"
    train_codes = cached_utterance_codes(cache / "train.pt", vqvae, digest, splits.train, device)
    val_codes = cached_utterance_codes(cache / "val.pt", vqvae, digest, splits.val, device)
    train_spk = [speakers.index(u.speaker) for u in splits.train]
    val_spk = [speakers.index(u.speaker) for u in splits.val]
    p = cfg.prior
    train_ds = CodeWindows(train_codes, train_spk, p.crop_codes, 1_000_000, cfg.data.seed)
    val_ds = CodeWindows(val_codes, val_spk, p.crop_codes, VAL_WINDOWS, VAL_SEED)
    trainer = AudioPriorTrainer(cfg, train_ds, val_ds, vqvae.quantizer.codebook_size, speakers, digest)
    metrics = trainer.fit(resume=resume and trainer.checkpoint_path.exists())
    print("\nheld-out metrics (prior): " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return {f"prior/{k}": v for k, v in metrics.items()}


def load_prior(path: Path, codebook_size: int, speakers: list[str], vqvae_hash: str, cfg: AudioConfig, device):
    """The trained prior, refused (ValueError) when fitted to another codebook, speaker set or VQ-VAE."""
    p = cfg.prior

    def build(payload):
        check_fits(payload, {"codebook_size": codebook_size, "speakers": speakers, "vqvae_hash": vqvae_hash})
        return build_code_prior(codebook_size, len(speakers), p.residual_channels, p.skip_channels,
                                p.dilation_layers, p.dilation_cycles, p.kernel_size)

    return load_frozen(path, build, device)[0]


@torch.no_grad()
def run_sample(cfg: AudioConfig, splits: AudioSplits, device: torch.device) -> dict[str, float]:
    """Stage "sample": codes sampled from the prior for every speaker, spoken by the WaveNet decoder in the same
    voice, logged as wav files and spectrograms."""
    vqvae, _, speakers, digest = load_frozen_vqvae(vqvae_checkpoint(cfg), device)
    prior_path = stage_checkpoint(cfg.train.output_dir, "prior")
    prior = load_prior(prior_path, vqvae.quantizer.codebook_size, speakers, digest, cfg, device)
    p = cfg.prior
    num_codes = max(1, int(p.sample_seconds * cfg.data.sample_rate) // vqvae.hop)
    ids = torch.arange(len(speakers), device=device).repeat_interleave(p.samples_per_speaker)  # [B]
    gen = torch.Generator(device="cpu").manual_seed(cfg.train.seed)
    with num_threads(1):
        codes = prior.generate(num_codes, global_ids=ids, temperature=p.temperature, generator=gen)  # [B, N]
    with generation_threads(vqvae):
        waves = vqvae.decode(codes, ids, temperature=cfg.eval.temperature, generator=gen).cpu()  # [B, T]
    tracker = stage_tracker(cfg.tracking, "sample", cfg, {"derived.vqvae_hash": digest,
                                                          "derived.prior_checkpoint": str(prior_path)})
    names = [f"{speakers[int(s)]}_{i % p.samples_per_speaker}" for i, s in enumerate(ids)]
    log_audio_comparison(tracker, dict(zip(names, waves)), cfg.data.sample_rate, "samples",
                         "speech generated from prior samples of the codes")
    distinct = float(codes.unique().numel())
    tracker.log_metrics({"sample/distinct_codes": distinct}, 0)
    tracker.end()
    print(f"\nsampled {len(names)} utterances of {num_codes} codes ({distinct:.0f} distinct codes); "
          f"MLflow UI: {tracker.ui_command()}")
    return {"sample/utterances": float(len(names)), "sample/distinct_codes": distinct}
