"""Speaker conversion (paper sec. 4.3): encode a held-out sentence of speaker A, decode its codes with the decoder
(WaveNet or mel) conditioned on speaker B, and score the result with instruments that do not belong to the model.

Axis legend: S speakers, T waveform samples.

``eval.convert_utterances`` held-out sentences per voice (preferring sentences every voice read) are converted
whole (``eval.convert_max_seconds`` = 0; a positive value cuts them, and the word error rates, which need the whole
sentence, are then skipped) into every voice. Scores, all on sentences never heard in training:
- the outside instruments, the headline (:mod:`audio.sentence_scores`): PocketSphinx word error rates of the
  conversions (``convert/wer``), the reconstructions, the real recordings and their Griffin-Lim resynthesis; the
  pretrained GE2E speaker embedding's identification of target and source voice and the target-vs-source EER;
- the suite's own speaker scorer (:class:`audio.speaker_scorer.SpeakerScorer`; fitted on real training clips and
  their noisy, μ-law and Griffin-Lim renderings, validated on held-out real clips as ``convert/scorer_*``):
  ``convert/target_speaker_accuracy`` (``_<voice>`` per target), ``convert/source_speaker_accuracy``,
  ``convert/reconstruction_speaker_accuracy`` and ``convert/chance_accuracy``;
- ``convert/mcd`` — mel-cepstral distortion (dB, :mod:`audio.scores`) of A → B against B's own reading of the same
  sentence (matched by normalised text), ``convert/mcd_unconverted`` (A's real audio against the same reference) and
  ``convert/mcd_reconstruction`` (A → A against A's real audio).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from tqdm import tqdm

from audio.clips import decode_as
from audio.config import AudioConfig
from audio.datasets import AudioSplits
from audio.frames import pad_to_hop
from audio.frozen import load_frozen_vqvae
from audio.mel import MelSettings, griffin_lim, log_mel
from audio.media import log_audio_comparison
from audio.recogniser import normalise_text
from audio.scores import mel_cepstral_distortion
from audio.sentence_scores import SentenceSet, speaker_encoder_scores, transcript_table, word_error_scores
from audio.speaker_scorer import SpeakerScorer
from core.pipeline import vqvae_checkpoint
from core.tracking import stage_tracker

SCORER_UTTERANCES = 60  # training utterances per speaker for the speaker scorer (each also in 3 renderings)
VALIDATION_UTTERANCES = 20  # held-out utterances per speaker to validate the scorer on
SCORER_CLIP_SECONDS = 1.5  # the scorer's training and validation clips
ENROLMENT_UTTERANCES = 10  # training utterances per voice that define its speaker-embedding centroid


def sentence_key(u) -> str:
    """What makes two readings the same sentence: the normalised text (the sentence id when there is no text).
    VCTK's utterance numbers name different sentences for different speakers outside the shared passages."""
    return normalise_text(u.text) or u.sentence_id


def person_of(speaker: str) -> str:
    """The recorded person behind a voice of the embedded corpus (kal16 → kal, slt_hts → slt); else the speaker."""
    from audio.corpus import VOICES

    return VOICES[speaker].person if speaker in VOICES else speaker


def conversion_sources(splits: AudioSplits, per_speaker: int) -> list:
    """``per_speaker`` held-out utterances of every speaker, preferring sentences that every speaker read (so each
    conversion has a parallel reference), in sentence order."""
    readers: dict[str, set[str]] = {}
    for u in splits.val:
        readers.setdefault(sentence_key(u), set()).add(u.speaker)
    full = len(splits.speakers)
    chosen = []
    for name in splits.speakers:
        own = sorted((u for u in splits.val if u.speaker == name),
                     key=lambda u: (len(readers[sentence_key(u)]) < full, u.sentence_id))
        chosen.extend(own[:per_speaker])
    return chosen


def speaker_clips(utterances: list, speakers: list[str], per_speaker: int, max_seconds: float, sample_rate: int,
                  seed: int) -> tuple[list[torch.Tensor], list[int]]:
    """Clips (the first ``max_seconds``; whole when 0) of up to ``per_speaker`` randomly chosen utterances of every
    speaker, and their speaker indices."""
    rng = random.Random(seed)
    waves, labels = [], []
    limit = int(max_seconds * sample_rate) or None
    for index, name in enumerate(speakers):
        own = [u for u in utterances if u.speaker == name]
        for u in rng.sample(own, min(per_speaker, len(own))):
            waves.append(u.waveform[:limit])
            labels.append(index)
    return waves, labels


