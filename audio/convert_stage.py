"""Speaker conversion (paper sec. 4.3): encode a held-out utterance of speaker A, decode its codes with the WaveNet
conditioned on speaker B, and score the result objectively.

Axis legend: M conversions (source clip × target speaker), T waveform samples, N code frames.

Scores (all on sentences never heard in training):
- ``convert/target_speaker_accuracy`` — a speaker classifier (:class:`audio.scores.SpeakerClassifier`) trained on
  real, unconverted training audio, applied to converted audio, scored against the *target* speaker;
  ``convert/real_speaker_accuracy`` is the same classifier on the real held-out clips (its ceiling) and
  ``convert/reconstruction_speaker_accuracy`` on A → A reconstructions.
- ``convert/mcd`` — mel-cepstral distortion (dB) of A → B against B's own rendering of the same sentence (the
  embedded corpus is parallel); ``convert/mcd_unconverted`` is A's real audio against the same reference (what
  conversion should beat) and ``convert/mcd_reconstruction`` is A → A against A's real audio.
- ``convert/phone_accuracy`` — the code → phone mapping of the probe stage applied to the codes of the converted
  audio, scored against A's alignment (content kept); ``convert/phone_accuracy_source`` is the same on A's real audio.
The clips are cut to ``eval.convert_max_seconds``; the reference rendering of B is cut at the same fraction of its
length, an approximation that DTW absorbs when the voices' speaking rates are similar.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import torch

from audio.clips import clip_batch
from audio.config import AudioConfig
from audio.datasets import AudioSplits
from audio.frozen import load_frozen_vqvae, vqvae_checkpoint
from audio.media import log_audio_comparison
from audio.phones import frame_labels
from audio.probe_stage import load_mapping, run_probe
from audio.scores import SpeakerClassifier, mel_cepstral_distortion
from core.tracking import Tracker
from core.trainer import num_threads

CLASSIFIER_UTTERANCES = 120  # training utterances per speaker for the speaker classifier


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


def train_speaker_classifier(splits: AudioSplits, max_seconds: float, sample_rate: int, seed: int
                             ) -> SpeakerClassifier:
    """The classifier of real speech: clips (first ``max_seconds``) of up to ``CLASSIFIER_UTTERANCES`` training
    utterances per speaker."""
    rng = random.Random(seed)
    waves, labels = [], []
    limit = int(max_seconds * sample_rate)
    for index, name in enumerate(splits.speakers):
        own = [u for u in splits.train if u.speaker == name]
        for u in rng.sample(own, min(CLASSIFIER_UTTERANCES, len(own))):
            waves.append(u.waveform[:limit])
            labels.append(index)
    return SpeakerClassifier(sample_rate, seed).fit(waves, labels)


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
    with num_threads(1):
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
          f"({len(sources) * len(speakers)} utterances of ≤ {clips.shape[1] / sr:.2f} s, generated sample by sample)")
    src_codes, converted = convert_all(model, clips, len(speakers), ecfg.temperature, cfg.train.seed, device)

    classifier = train_speaker_classifier(splits, ecfg.convert_max_seconds, sr, cfg.data.seed)
    src_ids = [speakers.index(u.speaker) for u in sources]
    by_key = {(u.speaker, u.sentence_id): u for u in splits.val}
    conv_waves, conv_targets, rec_waves, mcd, mcd_src, mcd_rec = [], [], [], [], [], []
    for b, u in enumerate(sources):
        n = lengths[b]
        for t, target in enumerate(speakers):
            wave = converted[b, t, :n]
            if t == src_ids[b]:
                rec_waves.append(wave)
                mcd_rec.append(mel_cepstral_distortion(wave, clips[b, :n], sr))
                continue
            conv_waves.append(wave)
            conv_targets.append(t)
            ref = by_key.get((target, u.sentence_id))
            if ref is not None:
                cut = max(1, round(ref.waveform.shape[0] * n / u.waveform.shape[0]))
                mcd.append(mel_cepstral_distortion(wave, ref.waveform[:cut], sr))
                mcd_src.append(mel_cepstral_distortion(clips[b, :n], ref.waveform[:cut], sr))
    metrics = {"convert/target_speaker_accuracy": classifier.accuracy(conv_waves, conv_targets),
               "convert/reconstruction_speaker_accuracy": classifier.accuracy(rec_waves, src_ids),
               "convert/real_speaker_accuracy": classifier.accuracy([clips[b, :n] for b, n in enumerate(lengths)],
                                                                    src_ids),
               "convert/conversions": float(len(conv_waves))}
    if mcd:
        metrics.update({"convert/mcd": float(np.mean(mcd)), "convert/mcd_unconverted": float(np.mean(mcd_src)),
                        "convert/mcd_reconstruction": float(np.mean(mcd_rec))})
    metrics.update(_phone_scores(cfg, model, splits, device, digest, sources, src_codes, converted, lengths,
                                 src_ids))
    _log(cfg, digest, metrics, sources, clips, converted, lengths, speakers)
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


def _log(cfg, digest, metrics, sources, clips, converted, lengths, speakers) -> None:
    """An MLflow run "convert": params, the scores, and per source speaker its first clip in every voice."""
    tracker = Tracker(dataclasses.replace(cfg.tracking, run_name=(cfg.tracking.run_name or "audio") + "-convert"))
    tracker.log_params({"stage": "convert", "derived.vqvae": digest, "derived.speakers": ",".join(speakers),
                        "eval.convert_utterances": cfg.eval.convert_utterances,
                        "eval.convert_max_seconds": cfg.eval.convert_max_seconds,
                        "eval.temperature": cfg.eval.temperature})
    tracker.log_metrics(metrics, 0)
    seen = set()
    for b, u in enumerate(sources):
        if u.speaker in seen:
            continue
        seen.add(u.speaker)
        n = lengths[b]
        waves = {f"{u.speaker}_{u.sentence_id}_original": clips[b, :n]}
        waves.update({f"{u.speaker}_to_{t}": converted[b, j, :n] for j, t in enumerate(speakers)})
        log_audio_comparison(tracker, waves, cfg.data.sample_rate, f"conversions/{u.speaker}",
                             f"{u.speaker}, sentence {u.sentence_id}, in every voice")
    print(f"MLflow UI: {tracker.ui_command()}")
    tracker.end()
