"""Speaker conversion (paper sec. 4.3): encode a held-out utterance of speaker A, decode its codes with the decoder
(WaveNet or mel) conditioned on speaker B, and score the result objectively.

Axis legend: M conversions (source clip × target speaker), T waveform samples, N code frames.

Scores (all on sentences never heard in training):
- ``convert/target_speaker_accuracy`` — a speaker scorer (:class:`audio.speaker_scorer.SpeakerScorer`) trained on
  real training audio (and its noisy, μ-law and Griffin-Lim renderings), applied to converted audio, scored against
  the *target* speaker (``convert/target_speaker_accuracy_<name>`` per target voice); ``convert/chance_accuracy`` is
  1 / speakers; ``convert/source_speaker_accuracy`` is how often the scorer still hears the source speaker;
  ``convert/reconstruction_speaker_accuracy`` is the same on A → A reconstructions (the ceiling conversion can
  reach).
- The scorer's validation, before it scores the model, on held-out real clips: ``convert/scorer_clean_accuracy``
  (also logged as ``convert/real_speaker_accuracy``), ``convert/scorer_noise_10db_accuracy``,
  ``convert/scorer_mu_law_accuracy``, ``convert/scorer_griffin_lim_accuracy`` and ``convert/scorer_gain_agreement``
  (decisions unchanged under gains of 0.25 and 4).
- ``convert/mcd`` — mel-cepstral distortion (dB, standard definition, :mod:`audio.scores`) of A → B against B's own
  rendering of the same sentence (the embedded corpus is parallel); ``convert/mcd_unconverted`` is A's real audio
  against the same reference (what conversion should beat) and ``convert/mcd_reconstruction`` is A → A against A's
  real audio.
- ``convert/phone_accuracy`` — the code → phone mapping of the probe stage applied to the codes of the converted
  audio, scored against A's alignment (content kept); ``convert/phone_accuracy_source`` is the same on A's real audio.
The clips are cut to ``eval.convert_max_seconds``; the reference rendering of B is cut at the same fraction of its
length, an approximation that DTW absorbs when the voices' speaking rates are similar.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from audio.clips import clip_batch, generation_threads
from audio.config import AudioConfig
from audio.datasets import AudioSplits
from audio.frozen import load_frozen_vqvae, vqvae_checkpoint
from audio.media import log_audio_comparison
from audio.mel import MelSettings
from audio.phones import frame_labels
from audio.probe_stage import load_mapping, run_probe
from audio.scores import mel_cepstral_distortion
from audio.speaker_scorer import SpeakerScorer
from core.tracking import stage_tracker

SCORER_UTTERANCES = 60  # training utterances per speaker for the speaker scorer (each also in 3 renderings)
VALIDATION_UTTERANCES = 20  # held-out utterances per speaker to validate the scorer on


def conversion_sources(splits: AudioSplits, per_speaker: int) -> list:
    """``per_speaker`` held-out utterances of every speaker, preferring sentences that every speaker read (so each
    conversion has a parallel reference), in sentence order."""
    readers: dict[str, set[str]] = {}
    for u in splits.val:
        readers.setdefault(u.sentence_id, set()).add(u.speaker)
    full = len(splits.speakers)
    chosen = []
    for name in splits.speakers:
        own = sorted((u for u in splits.val if u.speaker == name),
                     key=lambda u: (len(readers[u.sentence_id]) < full, u.sentence_id))
        chosen.extend(own[:per_speaker])
    return chosen


def speaker_clips(utterances: list, speakers: list[str], per_speaker: int, max_seconds: float, sample_rate: int,
                  seed: int) -> tuple[list[torch.Tensor], list[int]]:
    """Clips (first ``max_seconds``) of up to ``per_speaker`` randomly chosen utterances of every speaker, and their
    speaker indices."""
    rng = random.Random(seed)
    waves, labels = [], []
    limit = int(max_seconds * sample_rate)
    for index, name in enumerate(speakers):
        own = [u for u in utterances if u.speaker == name]
        for u in rng.sample(own, min(per_speaker, len(own))):
            waves.append(u.waveform[:limit])
            labels.append(index)
    return waves, labels


def validated_scorer(splits: AudioSplits, max_seconds: float, sample_rate: int, mel: MelSettings, seed: int
                     ) -> tuple[SpeakerScorer, dict[str, float]]:
    """The speaker scorer fitted on real training clips (with augmentations) and its ``convert/scorer_*`` validation
    on held-out real clips."""
    waves, labels = speaker_clips(splits.train, splits.speakers, SCORER_UTTERANCES, max_seconds, sample_rate, seed)
    scorer = SpeakerScorer(sample_rate, mel, seed).fit(waves, labels)
    waves, labels = speaker_clips(splits.val, splits.speakers, VALIDATION_UTTERANCES, max_seconds, sample_rate,
                                  seed + 1)
    checks = scorer.validate(waves, labels)
    metrics = {f"convert/scorer_{k}_accuracy" if k != "gain_agreement" else "convert/scorer_gain_agreement": v
               for k, v in checks.items()}
    metrics["convert/real_speaker_accuracy"] = checks["clean"]
    metrics["convert/scorer_validation_clips"] = float(len(waves))
    return scorer, metrics


@torch.no_grad()
def convert_all(model, clips: torch.Tensor, num_speakers: int, temperature: float, seed: int, device
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every clip ``[B, T]`` decoded as every speaker.

    Returns:
        the clips' codes ``[B, N]`` and the waveforms ``[B, S, T]`` (entry ``[b, s]`` is clip b spoken by s).
    """
    source_codes = model.encode(clips.to(device))  # [B, N]
    b = clips.shape[0]
    codes = source_codes.repeat_interleave(num_speakers, dim=0)  # [B*S, N]
    targets = torch.arange(num_speakers, device=device).repeat(b)  # [B*S]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with generation_threads(model):
        out = model.decode(codes, targets, temperature=temperature, generator=gen)  # [B*S, T]
    return source_codes.cpu(), out.view(b, num_speakers, -1).cpu()


