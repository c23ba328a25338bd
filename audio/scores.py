"""Objective scores of converted speech: a speaker classifier and mel-cepstral distortion.

Axis legend: T waveform samples, F analysis frames, C cepstral coefficients.

- :class:`SpeakerClassifier` — multinomial logistic regression (scikit-learn) on utterance-level statistics (mean
  and standard deviation over frames) of mel-cepstra and their deltas, trained on real, unconverted audio. The
  accuracy of its decisions on converted audio, against the *target* speaker, measures whether conversion changed
  the voice.
- :func:`mel_cepstral_distortion` — MCD in dB between two renderings of the same sentence, after dynamic time warping
  (librosa), over coefficients 1..C (c0, the energy, excluded):
  ``MCD = (10 / ln 10) · sqrt(2 · Σ_c (c_c − c'_c)²)`` averaged over the warping path (Kubichek 1993).
  The cepstra here are the cosine transform of the log *amplitude* mel spectrum (80 bands, 64 ms windows, 16 ms
  hop at 16 kHz), scaled so that ``log|X| = c0 + 2·Σ c_d cos(·)``,
  not SPTK's all-pass mel-cepstral analysis, so values compare within this suite and only roughly with published
  MCDs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

N_MELS = 80
NUM_CEPSTRA = 24  # coefficients 1..24 (c0 dropped)
WINDOW_SECONDS = 0.064
HOP_SECONDS = 0.016
_MCD_CONST = 10.0 / math.log(10.0) * math.sqrt(2.0)


def _as_numpy(wave: torch.Tensor | np.ndarray) -> np.ndarray:
    w = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    if w.ndim != 1:
        raise ValueError(f"expected a mono waveform [T], got shape {w.shape}")
    return w.astype(np.float32)


def mel_cepstrum(wave: torch.Tensor | np.ndarray, sample_rate: int, num_cepstra: int = NUM_CEPSTRA) -> np.ndarray:
    """Mel-cepstra ``[F, num_cepstra]`` (coefficients 1..num_cepstra) of a waveform ``[T]`` in [-1, 1].

    Raises:
        ValueError: the waveform is not 1-D or shorter than one analysis window.
    """
    import librosa
    from scipy.fft import dct

    w = _as_numpy(wave)
    n_fft = int(round(WINDOW_SECONDS * sample_rate))
    if len(w) < n_fft:
        raise ValueError(f"waveform of {len(w)} samples is shorter than one {n_fft}-sample analysis window")
    power = librosa.feature.melspectrogram(y=w, sr=sample_rate, n_fft=n_fft, hop_length=int(HOP_SECONDS * sample_rate),
                                           n_mels=N_MELS, center=False)  # [N_MELS, F]
    log_amplitude = 0.5 * np.log(np.maximum(power, 1e-10))
    # unnormalized DCT-II / N_MELS: log|X| = c0 + 2·Σ_d c_d·cos(π·d·(m + ½)/N_MELS) over the mel bands m, the
    # cepstral convention the MCD formula assumes
    cepstra = dct(log_amplitude, type=2, axis=0) / (2 * N_MELS)  # [N_MELS, F]
    return cepstra[1:num_cepstra + 1].T.astype(np.float64)  # [F, C]


def mel_cepstral_distortion(wave: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray,
                            sample_rate: int) -> float:
    """MCD in dB between ``wave`` ``[T1]`` and ``reference`` ``[T2]`` after DTW alignment (see the module docstring).

    Identical inputs give 0.
    """
    import librosa

    a, b = mel_cepstrum(wave, sample_rate), mel_cepstrum(reference, sample_rate)
    _, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    diff = a[path[:, 0]] - b[path[:, 1]]  # [len(path), C]
    return float(_MCD_CONST * np.sqrt((diff ** 2).sum(1)).mean())


def utterance_features(wave: torch.Tensor | np.ndarray, sample_rate: int) -> np.ndarray:
    """Speaker features ``[4·C]`` of one utterance: mean and standard deviation over frames of the mel-cepstra and of
    their frame-to-frame deltas."""
    c = mel_cepstrum(wave, sample_rate)  # [F, C]
    d = np.diff(c, axis=0) if len(c) > 1 else np.zeros_like(c)
    return np.concatenate([c.mean(0), c.std(0), d.mean(0), d.std(0)])


class SpeakerClassifier:
    """Which speaker says an utterance: logistic regression on :func:`utterance_features`.

    Args:
        sample_rate: of every waveform given, Hz.
        seed: of the solver (deterministic for a fixed seed).
    """

    def __init__(self, sample_rate: int, seed: int = 0):
        self.sample_rate = sample_rate
        self.seed = seed
        self.model = None

    def _features(self, waves) -> np.ndarray:
        return np.stack([utterance_features(w, self.sample_rate) for w in waves])

    def fit(self, waves, speakers) -> "SpeakerClassifier":
        """Fit on waveforms ``[T_i]`` and their speaker indices (ints).

        Raises:
            ValueError: fewer than two speakers or mismatched lengths.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        speakers = np.asarray(speakers)
        if len(waves) != len(speakers):
            raise ValueError(f"{len(waves)} waveforms but {len(speakers)} speaker labels")
        if len(np.unique(speakers)) < 2:
            raise ValueError("the speaker classifier needs at least two speakers")
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0,
                                                                        random_state=self.seed))
        self.model.fit(self._features(waves), speakers)
        return self

    def predict(self, waves) -> np.ndarray:
        """Speaker index ``[N]`` for each waveform."""
        if self.model is None:
            raise RuntimeError("fit the speaker classifier first")
        return self.model.predict(self._features(waves))

    def accuracy(self, waves, speakers) -> float:
        """Fraction of ``waves`` classified as their given ``speakers``."""
        return float((self.predict(waves) == np.asarray(speakers)).mean())
