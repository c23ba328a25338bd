"""Mel-cepstral distortion and the speaker classifier on synthetic voices."""

import numpy as np
import pytest
import torch

from audio.scores import SpeakerClassifier, mel_cepstral_distortion, mel_cepstrum

SR = 16000


def _voice(f0: float, formant: float, seconds: float, seed: int) -> np.ndarray:
    """A buzzy harmonic source at ``f0`` with one resonance near ``formant`` Hz, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    harmonics = np.arange(1, 30)
    amp = 1.0 / (1.0 + ((harmonics[:, None] * f0 - formant) / 300.0) ** 2)
    wave = (amp * np.sin(harmonics[:, None] * phase)).sum(0)
    wave = wave / np.abs(wave).max() * 0.5 + rng.normal(0, 0.01, len(t))
    return wave.astype(np.float32)


def test_mcd_is_zero_for_identical_audio_and_grows_with_difference():
    a = _voice(120, 700, 1.0, 0)
    assert mel_cepstral_distortion(a, a, SR) == pytest.approx(0.0, abs=1e-9)
    same_voice = mel_cepstral_distortion(_voice(120, 700, 1.0, 1), a, SR)
    other_voice = mel_cepstral_distortion(_voice(220, 1800, 1.0, 1), a, SR)
    assert 0 < same_voice < other_voice


def test_mcd_matches_the_formula_on_aligned_frames():
    a, b = _voice(120, 700, 0.5, 0), _voice(125, 750, 0.5, 0)
    ca, cb = mel_cepstrum(a, SR), mel_cepstrum(b, SR)
    diagonal = 10 / np.log(10) * np.sqrt(2 * ((ca - cb) ** 2).sum(1)).mean()
    assert mel_cepstral_distortion(a, b, SR) <= diagonal + 1e-9  # DTW never does worse than the diagonal path


def test_mel_cepstrum_shape_and_errors():
    c = mel_cepstrum(torch.zeros(SR) + 0.01, SR)
    assert c.shape[1] == 24 and c.shape[0] > 50
    with pytest.raises(ValueError, match="shorter than one"):
        mel_cepstrum(np.zeros(100, np.float32), SR)
    with pytest.raises(ValueError, match="mono"):
        mel_cepstrum(np.zeros((2, SR), np.float32), SR)


def test_speaker_classifier_separates_voices():
    voices = [(110, 600), (180, 1200), (250, 2000)]
    train = [(_voice(f, fm, 0.6, seed), i) for i, (f, fm) in enumerate(voices) for seed in range(8)]
    test = [(_voice(f, fm, 0.6, 100 + seed), i) for i, (f, fm) in enumerate(voices) for seed in range(4)]
    clf = SpeakerClassifier(SR).fit([w for w, _ in train], [s for _, s in train])
    assert clf.accuracy([w for w, _ in test], [s for _, s in test]) == 1.0
    with pytest.raises(ValueError, match="two speakers"):
        SpeakerClassifier(SR).fit([train[0][0]], [0])
    with pytest.raises(RuntimeError, match="fit"):
        SpeakerClassifier(SR).predict([train[0][0]])
