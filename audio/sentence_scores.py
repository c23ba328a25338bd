"""Scoring converted speech on whole held-out sentences with the outside instruments.

The instruments (:mod:`audio.recogniser`: PocketSphinx ASR; :mod:`audio.speaker_encoder`: Resemblyzer's GE2E speaker
embedding) are pretrained by others and validated here on inputs whose answer is known before they score the model:
the real held-out recordings and their Griffin-Lim resynthesis through the model's own log-mel settings (the mel
decoder's vocoder ceiling).

Metrics (all on sentences never heard in training; word error rates pooled over sentences, errors / reference words):
- ``convert/wer_real``, ``convert/wer_griffin_lim``: the recogniser on the real recordings and their resynthesis;
  ``convert/wer_reconstruction``: A → A decoded from A's codes; ``convert/wer_unquantized`` (mel decoder only):
  A → A decoded from the encoder's unquantized ``z_e`` (the words the codebook costs are the gap to the
  reconstructions); ``convert/wer``: every conversion A → B, B ≠ A;
  ``convert/wer_words``: reference words of the source sentences.
- ``convert/ge2e_*``: closed-set identification by cosine to each voice's centroid of ``enrolment`` training
  utterances: ``real_accuracy`` and ``griffin_lim_accuracy`` (validation), ``reconstruction_accuracy``,
  ``target_accuracy`` (conversions heard as their target voice; ``target_accuracy_<voice>`` per target),
  ``source_accuracy`` (heard as their source voice), ``target_person_accuracy`` and ``source_person_accuracy``
  (the same by recorded person: two voices built from one person's recordings count as one),
  ``eer`` (target-vs-source trials, :func:`audio.speaker_encoder.equal_error_rate`) and ``chance`` (1 / voices).

Axis legend: S speakers (voices), T waveform samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from audio.recogniser import SpeechRecogniser
from audio.speaker_encoder import SpeakerEncoder, centroids, equal_error_rate, identify


@dataclass
class SentenceSet:
    """Held-out sentences and every rendering of them to score.

    ``texts[b]`` is sentence b's text, ``sources[b]`` its speaker index; ``real[b]`` and ``griffin_lim[b]`` are
    waveforms ``[T_b]``; ``decoded[b]`` is ``[S, T_b]``, row s decoded from the sentence's codes as speaker s (row
    ``sources[b]`` is the reconstruction); ``unquantized[b]`` (``[T_b]``, or empty when not computed) is sentence b
    decoded in its own voice from the unquantized ``z_e``.
    """

    texts: list[str]
    sources: list[int]
    real: list[torch.Tensor]
    griffin_lim: list[torch.Tensor]
    decoded: list[torch.Tensor]
    unquantized: list[torch.Tensor] = field(default_factory=list)
    transcripts: dict[str, list[str]] = field(default_factory=dict)  # filled by score_sentences

    def conversions(self) -> tuple[list[torch.Tensor], list[int], list[int], list[str]]:
        """``(waveforms, target ids, source ids, texts)`` of every conversion A → B with B ≠ A."""
        waves, targets, sources, texts = [], [], [], []
        for b, rows in enumerate(self.decoded):
            for s in range(rows.shape[0]):
                if s != self.sources[b]:
                    waves.append(rows[s])
                    targets.append(s)
                    sources.append(self.sources[b])
                    texts.append(self.texts[b])
        return waves, targets, sources, texts

    def reconstructions(self) -> list[torch.Tensor]:
        """A → A, one waveform per sentence."""
        return [rows[self.sources[b]] for b, rows in enumerate(self.decoded)]


def word_error_scores(sentences: SentenceSet, sample_rate: int) -> dict[str, float]:
    """The ``convert/wer*`` metrics; the recogniser's transcripts go into ``sentences.transcripts``."""
    asr = SpeechRecogniser(sample_rate)
    conv, _, _, conv_texts = sentences.conversions()
    rows = {"wer_real": (sentences.real, sentences.texts),
            "wer_griffin_lim": (sentences.griffin_lim, sentences.texts),
            "wer_reconstruction": (sentences.reconstructions(), sentences.texts),
            "wer": (conv, conv_texts)}
    if sentences.unquantized:
        rows["wer_unquantized"] = (sentences.unquantized, sentences.texts)
    metrics: dict[str, float] = {}
    for name, (waves, texts) in rows.items():
        errors, heard = asr.word_errors(waves, texts)
        metrics[f"convert/{name}"] = errors.rate
        sentences.transcripts[name] = heard
    metrics["convert/wer_words"] = float(sum(len(t.split()) for t in sentences.texts))
    return metrics


