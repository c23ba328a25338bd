"""The audio experiment (paper sec. 4.3): train the speech VQ-VAE, probe its codes for phonemes, convert speakers,
fit a prior over the codes and speak from it, logging everything to MLflow.

``python experiments/run.py audio [--speaker-convert] [--probe] [--stage all|vqvae|probe|convert|prior|sample]``
runs the stages of :data:`SPEC` (through :func:`core.stages.run_domain`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from audio.clips import decode_as, pick_utterances
from audio.config import AudioConfig
from audio.datasets import AudioCrops, AudioSplits, build_audio_datasets
from audio.frozen import load_frozen_vqvae, vqvae_checkpoint
from audio.media import log_audio_comparison
from audio.model import AudioVQVAE
from audio.probe_stage import run_probe
from core.checkpoint import stage_checkpoint, state_hash
from core.config import to_dict
from core.media import usage_histogram
from core.metrics import CodebookUsage
from core.stages import ALL, DomainSpec, StageContext
from core.trainer import (
    Trainer,
    fit_stage,
    print_metrics,
    seed_everything,
    vqvae_loss_terms,
)

VAL_SEED = 12345  # the held-out crops are the same for every run and seed
VAL_CROPS = 32
EVAL_BATCH = 8
TRAIN_ITEMS = 1_000_000  # crops are a pure function of their index; the sampler walks seeded permutations


def crop_samples(cfg: AudioConfig) -> int:
    """Training crop length in samples: ``crop_seconds`` rounded down to a multiple of the encoder's hop."""
    hop = 2 ** cfg.model.num_downsamples
    n = int(cfg.data.crop_seconds * cfg.data.sample_rate) // hop * hop
    if n < hop:
        raise ValueError(f"data.crop_seconds={cfg.data.crop_seconds} is shorter than one code ({hop} samples)")
    return n


class AudioVQVAETrainer(Trainer):
    """Stage "vqvae": trains :class:`AudioVQVAE` on waveform crops; evaluates the decoder's reconstruction loss
    (WaveNet: teacher-forced NLL in nats and bits per sample; mel: L1 of the log-mel frames) and codebook health on
    fixed held-out crops; ends with the phoneme probe and logs reconstructions (wav + spectrograms) of held-out
    utterances."""

    def __init__(self, cfg: AudioConfig, splits: AudioSplits):
        self.audio_cfg = cfg
        self.splits = splits
        n = crop_samples(cfg)
        train_ds = AudioCrops(splits.train, splits.speakers, n, TRAIN_ITEMS, cfg.data.seed)
        self.val_dataset = AudioCrops(splits.val, splits.speakers, n, VAL_CROPS, VAL_SEED)
        seed_everything(cfg.train.seed)
        model = AudioVQVAE(cfg.model, cfg.quantizer, num_speakers=len(splits.speakers),
                           sample_rate=cfg.data.sample_rate)
        super().__init__(model, train_ds, cfg.train, cfg.tracking, to_dict(cfg), name="vqvae")

    def extra_params(self) -> dict[str, Any]:
        seconds = lambda utts: sum(u.waveform.numel() for u in utts) / self.audio_cfg.data.sample_rate  # noqa: E731
        return {"derived.speakers": ",".join(self.splits.speakers), "derived.hop": self.model.hop,
                "derived.crop_samples": crop_samples(self.audio_cfg),
                "derived.receptive_field": self.model.receptive_field,
                "derived.train_utterances": len(self.splits.train), "derived.val_utterances": len(self.splits.val),
                "derived.train_seconds": round(seconds(self.splits.train), 1),
                "derived.val_seconds": round(seconds(self.splits.val), 1)}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"speakers": list(self.splits.speakers)}

    def compute_loss(self, batch) -> dict[str, torch.Tensor]:
        x, speaker = batch
        out = self.model(x, speaker)
        terms = vqvae_loss_terms(out)
        if out.adversary_loss is not None:
            terms.update(adversary_loss=out.adversary_loss.detach(), adversary_accuracy=out.adversary_accuracy)
        if out.envelope_loss is not None:
            terms["envelope_loss"] = out.envelope_loss.detach()
        return terms

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        usage = CodebookUsage(self.model.quantizer.codebook_size, self.model.quantizer.num_codebooks)
        total, count = 0.0, 0
        for x, speaker in DataLoader(self.val_dataset, batch_size=EVAL_BATCH):
            out = self.model(x.to(self.device), speaker.to(self.device))
            total += float(out.recon_loss) * x.shape[0]
            count += x.shape[0]
            usage.update(out.quantizer.indices)
        self.last_usage = usage
        loss = total / max(count, 1)
        if not self.model.autoregressive:
            return {"recon_loss": loss, **usage.summary()}
        return {"recon_loss": loss, "bits_per_sample": loss / math.log(2), **usage.summary()}

    @torch.no_grad()
    def final_metrics(self) -> dict[str, float]:
        result = run_probe(self.audio_cfg, self.model, self.splits, self.device, self.output_dir.parent / "probe",
                           vqvae_key=state_hash(self.model))
        return result

    @torch.no_grad()
    def log_media(self, step: int) -> None:
        """Held-out utterances (whole, or cut to ``eval.convert_max_seconds`` when positive) next to their
        reconstructions decoded from the codes (WaveNet: sample by sample; mel: Griffin-Lim), as wav files and
        spectrograms; the usage histogram."""
        import matplotlib.pyplot as plt

        self.model.eval()
        ecfg, sr = self.audio_cfg.eval, self.audio_cfg.data.sample_rate
        utts = pick_utterances(self.splits.val, ecfg.reconstructions)
        limit = int(ecfg.convert_max_seconds * sr) or None
        gen = torch.Generator(device="cpu").manual_seed(self.cfg.seed)
        waves = {}
        for u in utts:
            wave = u.waveform[:limit]
            speaker = torch.tensor([self.splits.speakers.index(u.speaker)], device=self.device)
            waves[f"{u.speaker}_{u.sentence_id}_original"] = wave
            waves[f"{u.speaker}_{u.sentence_id}_reconstruction"] = decode_as(self.model, wave, speaker,
                                                                             ecfg.temperature, gen)[0]
        if waves:
            log_audio_comparison(self.tracker, waves, sr, f"reconstructions/step_{step:07d}",
                                 "held-out originals and their reconstructions")
        fig = usage_histogram(self.last_usage)
        self.tracker.log_figure(fig, f"codebook_usage/step_{step:07d}.png")
        plt.close(fig)
        self.model.train()