def validated_scorer(splits: AudioSplits, sample_rate: int, mel: MelSettings, seed: int
                     ) -> tuple[SpeakerScorer, dict[str, float]]:
    """The speaker scorer fitted on real training clips (with augmentations) and its ``convert/scorer_*`` validation
    on held-out real clips."""
    waves, labels = speaker_clips(splits.train, splits.speakers, SCORER_UTTERANCES, SCORER_CLIP_SECONDS,
                                  sample_rate, seed)
    scorer = SpeakerScorer(sample_rate, mel, seed).fit(waves, labels)
    waves, labels = speaker_clips(splits.val, splits.speakers, VALIDATION_UTTERANCES, SCORER_CLIP_SECONDS,
                                  sample_rate, seed + 1)
    checks = scorer.validate(waves, labels)
    metrics = {f"convert/scorer_{k}_accuracy" if k != "gain_agreement" else "convert/scorer_gain_agreement": v
               for k, v in checks.items()}
    metrics["convert/real_speaker_accuracy"] = checks["clean"]
    metrics["convert/scorer_validation_clips"] = float(len(waves))
    return scorer, metrics


@torch.no_grad()
def convert_sentences(model, sources: list, speakers: list[str], max_seconds: float, temperature: float, seed: int,
                      device) -> SentenceSet:
    """Every source sentence (cut to ``max_seconds`` when positive) encoded alone and decoded as every speaker,
    with its Griffin-Lim resynthesis through the model's log-mel settings and (mel decoder) its own voice decoded
    from the unquantized ``z_e``."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    limit = int(max_seconds * model.mel_settings.sample_rate) or None
    real, resynth, decoded, unquantized = [], [], [], []
    every = torch.arange(len(speakers), device=device)
    for u in tqdm(sources, desc="converting", unit="sentence", disable=None, leave=False):
        wave = u.waveform[:limit]
        decoded.append(decode_as(model, wave, every, temperature, gen))
        real.append(wave)
        x = pad_to_hop(wave, model.hop)[None]  # [1, T'] on the CPU
        resynth.append(griffin_lim(log_mel(x, model.mel_settings), model.mel_settings)[0, :wave.shape[0]])
        if not model.autoregressive:
            own = torch.tensor([speakers.index(u.speaker)], device=device)
            unquantized.append(model.render(model.decode_unquantized(x.to(device), own))[0, :wave.shape[0]].cpu())
    return SentenceSet([u.text for u in sources], [speakers.index(u.speaker) for u in sources], real, resynth,
                       decoded, unquantized)


def run_conversion(cfg: AudioConfig, splits: AudioSplits, device: torch.device) -> dict[str, float]:
    """Convert, score and log (see the module docstring); returns the ``convert/*`` metrics."""
    frozen = load_frozen_vqvae(vqvae_checkpoint(cfg), device, cfg.model.postfilter)
    model, speakers, vqvae_hash = frozen.model, list(frozen.extras["speakers"]), frozen.vqvae_hash
    if speakers != list(splits.speakers):
        raise ValueError(f"the VQ-VAE was trained on speakers {speakers}, the data has {splits.speakers}")
    ecfg, sr = cfg.eval, cfg.data.sample_rate
    sources = conversion_sources(splits, ecfg.convert_utterances)
    print(f"converting {len(sources)} held-out sentences into {len(speakers)} speakers "
          f"({'whole sentences' if not ecfg.convert_max_seconds else f'cut to {ecfg.convert_max_seconds} s'}, "
          f"{'generated sample by sample' if model.autoregressive else 'log-mel frames rendered by Griffin-Lim'})")
    sentences = convert_sentences(model, sources, speakers, ecfg.convert_max_seconds, ecfg.temperature,
                                  cfg.train.seed, device)
    metrics: dict[str, float] = {}
    if not ecfg.convert_max_seconds and all(normalise_text(t) for t in sentences.texts):
        metrics.update(word_error_scores(sentences, sr))
    else:
        print("word error rates skipped: they need whole sentences with their text (eval.convert_max_seconds=0)")
    enrolment = [(w, s) for w, s in zip(*speaker_clips(splits.train, speakers, ENROLMENT_UTTERANCES, 0, sr,
                                                        cfg.data.seed + 2))]
    metrics.update(speaker_encoder_scores(sentences, enrolment, speakers, [person_of(s) for s in speakers], sr))
    metrics.update(_own_scores(cfg, splits, model, sentences, speakers))
    pairs = _mcd(metrics, sentences, sources, splits, speakers, sr)
    _log(cfg, vqvae_hash, metrics, pairs, speakers, transcript_table(sentences, speakers))
    print("speaker conversion: " + ", ".join(f"{k.split('/')[1]} {v:.4g}" for k, v in metrics.items()))
    return metrics


def _own_scores(cfg: AudioConfig, splits: AudioSplits, model, sentences: SentenceSet, speakers: list[str]
                ) -> dict[str, float]:
    """The suite's own speaker scorer: its validation and its decisions on the conversions and reconstructions."""
    scorer, metrics = validated_scorer(splits, cfg.data.sample_rate, model.mel_settings, cfg.data.seed)
    print("speaker scorer on held-out real clips: " + ", ".join(f"{k.split('/')[1]} {v:.3f}"
                                                                for k, v in metrics.items()))
    waves, targets, sources, _ = sentences.conversions()
    targets, sources = np.asarray(targets), np.asarray(sources)
    said = scorer.predict(waves) if waves else np.zeros(0, int)  # [M] the speaker heard in each conversion
    metrics.update({"convert/target_speaker_accuracy": float((said == targets).mean()) if waves else 0.0,
                    "convert/source_speaker_accuracy": float((said == sources).mean()) if waves else 0.0,
                    "convert/reconstruction_speaker_accuracy": scorer.accuracy(sentences.reconstructions(),
                                                                               sentences.sources),
                    **{f"convert/target_speaker_accuracy_{name}": float((said == targets)[targets == t].mean())
                       for t, name in enumerate(speakers) if (targets == t).any()},
                    "convert/chance_accuracy": 1.0 / len(speakers), "convert/conversions": float(len(waves))})
    return metrics


def _mcd(metrics: dict[str, float], sentences: SentenceSet, sources: list, splits: AudioSplits,
         speakers: list[str], sr: int) -> dict[str, tuple[dict[str, torch.Tensor], list[str]]]:
    """Adds the MCD metrics; returns the first sentence of each source voice into every voice with a reference, as
    media pairs (source, conversion, the target's own reading)."""
    by_key = {(u.speaker, sentence_key(u)): u for u in splits.val}
    mcd, mcd_src, mcd_rec = [], [], []
    pairs: dict[str, tuple[dict[str, torch.Tensor], list[str]]] = {}
    for b, u in enumerate(sources):
        first = b == 0 or sources[b - 1].speaker != u.speaker  # sources come grouped by speaker
        real = sentences.real[b]
        for t, target in enumerate(speakers):
            wave = sentences.decoded[b][t]
            if t == sentences.sources[b]:
                mcd_rec.append(mel_cepstral_distortion(wave, real, sr))
                continue
            ref = by_key.get((target, sentence_key(u)))
            if ref is None:
                continue
            mcd.append(mel_cepstral_distortion(wave, ref.waveform, sr))
            mcd_src.append(mel_cepstral_distortion(real, ref.waveform, sr))
            if first:
                pairs[f"{u.speaker}_to_{target}_{u.sentence_id}"] = (
                    {"source": real, "conversion": wave, "target": ref.waveform},
                    [f"source ({u.speaker})", f"conversion ({u.speaker} → {target})",
                     f"target's own reading ({target})"])
    if mcd:
        metrics.update({"convert/mcd": float(np.mean(mcd)), "convert/mcd_unconverted": float(np.mean(mcd_src))})
    if mcd_rec:
        metrics["convert/mcd_reconstruction"] = float(np.mean(mcd_rec))
    return pairs


def _log(cfg, vqvae_hash, metrics, pairs: dict[str, tuple[dict[str, torch.Tensor], list[str]]], speakers,
         transcripts: list[dict[str, str]]) -> None:
    """An MLflow run "convert": params, the scores, the recogniser's transcripts as a table, and per conversion pair
    the source, the conversion and the target voice's own reading as wav files with their log-mel spectrograms."""
    tracker = stage_tracker(cfg.tracking, "convert", cfg, {"derived.vqvae_hash": vqvae_hash,
                                                           "derived.speakers": ",".join(speakers)})
    tracker.log_metrics(metrics, 0)
    if transcripts:
        tracker.log_table({k: [r[k] for r in transcripts] for k in transcripts[0]}, "transcripts.json")
    for name, (waves, labels) in pairs.items():
        log_audio_comparison(tracker, waves, cfg.data.sample_rate, f"conversions/{name}", name.replace("_", " "),
                             columns=True, labels=labels)
    print(f"MLflow UI: {tracker.ui_command()}")
    tracker.end()
