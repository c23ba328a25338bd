"""Mel-cepstral distortion (MCD) between two renderings of the same sentence.

Axis legend: T waveform samples, F analysis frames, C cepstral coefficients, M mel bands.

:func:`mel_cepstral_distortion` is the standard MCD in dB (Kubichek 1993, as computed with SPTK-convention
mel-cepstra in the speech-synthesis literature), after dynamic time warping (librosa), over coefficients 1..C
(c0, the energy, excluded) and averaged over the warping path:

    ``MCD = (10 / ln 10) · sqrt(2 · Σ_{d=1..C} (c_d − c'_d)²)``.

The cepstra are those of the log *amplitude* mel spectrum (M = 80 Slaney bands, 64 ms windows, 16 ms hop at
16 kHz) in the SPTK convention ``ln|X_m| = c0 + Σ_{d≥1} c_d · cos(π·d·(m + ½) / M)`` (one-sided: no factor 2 on
the cosine terms). With that convention and all M − 1 cepstra kept, the MCD of two aligned frames equals the RMS
difference in dB (``20·log10`` of amplitude) of their mean-removed log mel spectra, over the M bands — a test checks
this. The cepstra are the cosine transform of a mel filterbank, not SPTK's all-pass mel-cepstral analysis, so values
compare closely but not exactly with published MCDs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

N_MELS = 80
NUM_CEPSTRA = 24  # coefficients 1..24 (c0 dropped)
WINDOW_SECONDS = 0.064
HOP_SECONDS = 0.016
MCD_CONST = 10.0 / math.log(10.0) * math.sqrt(2.0)


def as_mono_numpy(wave: torch.Tensor | np.ndarray) -> np.ndarray:
    """A waveform ``[T]`` as float32 numpy; raises ValueError unless it is 1-D."""
    w = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    if w.ndim != 1:
        raise ValueError(f"expected a mono waveform [T], got shape {w.shape}")
    return w.astype(np.float32)


def log_mel_amplitude(wave: torch.Tensor | np.ndarray, sample_rate: int) -> np.ndarray:
    """Natural log of the mel band amplitudes ``[F, M]`` of a waveform ``[T]`` (the MCD's analysis).

    Raises:
        ValueError: the waveform is not 1-D or shorter than one analysis window.
    """
    import librosa

    w = as_mono_numpy(wave)
    n_fft = int(round(WINDOW_SECONDS * sample_rate))
    if len(w) < n_fft:
        raise ValueError(f"waveform of {len(w)} samples is shorter than one {n_fft}-sample analysis window")
    power = librosa.feature.melspectrogram(y=w, sr=sample_rate, n_fft=n_fft, hop_length=int(HOP_SECONDS * sample_rate),
                                           n_mels=N_MELS, center=False)  # [M, F]
    return (0.5 * np.log(np.maximum(power, 1e-10))).T.astype(np.float64)  # [F, M]


def cepstra_of_log_mel(log_amplitude: np.ndarray, num_cepstra: int = NUM_CEPSTRA) -> np.ndarray:
    """SPTK-convention cepstra ``[F, num_cepstra]`` (coefficients 1..num_cepstra) of log amplitudes ``[F, M]``.

    Raises:
        ValueError: ``num_cepstra`` outside ``[1, M − 1]``.
    """
    from scipy.fft import dct

    m = log_amplitude.shape[1]
    if not 1 <= num_cepstra <= m - 1:
        raise ValueError(f"num_cepstra must lie in [1, {m - 1}], got {num_cepstra}")
    # scipy's unnormalized DCT-II is y_d = 2·Σ_m x_m·cos(π·d·(m + ½)/M); the inverse of the one-sided series
    # ln|X_m| = c0 + Σ_{d≥1} c_d·cos(…) is c_d = (2/M)·Σ_m ln|X_m|·cos(…) = y_d / M for d ≥ 1
    return (dct(log_amplitude, type=2, axis=1) / m)[:, 1:num_cepstra + 1]


def mel_cepstrum(wave: torch.Tensor | np.ndarray, sample_rate: int, num_cepstra: int = NUM_CEPSTRA) -> np.ndarray:
    """Mel-cepstra ``[F, num_cepstra]`` (coefficients 1..num_cepstra, SPTK convention) of a waveform ``[T]``.

    Raises:
        ValueError: the waveform is not 1-D or shorter than one analysis window.
    """
    return cepstra_of_log_mel(log_mel_amplitude(wave, sample_rate), num_cepstra)


def frame_mcd(cepstra: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """MCD in dB ``[F]`` of aligned cepstral frames ``[F, C]`` and ``[F, C]``."""
    return MCD_CONST * np.sqrt(((cepstra - reference) ** 2).sum(1))


def mel_cepstral_distortion(wave: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray,
                            sample_rate: int) -> float:
    """MCD in dB between ``wave`` ``[T1]`` and ``reference`` ``[T2]`` after DTW alignment (see the module docstring),
    the mean over the warping path. Identical inputs give 0."""
    import librosa

    a, b = mel_cepstrum(wave, sample_rate), mel_cepstrum(reference, sample_rate)
    _, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    return float(frame_mcd(a[path[:, 0]], b[path[:, 1]]).mean())