def run_conversion(cfg: AudioConfig, splits: AudioSplits, device: torch.device) -> dict[str, float]:
    """Convert, score and log (see the module docstring); returns the ``convert/*`` metrics."""
    model, _, speakers, digest = load_frozen_vqvae(vqvae_checkpoint(cfg), device)
    if speakers != list(splits.speakers):
        raise ValueError(f"the VQ-VAE was trained on speakers {speakers}, the data has {splits.speakers}")
    ecfg, sr, hop = cfg.eval, cfg.data.sample_rate, model.hop
    sources = conversion_sources(splits, ecfg.convert_utterances)
    clips = clip_batch([u.waveform for u in sources], ecfg.convert_max_seconds, sr, hop)  # [B, T]
    lengths = [min(u.waveform.shape[0], clips.shape[1]) for u in sources]
    print(f"converting {len(sources)} held-out clips into {len(speakers)} speakers "
          f"({len(sources) * len(speakers)} utterances of ≤ {clips.shape[1] / sr:.2f} s, "
          f"{'generated sample by sample' if model.autoregressive else 'log-mel frames rendered by Griffin-Lim'})")
    src_codes, converted = convert_all(model, clips, len(speakers), ecfg.temperature, cfg.train.seed, device)

    scorer, scorer_metrics = validated_scorer(splits, ecfg.convert_max_seconds, sr, model.mel_settings,
                                              cfg.data.seed)
    print("speaker scorer on held-out real clips: " + ", ".join(f"{k.split('/')[1]} {v:.3f}"
                                                                for k, v in scorer_metrics.items()))
    src_ids = [speakers.index(u.speaker) for u in sources]
    by_key = {(u.speaker, u.sentence_id): u for u in splits.val}
    conv_waves, conv_targets, conv_sources, rec_waves, mcd, mcd_src, mcd_rec = [], [], [], [], [], [], []
    pairs: dict[str, tuple[dict[str, torch.Tensor], list[str]]] = {}  # first clip of each source into every voice
    for b, u in enumerate(sources):
        n = lengths[b]
        first = b == 0 or sources[b - 1].speaker != u.speaker  # sources come grouped by speaker
        for t, target in enumerate(speakers):
            wave = converted[b, t, :n]
            if t == src_ids[b]:
                rec_waves.append(wave)
                mcd_rec.append(mel_cepstral_distortion(wave, clips[b, :n], sr))
                continue
            conv_waves.append(wave)
            conv_targets.append(t)
            conv_sources.append(src_ids[b])
            ref = by_key.get((target, u.sentence_id))
            if ref is not None:
                cut = max(1, round(ref.waveform.shape[0] * n / u.waveform.shape[0]))
                mcd.append(mel_cepstral_distortion(wave, ref.waveform[:cut], sr))
                mcd_src.append(mel_cepstral_distortion(clips[b, :n], ref.waveform[:cut], sr))
                if first:
                    pairs[f"{u.speaker}_to_{target}_{u.sentence_id}"] = (
                        {"source": clips[b, :n], "conversion": wave, "target": ref.waveform[:cut]},
                        [f"source ({u.speaker})", f"conversion ({u.speaker} → {target})",
                         f"target's own rendering ({target})"])
    said = scorer.predict(conv_waves)  # [M] the speaker the scorer hears in each conversion
    targets = np.asarray(conv_targets)
    metrics = {"convert/target_speaker_accuracy": float((said == targets).mean()),
               "convert/reconstruction_speaker_accuracy": scorer.accuracy(rec_waves, src_ids),
               "convert/source_speaker_accuracy": float((said == np.asarray(conv_sources)).mean()),
               **{f"convert/target_speaker_accuracy_{name}": float((said == targets)[targets == t].mean())
                  for t, name in enumerate(speakers) if (targets == t).any()},
               "convert/chance_accuracy": 1.0 / len(speakers),
               "convert/conversions": float(len(conv_waves)), **scorer_metrics}
    if mcd:
        metrics.update({"convert/mcd": float(np.mean(mcd)), "convert/mcd_unconverted": float(np.mean(mcd_src)),
                        "convert/mcd_reconstruction": float(np.mean(mcd_rec))})
    metrics.update(_phone_scores(cfg, model, splits, device, digest, sources, src_codes, converted, lengths,
                                 src_ids))
    _log(cfg, digest, metrics, pairs, speakers)
    print("speaker conversion: " + ", ".join(f"{k.split('/')[1]} {v:.4g}" for k, v in metrics.items()))
    return metrics


