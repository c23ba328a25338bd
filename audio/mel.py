"""Log-mel spectrograms of speech and their rendering back to a waveform by Griffin-Lim (torchaudio).

Used by the ``mel`` decoder of the speech VQ-VAE (its training target and its rendering), by the speaker scorer's
Griffin-Lim validation set, and by the spectrogram figures.

Definition: magnitude (power 1) STFT with a ``n_fft``-sample Hann window, ``hop`` samples apart, centred frames;
``n_mels`` Slaney mel bands over 0 … sample_rate / 2 (``torchaudio.transforms.MelSpectrogram``); natural log of the
band amplitudes floored at ``LOG_FLOOR``. A waveform of ``T = N · hop`` samples gives exactly ``N`` frames (frame
``n`` centred on sample ``n · hop``; torchaudio's extra last frame is dropped).

Rendering: ``exp`` → least-squares inverse of the mel filterbank (``torchaudio.transforms.InverseMelScale``, clamped
at 0) → ``torchaudio.transforms.GriffinLim`` (zero initial phase, so it is deterministic, momentum 0.99).

Axis legend: B batch, T waveform samples, M mel bands, N frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

LOG_FLOOR = 1e-5  # amplitude floor before the log (−100 dB re full scale)


@dataclass(frozen=True)
class MelSettings:
    """Analysis settings of the log-mel spectrogram.

    Attributes:
        sample_rate: Hz.
        hop: samples between frames (the speech VQ-VAE uses its code hop, 64 samples = 4 ms at 16 kHz).
        n_fft: window and FFT size, samples.
        n_mels: mel bands.
        griffin_lim_iters: iterations of Griffin-Lim when rendering.
    """

    sample_rate: int = 16000
    hop: int = 64
    n_fft: int = 768
    n_mels: int = 80
    griffin_lim_iters: int = 32

    def __post_init__(self):
        for name in ("sample_rate", "hop", "n_fft", "n_mels", "griffin_lim_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"mel setting {name} must be positive, got {getattr(self, name)}")
        if self.hop > self.n_fft:
            raise ValueError(f"mel hop ({self.hop}) must not exceed n_fft ({self.n_fft})")


@lru_cache(maxsize=8)
def _analysis(settings: MelSettings, device: str):
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        settings.sample_rate, n_fft=settings.n_fft, hop_length=settings.hop, n_mels=settings.n_mels, power=1.0,
        norm="slaney", mel_scale="slaney", center=True).to(device)


@lru_cache(maxsize=8)
def _synthesis(settings: MelSettings, device: str):
    import torchaudio

    return torchaudio.transforms.InverseMelScale(settings.n_fft // 2 + 1, settings.n_mels, settings.sample_rate,
                                                 norm="slaney", mel_scale="slaney").to(device)


def log_mel(waveform: torch.Tensor, settings: MelSettings) -> torch.Tensor:
    """Log-mel spectrogram ``[B, M, N]`` (natural log of amplitudes) of ``waveform [B, T]``, ``N = T // hop``;
    float32 (computed outside any autocast region).

    Raises:
        ValueError: unless ``waveform`` is a float ``[B, T]`` with ``T ≥ hop``.
    """
    if waveform.dim() != 2 or not waveform.is_floating_point() or waveform.shape[1] < settings.hop:
        raise ValueError(f"waveform must be a float tensor [B, T] with T >= {settings.hop}, got {waveform.dtype} "
                         f"{tuple(waveform.shape)}")
    frames = waveform.shape[1] // settings.hop
    with torch.autocast(waveform.device.type, enabled=False):  # float32 under a bf16 run too (a target, a feature)
        mel = _analysis(settings, str(waveform.device))(waveform.float())[..., :frames]  # [B, M, N]
        return torch.log(mel.clamp_min(LOG_FLOOR))


@torch.no_grad()
def griffin_lim(log_mel_frames: torch.Tensor, settings: MelSettings) -> torch.Tensor:
    """Waveform ``[B, N · hop]`` rendered from a log-mel spectrogram ``[B, M, N]`` (see the module docstring).

    Raises:
        ValueError: for a misshapen input.
    """
    import torchaudio.functional as AF

    if log_mel_frames.dim() != 3 or log_mel_frames.shape[1] != settings.n_mels or log_mel_frames.shape[2] < 1:
        raise ValueError(f"log-mel must be [B, {settings.n_mels}, N] with N >= 1, got {tuple(log_mel_frames.shape)}")
    b, _, n = log_mel_frames.shape
    # the analysis dropped the last centred frame: repeat the last one so the inverse STFT covers every sample
    mel = torch.cat([log_mel_frames, log_mel_frames[..., -1:]], dim=-1).float().exp()  # [B, M, N + 1]
    spec = _synthesis(settings, str(mel.device))(mel).clamp_min(0.0)  # [B, n_fft / 2 + 1, N + 1]
    window = torch.hann_window(settings.n_fft, device=mel.device)
    return AF.griffinlim(spec, window, settings.n_fft, settings.hop, settings.n_fft, power=1.0,
                         n_iter=settings.griffin_lim_iters, momentum=0.99, length=n * settings.hop,
                         rand_init=False).reshape(b, n * settings.hop)  # [B, T]


@lru_cache(maxsize=8)
def _envelope_projection(bands: int, cepstra: int, device: str) -> torch.Tensor:
    """``[M, M]`` projection onto the first ``cepstra`` orthonormal DCT-II basis vectors over the bands."""
    m = torch.arange(bands, dtype=torch.float64)
    k = torch.arange(cepstra, dtype=torch.float64)[:, None]
    basis = torch.cos(torch.pi * k * (m + 0.5) / bands) * (2.0 / bands) ** 0.5  # [L, M]
    basis[0] /= 2 ** 0.5
    return (basis.T @ basis).float().to(device)  # [M, M]


def spectral_envelope(log_mel_frames: torch.Tensor, cepstra: int) -> torch.Tensor:
    """The spectral envelope ``[B, M, N]`` of log-mel frames ``[B, M, N]``: each frame liftered to its first
    ``cepstra`` cepstral coefficients (orthonormal DCT-II over the bands, the rest set to zero, inverted). Removes
    the harmonics of the pitch and keeps the formants. Differentiable; linear.

    Raises:
        ValueError: unless ``1 <= cepstra <= M``.
    """
    bands = log_mel_frames.shape[-2]
    if not 1 <= cepstra <= bands:
        raise ValueError(f"cepstra must lie in [1, {bands}], got {cepstra}")
    p = _envelope_projection(bands, cepstra, str(log_mel_frames.device)).to(log_mel_frames.dtype)
    return torch.einsum("mk,bkn->bmn", p, log_mel_frames)  # [B, M, N]


def cepstral_postfilter(log_mel_frames: torch.Tensor, beta: float) -> torch.Tensor:
    """Formant sharpening of log-mel frames ``[B, M, N]`` → ``[B, M, N]``: each frame's cepstral coefficients
    (orthonormal DCT-II over the bands) from the third on are multiplied by ``beta``; the first two, the frame's mean
    log level and its spectral tilt, are kept. The post-filter of statistical parametric speech synthesis (the
    "mel-cepstral post-filter" of HTS-style systems, there on mel-cepstra) against decoders whose predicted spectra
    are too smooth. ``beta = 1`` returns the frames unchanged. Linear in the frames.

    Raises:
        ValueError: unless ``beta > 0`` and the frames have at least 2 bands.
    """
    bands = log_mel_frames.shape[-2]
    if not beta > 0 or bands < 2:
        raise ValueError(f"beta must be > 0 and the frames need >= 2 bands, got beta={beta}, {bands} bands")
    if beta == 1.0:
        return log_mel_frames
    kept = spectral_envelope(log_mel_frames, 2)  # [B, M, N] the mean level and tilt of each frame
    return kept + beta * (log_mel_frames - kept)