def run_vqvae(cfg: AudioConfig, splits: AudioSplits, resume: bool) -> dict[str, float]:
    """Stage "vqvae": train and evaluate the speech VQ-VAE (ending with the phoneme probe)."""
    return fit_stage(AudioVQVAETrainer(cfg, splits), resume, "held-out metrics (vqvae)")


def plan_stages(requested: list[str], speaker_convert: bool, probe: bool, trained: bool) -> list[str]:
    """The stages to run, in order.

    ``all`` = vqvae (which ends with the probe) → prior → sample, with convert after vqvae when ``speaker_convert``.
    ``--probe`` / ``--speaker-convert`` on their own (``all``) with an already trained VQ-VAE run just that
    evaluation; without one they train it first. Named stages run as given, with convert after vqvae when
    ``speaker_convert`` and convert is not named.
    """
    if requested != [ALL]:
        names = list(requested)
        if speaker_convert and "vqvae" in names and "convert" not in names:
            names.insert(names.index("vqvae") + 1, "convert")
        return names
    if probe and not speaker_convert:
        return ["probe"] if trained else ["vqvae"]
    if speaker_convert and trained:
        return ["convert"] + (["probe"] if probe else [])
    return ["vqvae"] + (["convert"] if speaker_convert else []) + ["prior", "sample"]


def _splits(ctx: StageContext) -> AudioSplits:
    def build() -> AudioSplits:
        splits = build_audio_datasets(ctx.cfg.data)
        print(f"audio data: {len(splits.train)} training and {len(splits.val)} held-out utterances, "
              f"{len(splits.speakers)} speakers ({', '.join(splits.speakers)})")
        return splits

    return ctx.shared("splits", build)


def _plan(requested: list[str], ctx: StageContext) -> list[str]:
    trained = vqvae_checkpoint(ctx.cfg).is_file() and not ctx.resume
    stages = plan_stages(requested, ctx.options.get("speaker_convert", False), ctx.options.get("probe", False),
                         trained)
    print(f"audio stages: {' → '.join(stages)}")
    return stages


def _needs_vqvae(cfg: AudioConfig) -> dict[str, Path]:
    return {"vqvae": vqvae_checkpoint(cfg)}


def _probe(ctx: StageContext) -> dict[str, float]:
    model, _, _, digest = load_frozen_vqvae(vqvae_checkpoint(ctx.cfg), ctx.device)
    result = run_probe(ctx.cfg, model, _splits(ctx), ctx.device, Path(ctx.cfg.train.output_dir) / "probe",
                       vqvae_key=digest, log=True)
    print_metrics("phoneme probe", result)
    return result


def _stages() -> dict:
    from audio.convert_stage import run_conversion
    from audio.prior_stage import run_prior, run_sample

    return {"vqvae": lambda ctx: run_vqvae(ctx.cfg, _splits(ctx), ctx.resume),
            "probe": _probe,
            "convert": lambda ctx: run_conversion(ctx.cfg, _splits(ctx), ctx.device),
            "prior": lambda ctx: run_prior(ctx.cfg, _splits(ctx), ctx.device, ctx.resume),
            "sample": lambda ctx: run_sample(ctx.cfg, _splits(ctx), ctx.device)}


SPEC = DomainSpec(name="audio", config_class=AudioConfig, stages=_stages(), plan=_plan,
                  main_metric=("vqvae", "val/recon_loss"),
                  requires={"probe": _needs_vqvae, "convert": _needs_vqvae, "prior": _needs_vqvae,
                            "sample": lambda cfg: {**_needs_vqvae(cfg),
                                                   "prior": stage_checkpoint(cfg.train.output_dir, "prior")}})
STAGES = SPEC.known()