def speaker_encoder_scores(sentences: SentenceSet, enrolment: list[tuple[torch.Tensor, int]], speakers: list[str],
                           persons: list[str], sample_rate: int) -> dict[str, float]:
    """The ``convert/ge2e_*`` metrics (see the module docstring).

    Args:
        enrolment: ``(waveform [T], speaker id)`` training utterances that define each voice's centroid.
        speakers: voice names, by speaker id.
        persons: the recorded person behind each voice, by speaker id.
    """
    encoder = SpeakerEncoder(sample_rate)
    centre = centroids(encoder.embed([w for w, _ in enrolment]), [s for _, s in enrolment], len(speakers))
    person = np.asarray([sorted(set(persons)).index(p) for p in persons])
    src = np.asarray(sentences.sources)

    def heard(waves: list) -> tuple[np.ndarray, np.ndarray]:
        return identify(encoder.embed(waves), centre)

    metrics = {"convert/ge2e_chance": 1.0 / len(speakers)}
    for name, waves in (("real", sentences.real), ("griffin_lim", sentences.griffin_lim),
                        ("reconstruction", sentences.reconstructions())):
        metrics[f"convert/ge2e_{name}_accuracy"] = float((heard(waves)[0] == src).mean())
    waves, targets, sources, _ = sentences.conversions()
    if not waves:
        return metrics
    said, cos = heard(waves)
    targets, sources = np.asarray(targets), np.asarray(sources)
    rows = np.arange(len(waves))
    metrics.update({
        "convert/ge2e_target_accuracy": float((said == targets).mean()),
        "convert/ge2e_source_accuracy": float((said == sources).mean()),
        "convert/ge2e_target_person_accuracy": float((person[said] == person[targets]).mean()),
        "convert/ge2e_source_person_accuracy": float((person[said] == person[sources]).mean()),
        "convert/ge2e_eer": equal_error_rate(cos[rows, targets], cos[rows, sources]),
        **{f"convert/ge2e_target_accuracy_{v}": float((said == targets)[targets == t].mean())
           for t, v in enumerate(speakers) if (targets == t).any()}})
    return metrics


def transcript_table(sentences: SentenceSet, speakers: list[str]) -> list[dict[str, str]]:
    """One row per scored waveform: sentence, source, rendering (real, griffin_lim, reconstruction, unquantized or
    the target voice), reference text and what the recogniser heard (after :func:`word_error_scores`)."""
    t = sentences.transcripts
    rows = []
    for b, text in enumerate(sentences.texts):
        src = speakers[sentences.sources[b]]
        for kind in ("real", "griffin_lim", "reconstruction", "unquantized"):
            key = "wer_" + kind
            if key in t:
                rows.append({"sentence": str(b), "source": src, "rendering": kind, "text": text, "heard": t[key][b]})
    if "wer" in t:
        _, targets, sources, texts = sentences.conversions()
        per_sentence = len(targets) // max(len(sentences.texts), 1)  # conversions come grouped by sentence
        for i, (tgt, s, text) in enumerate(zip(targets, sources, texts)):
            rows.append({"sentence": str(i // per_sentence), "source": speakers[s], "rendering": speakers[tgt],
                         "text": text, "heard": t["wer"][i]})
    return rows
