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
from audio.frozen import load_frozen_vqvae
from audio.media import log_audio_comparison
from audio.model import AudioVQVAE
from audio.prior_stage import load_prior, prior_trainer, speak_samples
from audio.probe_stage import run_probe
from core.checkpoint import FrozenVQVAE, state_hash
from core.config import to_dict
from core.export import ModelExample, reconstruction_example
from core.media import usage_histogram
from core.metrics import CodebookUsage
from core.pipeline import PipelineAdapter, needs_vqvae, pipeline_requires, pipeline_stages, vqvae_checkpoint
from core.stages import ALL, CliOption, DomainSpec, StageContext
from core.tracking import Tracker
from core.trainer import Trainer, print_metrics, vqvae_loss_terms

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
        self.cfg = cfg
        self.splits = splits
        n = crop_samples(cfg)
        train_ds = AudioCrops(splits.train, splits.speakers, n, TRAIN_ITEMS, cfg.data.seed)
        self.val_dataset = AudioCrops(splits.val, splits.speakers, n, VAL_CROPS, VAL_SEED)
        super().__init__(lambda: AudioVQVAE(cfg.model, cfg.quantizer, num_speakers=len(splits.speakers),
                                            sample_rate=cfg.data.sample_rate),
                         train_ds, cfg.train, cfg.tracking, to_dict(cfg), name="vqvae")

    def extra_params(self) -> dict[str, Any]:
        seconds = lambda utts: sum(u.waveform.numel() for u in utts) / self.cfg.data.sample_rate  # noqa: E731
        return {"derived.speakers": ",".join(self.splits.speakers), "derived.hop": self.model.hop,
                "derived.crop_samples": crop_samples(self.cfg),
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
        if out.envelope_delta_loss is not None:
            terms["envelope_delta_loss"] = out.envelope_delta_loss.detach()
        return terms

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        usage = CodebookUsage(self.model.quantizer.codebook_size, self.model.quantizer.groups)
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

    def logged_model(self) -> ModelExample | None:
        """The MLflow model (mel decoder): waveform ``[B, L]`` (L a multiple of the hop) and speaker ids ``[B]`` →
        the evaluation-mode log-mel frames ``[B, M, N]`` in nats; the WaveNet decoder's sampled output is not one
        graph, so it logs none (:mod:`core.export`)."""
        if self.model.autoregressive:
            return None
        x, speaker = next(iter(DataLoader(self.val_dataset, batch_size=2)))
        return reconstruction_example(self.model, {"waveform": x.to(self.device), "speaker": speaker.to(self.device)},
                                      dynamic=((0, 1), (0,)), output_dynamic=(0, 2),
                                      output="log-mel frames [B, M, N], nats (render with audio.mel.griffin_lim)")

    @torch.no_grad()
    def final_metrics(self) -> dict[str, float]:
        result = run_probe(self.cfg, self.model, self.splits, self.device, self.output_dir.parent / "probe",
                           vqvae_hash=state_hash(self.model))
        return result

    @torch.no_grad()
    def log_media(self, step: int) -> None:
        """Held-out utterances (whole, or cut to ``eval.convert_max_seconds`` when positive) next to their
        reconstructions decoded from the codes (WaveNet: sample by sample; mel: Griffin-Lim), as wav files and
        spectrograms; the usage histogram."""
        import matplotlib.pyplot as plt

        self.model.eval()
        ecfg, sr = self.cfg.eval, self.cfg.data.sample_rate
        utts = pick_utterances(self.splits.val, ecfg.reconstructions)
        limit = int(ecfg.convert_max_seconds * sr) or None
        gen = torch.Generator(device="cpu").manual_seed(self.train_cfg.seed)
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


class AudioAdapter(PipelineAdapter):
    """The audio domain in the core pipeline: the speech VQ-VAE (ending with the phoneme probe), a
    speaker-conditional WaveNet over its codes, and speech spoken from sampled codes in every voice."""

    def vqvae_trainer(self, ctx: StageContext) -> AudioVQVAETrainer:
        return AudioVQVAETrainer(ctx.cfg, _splits(ctx))

    def load_vqvae(self, ctx: StageContext, path: Path) -> FrozenVQVAE:
        return load_frozen_vqvae(path, ctx.device, ctx.cfg.model.postfilter)

    def prior_trainer(self, ctx: StageContext, frozen: FrozenVQVAE):
        return prior_trainer(ctx.cfg, _splits(ctx), frozen, ctx.device)

    def load_prior(self, ctx: StageContext, frozen: FrozenVQVAE, path: Path):
        return load_prior(path, frozen, ctx.cfg, ctx.device)

    def sample(self, ctx: StageContext, frozen: FrozenVQVAE, prior: torch.nn.Module, payload: dict,
               tracker: Tracker) -> dict[str, float]:
        return speak_samples(ctx.cfg, frozen, prior, tracker, ctx.device)


def _probe(ctx: StageContext) -> dict[str, float]:
    frozen = load_frozen_vqvae(vqvae_checkpoint(ctx.cfg), ctx.device)
    result = run_probe(ctx.cfg, frozen.model, _splits(ctx), ctx.device, Path(ctx.cfg.train.output_dir) / "probe",
                       vqvae_hash=frozen.vqvae_hash, log=True)
    print_metrics("phoneme probe", result)
    return result


def _convert(ctx: StageContext) -> dict[str, float]:
    from audio.convert_stage import run_conversion  # the outside instruments load only when asked for

    return run_conversion(ctx.cfg, _splits(ctx), ctx.device)


_PIPELINE = pipeline_stages(AudioAdapter())
SPEC = DomainSpec(
    name="audio", config_class=AudioConfig, plan=_plan, main_metric=("vqvae", "val/recon_loss"),
    stages={"vqvae": _PIPELINE["vqvae"], "probe": _probe, "convert": _convert, "prior": _PIPELINE["prior"],
            "sample": _PIPELINE["sample"]},
    requires={**pipeline_requires(), "probe": needs_vqvae, "convert": needs_vqvae},
    options=(CliOption("speaker_convert", "convert held-out utterances into every other speaker and score them"),
             CliOption("probe", "the phoneme probe of the trained codes")))
STAGES = SPEC.known()
