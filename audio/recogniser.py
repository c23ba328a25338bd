"""An outside speech recogniser and the word error rate: does converted speech keep its words?

The instrument is PocketSphinx's US-English recogniser (CMU Sphinx; the acoustic model, pronouncing dictionary and
language model ship in the ``pocketsphinx`` wheel, so it runs offline). No one in this project trained or tuned it,
so it cannot have learned our model's artefacts. The Voice Conversion Challenges score conversions the same way: ASR
word error rate against the sentence's text, next to the same recogniser on the real recordings (and here on their
Griffin-Lim resynthesis, the mel decoder's vocoder ceiling).

:func:`word_error_rate` is pooled over sentences (total errors / total reference words, jiwer's definition:
substitutions + deletions + insertions); it can exceed 1 when the recogniser inserts words.

Axis legend: T waveform samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

RECOGNISER_RATE = 16000  # Hz, the acoustic model's rate


def normalise_text(text: str) -> str:
    """Lower case, digits and letters and inner apostrophes kept, everything else a space, spaces collapsed:
    ``"Don't -- PANIC!"`` → ``"don't panic"``."""
    words = re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text.lower().replace("’", "'"))
    return " ".join(words)


@dataclass
class WordErrors:
    """Pooled word errors of a set of sentences."""

    errors: int  # substitutions + deletions + insertions
    words: int  # reference words

    @property
    def rate(self) -> float:
        """errors / words (0 when there are no words)."""
        return self.errors / self.words if self.words else 0.0


def word_errors(references: list[str], hypotheses: list[str]) -> WordErrors:
    """Pooled word errors of hypotheses against references (both normalised with :func:`normalise_text`).

    Raises:
        ValueError: for lists of different lengths or a reference with no words.
    """
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalise_text(r) for r in references]
    if any(not r for r in refs):
        raise ValueError("every reference sentence must contain a word")
    if not refs:
        return WordErrors(0, 0)
    out = jiwer.process_words(refs, [normalise_text(h) for h in hypotheses])
    return WordErrors(out.substitutions + out.deletions + out.insertions, sum(len(r.split()) for r in refs))


class SpeechRecogniser:
    """PocketSphinx's en-us recogniser (default acoustic model, dictionary and 3-gram language model of the wheel).

    Args:
        sample_rate: Hz of the waveforms given to :meth:`transcribe` (resampled to 16 kHz when different).

    Raises:
        RuntimeError: when pocketsphinx is not installed (it is a declared dependency).
    """

    def __init__(self, sample_rate: int = RECOGNISER_RATE):
        try:
            from pocketsphinx import Decoder
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise RuntimeError("the speech recogniser needs the pocketsphinx package (pip install -e .)") from e
        self.sample_rate = sample_rate
        self._decoder = Decoder(samprate=RECOGNISER_RATE, loglevel="FATAL")

    def transcribe(self, waveform: torch.Tensor | np.ndarray) -> str:
        """The recognised words (lower case, space-separated; empty if none) of a mono waveform ``[T]`` in [-1, 1].

        Raises:
            ValueError: unless the waveform is 1-D.
        """
        w = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
        if w.ndim != 1:
            raise ValueError(f"expected a mono waveform [T], got shape {w.shape}")
        w = w.astype(np.float32)
        if self.sample_rate != RECOGNISER_RATE:
            import librosa

            w = librosa.resample(w, orig_sr=self.sample_rate, target_sr=RECOGNISER_RATE)
        pcm = (np.clip(np.nan_to_num(w), -1.0, 1.0) * 32767).astype(np.int16)
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm.tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return normalise_text(hyp.hypstr) if hyp is not None else ""

    def word_errors(self, waveforms: list, texts: list[str]) -> tuple[WordErrors, list[str]]:
        """Transcribe every waveform and score it against its sentence: ``(pooled errors, transcripts)``."""
        heard = [self.transcribe(w) for w in tqdm(waveforms, desc="recognising", unit="clip", disable=None,
                                                  leave=False)]
        return word_errors(texts, heard), heard
