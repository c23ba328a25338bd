"""Reading and writing speech audio files with ``soundfile`` (``torchaudio.load``/``save`` need torchcodec, not
installed).

Every waveform in the audio domain is a mono ``[T]`` float32 tensor in [-1, 1] at a known sample rate (Hz).

Axis legend: T samples (time), C channels of a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from core.files import atomic_write


class AudioFileError(ValueError):
    """An audio file that is missing, unreadable, empty or at the wrong sample rate; the message names the file."""


def audio_sample_rate(path: str | os.PathLike) -> int:
    """The sample rate (Hz) stored in the header of the audio file at ``path``.

    Raises:
        AudioFileError: If the file is missing or its header cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"audio file {path} does not exist")
    try:
        return int(sf.info(str(path)).samplerate)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioFileError(f"cannot read audio file {path}: {e}") from e


def read_audio(path: str | os.PathLike, sample_rate: int, resample: bool = False) -> torch.Tensor:
    """The audio file at ``path`` as one mono waveform.

    Several channels are averaged into one. Samples are clipped to [-1, 1] (float files and resampling can overshoot).

    Args:
        path: Any format libsndfile reads (wav, flac, ogg, ...).
        sample_rate: The rate the caller expects, Hz.
        resample: If true, a file at another rate is resampled to ``sample_rate`` with
            ``torchaudio.functional.resample`` (windowed sinc); if false, it is refused.

    Returns:
        ``[T]`` float32 in [-1, 1], ``T ≥ 1``, at ``sample_rate`` Hz.

    Raises:
        AudioFileError: If the file is missing, cannot be decoded, holds no samples or non-finite ones, or has a
            sample rate other than ``sample_rate`` while ``resample`` is false. The message names the file.
        ValueError: If ``sample_rate`` is not positive.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"audio file {path} does not exist")
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioFileError(f"cannot read audio file {path}: {e}") from e
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioFileError(f"audio file {path} holds no samples")
    if not np.isfinite(data).all():
        raise AudioFileError(f"audio file {path} holds non-finite samples")
    mono = data.mean(axis=1, dtype=np.float32)  # [T]
    if file_rate != sample_rate:
        if not resample:
            raise AudioFileError(f"audio file {path} has sample rate {file_rate} Hz, expected {sample_rate} Hz "
                                 "(resample it, or pass resample=True)")
        import torchaudio.functional  # imported here: only resampling needs torchaudio

        mono = torchaudio.functional.resample(torch.from_numpy(mono), int(file_rate), int(sample_rate)).numpy()
        if mono.size == 0:
            raise AudioFileError(f"audio file {path} is too short to resample from {file_rate} to {sample_rate} Hz")
    # NumPy's clip: torch's clamp_ costs milliseconds per call here when other processes load the CPU
    return torch.from_numpy(np.clip(mono, -1.0, 1.0, out=mono))  # [T]


def write_audio(path: str | os.PathLike, waveform: torch.Tensor | np.ndarray, sample_rate: int) -> Path:
    """Writes a mono waveform as a 16-bit PCM wav file, atomically (a temporary file in the same folder, then renamed).

    Args:
        path: Destination; its folder is created if missing.
        waveform: ``[T]`` float samples; values outside [-1, 1] are clipped.
        sample_rate: Hz.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: If ``waveform`` is not one-dimensional, holds NaN or Inf (written as PCM they would become
            full-scale clicks), or ``sample_rate`` is not positive; nothing is written.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    samples = np.asarray(waveform, dtype=np.float32)  # [T]
    if samples.ndim != 1:
        raise ValueError(f"waveform must be [T], got shape {samples.shape}")
    bad = int((~np.isfinite(samples)).sum())
    if bad:
        raise ValueError(f"waveform for {path} has {bad} NaN/Inf samples of {samples.size}; nothing was written")
    samples = np.clip(samples, -1.0, 1.0)
    return atomic_write(path, lambda f: sf.write(f, samples, int(sample_rate), subtype="PCM_16", format="WAV"))
