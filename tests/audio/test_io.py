"""Tests of audio/io.py: round trips, the errors of read_audio (each names the file), resampling, stereo to mono."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audio.io import AudioFileError, audio_sample_rate, read_audio, write_audio


def _sine(seconds: float, rate: int, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)  # [T]


def test_write_read_round_trip(tmp_path):
    x = _sine(0.25, 16000)
    path = write_audio(tmp_path / "sub" / "a.wav", torch.from_numpy(x), 16000)
    assert path == tmp_path / "sub" / "a.wav"
    assert sf.info(str(path)).subtype == "PCM_16"
    y = read_audio(path, 16000)
    assert y.dtype == torch.float32 and y.shape == (4000,)
    assert torch.allclose(y, torch.from_numpy(x), atol=2 / 32768)
    assert [p.name for p in path.parent.iterdir()] == ["a.wav"]  # no temporary file left behind


def test_write_clips_and_accepts_ndarray(tmp_path):
    path = write_audio(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.25]), 8000)
    y = read_audio(path, 8000)
    assert y.max() <= 1.0 and y.min() >= -1.0
    assert y[0] > 0.99 and y[1] == -1.0 and abs(y[2] - 0.25) < 1e-4


def test_write_rejects_two_dimensional(tmp_path):
    with pytest.raises(ValueError, match=r"\[T\]"):
        write_audio(tmp_path / "x.wav", np.zeros((2, 10)), 16000)


def test_missing_file(tmp_path):
    with pytest.raises(AudioFileError, match="nope.wav"):
        read_audio(tmp_path / "nope.wav", 16000)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioFileError, match="corrupt.wav"):
        read_audio(path, 16000)
    with pytest.raises(AudioFileError, match="corrupt.wav"):
        audio_sample_rate(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    with pytest.raises(AudioFileError, match="empty.wav.*no samples"):
        read_audio(path, 16000)


def test_wrong_sample_rate_is_refused(tmp_path):
    path = write_audio(tmp_path / "eight.wav", _sine(0.1, 8000), 8000)
    with pytest.raises(AudioFileError, match=r"eight.wav.*8000 Hz.*16000 Hz"):
        read_audio(path, 16000)
    assert issubclass(AudioFileError, ValueError)
    assert audio_sample_rate(path) == 8000


def test_resample_gives_the_right_length_and_pitch(tmp_path):
    path = tmp_path / "high.flac"
    sf.write(str(path), _sine(0.5, 48000, hz=1000.0), 48000)
    y = read_audio(path, 16000, resample=True)
    assert y.shape == (8000,)
    spectrum = torch.fft.rfft(y).abs()
    assert abs(spectrum.argmax().item() * 16000 / 8000 - 1000.0) <= 2.0


def test_stereo_is_averaged(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = np.full(100, 0.5, np.float32), np.full(100, -0.25, np.float32)
    sf.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    y = read_audio(path, 16000)
    assert y.shape == (100,)
    assert torch.allclose(y, torch.full((100,), 0.125))


def test_write_audio_refuses_non_finite_samples_and_writes_nothing(tmp_path):
    for bad in (np.full(100, np.nan), np.array([0.1, np.inf, -0.2])):
        with pytest.raises(ValueError, match="NaN/Inf samples"):
            write_audio(tmp_path / "bad.wav", bad, 16000)
    assert list(tmp_path.iterdir()) == []
