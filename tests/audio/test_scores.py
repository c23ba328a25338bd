"""Mel-cepstral distortion (standard definition) and the speaker scorer on synthetic voices."""

import math

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from audio.mel import MelSettings, log_mel
from audio.scores import (N_MELS, cepstra_of_log_mel, frame_mcd, log_mel_amplitude, mel_cepstral_distortion,
                          mel_cepstrum)
from audio.speaker_scorer import (DEGRADATIONS, SpeakerScorer, add_white_noise, degrade, griffin_lim_resynthesis,
                                  mu_law_round_trip, speaker_features)

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


def test_mcd_equals_the_rms_log_spectral_distance_in_db_with_all_cepstra():
    """Independent computation: with the SPTK convention and every cepstrum kept, the MCD of aligned frames is the RMS
    difference in dB of the mean-removed log mel spectra over the bands (discrete Parseval for the DCT-II)."""
    a, b = _voice(120, 700, 0.5, 0), _voice(180, 1500, 0.5, 1)
    la, lb = log_mel_amplitude(a, SR), log_mel_amplitude(b, SR)  # [F, M] natural log of amplitudes
    mcd = frame_mcd(cepstra_of_log_mel(la, N_MELS - 1), cepstra_of_log_mel(lb, N_MELS - 1))  # [F]
    diff_db = 20 / math.log(10) * (la - lb)
    rms = np.sqrt(((diff_db - diff_db.mean(1, keepdims=True)) ** 2).mean(1))  # [F]
    np.testing.assert_allclose(mcd, rms, rtol=1e-9)
    assert mcd.mean() > 5  # not a vacuous equality


def test_cepstra_follow_the_one_sided_convention():
    m = np.arange(N_MELS)
    log_amp = 0.3 + 0.7 * np.cos(np.pi * 2 * (m + 0.5) / N_MELS)  # c0 = 0.3, c2 = 0.7, the rest 0
    c = cepstra_of_log_mel(log_amp[None], 5)[0]
    np.testing.assert_allclose(c, [0, 0.7, 0, 0, 0], atol=1e-12)
    with pytest.raises(ValueError, match="num_cepstra"):
        cepstra_of_log_mel(log_amp[None], N_MELS)


def _voices(seeds, seconds=0.6):
    voices = [(110, 600), (180, 1200), (250, 2000)]
    return [(torch.from_numpy(_voice(f, fm, seconds, seed)), i) for i, (f, fm) in enumerate(voices) for seed in seeds]


def test_degradations_are_built_as_stated():
    wave = torch.from_numpy(_voice(150, 900, 0.5, 0))
    noisy = add_white_noise(wave, 10.0, torch.Generator().manual_seed(0))
    snr = 10 * math.log10(float(wave.pow(2).mean() / (noisy - wave).pow(2).mean()))
    assert snr == pytest.approx(10.0, abs=0.3)
    mu = mu_law_round_trip(wave)
    assert torch.equal(mu, AF.mu_law_decoding(AF.mu_law_encoding(wave, 256), 256))
    assert 1 < len(torch.unique(mu)) <= 256 and not torch.equal(mu, wave)
    settings = MelSettings(sample_rate=SR, hop=64, n_fft=512, n_mels=40, griffin_lim_iters=16)
    gl = griffin_lim_resynthesis([wave, wave[:5000]], settings)
    assert [g.shape[0] for g in gl] == [wave.shape[0] // 64 * 64, 5000 // 64 * 64]
    ref, got = log_mel(wave[None, :gl[0].shape[0]], settings), log_mel(gl[0][None], settings)
    loud = ref > ref.max() - 4
    assert (ref - got)[loud].abs().mean() < 0.5  # the same spectrogram, another phase
    assert (gl[0] - wave[:gl[0].shape[0]]).abs().mean() > 0.01
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade([wave], "reverb", settings, 0)


def test_speaker_features_are_blind_to_loudness():
    wave = torch.from_numpy(_voice(150, 900, 0.6, 0))
    f = speaker_features(wave, SR)
    for gain in (0.25, 4.0):
        np.testing.assert_allclose(speaker_features(wave * gain, SR), f, atol=1e-3)


def test_speaker_scorer_separates_voices_and_validates_itself():
    train, test = _voices(range(8)), _voices(range(100, 104))
    settings = MelSettings(sample_rate=SR, hop=64, n_fft=512, n_mels=40, griffin_lim_iters=8)
    scorer = SpeakerScorer(SR, settings).fit([w for w, _ in train], [s for _, s in train])
    checks = scorer.validate([w for w, _ in test], [s for _, s in test])
    assert set(checks) == {"clean", *DEGRADATIONS, "gain_agreement"}
    assert checks["clean"] == 1.0 and checks["gain_agreement"] == 1.0
    assert min(checks[k] for k in DEGRADATIONS) >= 0.75
    # shuffled labels: the scorer cannot recognise held-out clips (the instrument is not reading a constant)
    rng = np.random.default_rng(0)
    shuffled = SpeakerScorer(SR, settings).fit([w for w, _ in train], rng.permutation([s for _, s in train]),
                                               augment=False)
    assert shuffled.accuracy([w for w, _ in test], [s for _, s in test]) < 0.75
    with pytest.raises(ValueError, match="two speakers"):
        SpeakerScorer(SR).fit([train[0][0]], [0])
    with pytest.raises(RuntimeError, match="fit"):
        SpeakerScorer(SR).predict([train[0][0]])
