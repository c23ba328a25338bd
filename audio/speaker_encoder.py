"""An outside speaker-verification instrument: who does a clip sound like?

The instrument is Resemblyzer's pretrained GE2E speaker encoder (Wan et al. 2018, *Generalized End-to-End Loss for
Speaker Verification*; a 3-layer LSTM over 40-band log-mels trained on thousands of real speakers, weights shipped in
the ``resemblyzer`` wheel, so it runs offline). No one in this project trained or tuned it. A clip's embedding is a
unit vector ``[256]``; a voice is the normalised mean embedding (centroid) of its training utterances; a clip is
identified as the voice whose centroid has the highest cosine similarity — the Voice Conversion Challenges' speaker
similarity by a verification embedding, used here as closed-set identification.

:func:`equal_error_rate` of target-vs-source trials: for each conversion A → B, the cosine to B's centroid is a
*target* trial and the cosine to A's centroid a *non-target* trial; the EER is the error rate at the threshold where
false acceptances equal false rejections (0: every conversion is closer to its target than any conversion is to its
source; 0.5: no separation).

Axis legend: T waveform samples, M clips, V voices, E embedding size (256).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

ENCODER_RATE = 16000  # Hz, the encoder's analysis rate


class SpeakerEncoder:
    """Resemblyzer's GE2E voice encoder on the CPU (its own preprocessing: volume normalisation and removal of long
    silences by voice activity detection).

    Args:
        sample_rate: Hz of the waveforms given to :meth:`embed` (resampled to 16 kHz when different).
    """

    def __init__(self, sample_rate: int = ENCODER_RATE):
        try:
            with warnings.catch_warnings():  # resemblyzer imports a deprecated scipy namespace
                warnings.simplefilter("ignore", DeprecationWarning)
                from resemblyzer import VoiceEncoder
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise RuntimeError("the speaker encoder needs the resemblyzer package (pip install -e .)") from e
        self.sample_rate = sample_rate
        self._encoder = VoiceEncoder(device="cpu", verbose=False)

    def embed(self, waveforms: list) -> np.ndarray:
        """Unit-norm embeddings ``[M, 256]`` of mono waveforms ``[T]`` in [-1, 1] (each at least 0.5 s of sound).

        Raises:
            ValueError: for a waveform that is not 1-D.
        """
        from resemblyzer import preprocess_wav

        out = []
        for w in waveforms:
            w = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
            if w.ndim != 1:
                raise ValueError(f"expected a mono waveform [T], got shape {w.shape}")
            w = np.clip(np.nan_to_num(w.astype(np.float32)), -1.0, 1.0)
            pre = preprocess_wav(w, source_sr=self.sample_rate if self.sample_rate != ENCODER_RATE else None)
            out.append(self._encoder.embed_utterance(pre if len(pre) >= ENCODER_RATE // 2 else w))
        return np.stack(out) if out else np.zeros((0, 256), np.float32)


def centroids(embeddings: np.ndarray, labels: list[int] | np.ndarray, num_voices: int) -> np.ndarray:
    """Unit-norm mean embedding ``[V, E]`` of each voice from embeddings ``[M, E]`` and voice labels ``[M]``.

    Raises:
        ValueError: when a voice has no embedding.
    """
    labels = np.asarray(labels)
    missing = [v for v in range(num_voices) if not (labels == v).any()]
    if missing:
        raise ValueError(f"voices {missing} have no enrolment embedding")
    c = np.stack([embeddings[labels == v].mean(0) for v in range(num_voices)])
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def identify(embeddings: np.ndarray, voice_centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-set identification: ``(voice index [M] with the highest cosine, cosines [M, V])``."""
    cos = embeddings @ voice_centroids.T  # [M, V] (both unit-norm)
    return cos.argmax(1), cos


def equal_error_rate(target_scores: np.ndarray, nontarget_scores: np.ndarray) -> float:
    """Equal error rate of a detector whose target trials score ``target_scores`` and non-target trials
    ``nontarget_scores`` (higher = more target-like), from scikit-learn's ROC: the mean of the false-acceptance and
    false-rejection rates at the threshold where they are closest.

    Raises:
        ValueError: when either set of trials is empty.
    """
    from sklearn.metrics import roc_curve

    if len(target_scores) == 0 or len(nontarget_scores) == 0:
        raise ValueError("the equal error rate needs target and non-target trials")
    y = np.r_[np.ones(len(target_scores)), np.zeros(len(nontarget_scores))]
    fpr, tpr, _ = roc_curve(y, np.r_[target_scores, nontarget_scores])
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)