@torch.no_grad()
def _phone_scores(cfg, model, splits, device, digest, sources, src_codes, converted, lengths, src_ids
                  ) -> dict[str, float]:
    """Code → phone accuracy of the converted audio (and of the real source clips) against the source alignment."""
    if not all(u.segments for u in sources):
        return {}
    probe_dir = Path(cfg.train.output_dir) / "probe"
    mapping = load_mapping(probe_dir, digest)
    if mapping is None:
        run_probe(cfg, model, splits, device, probe_dir, vqvae_key=digest)
        mapping = load_mapping(probe_dir, digest)
    hop, sr = model.hop, cfg.data.sample_rate
    b, s, t = converted.shape
    conv_codes = model.encode(converted.reshape(b * s, t).to(device)).view(b, s, -1).cpu()  # [B, S, N]
    hits = total = hits_src = total_src = 0
    for i, u in enumerate(sources):
        n = lengths[i] // hop
        labels = frame_labels(u.segments, n, hop / sr)  # [n]
        hits_src += int((mapping[src_codes[i, :n]] == labels).sum())
        total_src += n
        for j in range(s):
            if j != src_ids[i]:
                hits += int((mapping[conv_codes[i, j, :n]] == labels).sum())
                total += n
    return {"convert/phone_accuracy": hits / max(total, 1), "convert/phone_accuracy_source": hits_src / max(total_src, 1)}


def _log(cfg, digest, metrics, pairs: dict[str, tuple[dict[str, torch.Tensor], list[str]]], speakers) -> None:
    """An MLflow run "convert": params, the scores, and per conversion pair the source, the conversion and the
    target voice's own rendering of the sentence as wav files with their log-mel spectrograms side by side."""
    tracker = stage_tracker(cfg.tracking, "convert", cfg, {"derived.vqvae_hash": digest,
                                                           "derived.speakers": ",".join(speakers)})
    tracker.log_metrics(metrics, 0)
    for name, (waves, labels) in pairs.items():
        log_audio_comparison(tracker, waves, cfg.data.sample_rate, f"conversions/{name}", name.replace("_", " "),
                             columns=True, labels=labels)
    print(f"MLflow UI: {tracker.ui_command()}")
    tracker.end()
