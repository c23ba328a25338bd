"""A speaker scorer for converted speech, validated on degraded real speech before it scores a model.

Axis legend: T waveform samples, F frames, C cepstral coefficients.

Features (:func:`speaker_features`), the two classic long-term speaker cues:
- the clip's mean of MFCCs 1..29 of librosa (c0, the energy, left out; 80 mel bands, 25 ms windows, 10 ms hop, dB
  relative to the clip's maximum with an 80 dB floor), i.e. the shape of its long-term average spectral envelope;
- the quartiles (25th, 50th, 75th percentiles) of its log-F0 contour (librosa's YIN, 60–400 Hz, 64 ms frames,
  10 ms hop) over the frames whose RMS is within 20 dB of the clip's loudest: the pitch level and range.
Frame-to-frame variability statistics (MFCC standard deviations, delta features, pitch jitter) and the extreme
percentiles of F0 (octave errors of the pitch tracker) are left out on purpose: measured on this suite's decoders they
respond to the rendering (over-smoothed envelopes, Griffin-Lim phase jitter) more than to the voice, and leaving them
out also raised the accuracy on the degraded real clips. Scaling a waveform by any gain shifts every log band by the same constant, which lands in c0 alone and
in the relative floor not at all, and YIN and the relative voicing threshold do not see it, so the features — and the
scores — are blind to loudness (the seven embedded voices differ in level by up to 5×).

Classifier: standardisation + multinomial logistic regression (scikit-learn), trained on real training-split clips
and, with ``augment``, on three renderings of each: white noise at an SNR drawn from 10–30 dB, an 8-bit μ-law round
trip and a Griffin-Lim resynthesis of its log-mel spectrogram (the mel decoder's rendering). So it judges the voice,
not whether the audio was generated.

Validation (:meth:`SpeakerScorer.validate`): accuracy on held-out real clips, clean and under each degradation at a
fixed setting (noise at exactly 10 dB SNR, μ-law 8-bit, Griffin-Lim), and the agreement of its decisions on the
clips scaled by 0.25 and by 4 with those on the clips as they are.
"""

from __future__ import annotations

import numpy as np
import torch

from audio.mel import MelSettings, griffin_lim, log_mel
from audio.scores import as_mono_numpy

DEGRADATIONS = ("noise_10db", "mu_law", "griffin_lim")
NOISE_SNR_DB = 10.0  # the validation noise level
TRAIN_SNR_DB = (10.0, 30.0)  # range of the augmentation noise levels
GRIFFIN_LIM_BATCH = 64


def add_white_noise(wave: torch.Tensor, snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """``wave [T]`` plus white Gaussian noise at ``snr_db`` dB below the clip's mean power."""
    power = wave.pow(2).mean().clamp_min(1e-12)
    noise = torch.randn(wave.shape, generator=generator) * (power / 10 ** (snr_db / 10)).sqrt()
    return wave + noise


def mu_law_round_trip(wave: torch.Tensor, channels: int = 256) -> torch.Tensor:
    """``wave [T]`` encoded to ``channels`` μ-law levels (8 bits for 256) and decoded back."""
    import torchaudio.functional as AF

    return AF.mu_law_decoding(AF.mu_law_encoding(wave.clamp(-1.0, 1.0), channels), channels)


def griffin_lim_resynthesis(waves: list[torch.Tensor], settings: MelSettings) -> list[torch.Tensor]:
    """Each ``[T_i]`` waveform analysed into log-mel frames and rendered back by Griffin-Lim (batched, zero-padded;
    every output cut to its input's length rounded down to whole frames, at least one)."""
    out: list[torch.Tensor] = []
    for start in range(0, len(waves), GRIFFIN_LIM_BATCH):
        chunk = waves[start:start + GRIFFIN_LIM_BATCH]
        length = max(max(w.shape[0] for w in chunk) // settings.hop, 1) * settings.hop
        batch = torch.stack([torch.nn.functional.pad(w[:length], (0, length - min(w.shape[0], length)))
                             for w in chunk])  # [B, T]
        rendered = griffin_lim(log_mel(batch.float(), settings), settings)  # [B, T]
        out.extend(rendered[i, :max(w.shape[0] // settings.hop, 1) * settings.hop] for i, w in enumerate(chunk))
    return out


def degrade(waves: list[torch.Tensor], kind: str, settings: MelSettings, seed: int,
            snr_db: float | tuple[float, float] = NOISE_SNR_DB) -> list[torch.Tensor]:
    """The clips under one degradation of :data:`DEGRADATIONS` (``snr_db``: a level, or a range to draw from).

    Raises:
        ValueError: for an unknown degradation.
    """
    if kind == "noise_10db":
        gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        levels = [snr_db if isinstance(snr_db, float) else float(rng.uniform(*snr_db)) for _ in waves]
        return [add_white_noise(w.float(), s, gen) for w, s in zip(waves, levels)]
    if kind == "mu_law":
        return [mu_law_round_trip(w.float()) for w in waves]
    if kind == "griffin_lim":
        return griffin_lim_resynthesis([w.float() for w in waves], settings)
    raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}")


def speaker_features(wave: torch.Tensor | np.ndarray, sample_rate: int) -> np.ndarray:
    """Loudness-blind speaker features ``[32]`` of one clip: 29 MFCC means and the 3 quartiles of log-F0 (see the
    module docstring).

    Raises:
        ValueError: for a waveform that is not 1-D or shorter than one 64 ms pitch frame.
    """
    import librosa

    w = as_mono_numpy(wave)
    hop, pitch_frame = int(0.010 * sample_rate), int(0.064 * sample_rate)
    if len(w) < pitch_frame:
        raise ValueError(f"clip of {len(w)} samples is shorter than one {pitch_frame}-sample pitch frame")
    mfcc = librosa.feature.mfcc(y=w, sr=sample_rate, n_mfcc=30, n_fft=int(0.025 * sample_rate), hop_length=hop,
                                n_mels=80, center=False)[1:]  # [C, F], c0 dropped
    f0 = librosa.yin(w, fmin=60, fmax=400, sr=sample_rate, frame_length=pitch_frame, hop_length=hop)  # [F'] Hz
    rms = librosa.feature.rms(y=w, frame_length=pitch_frame, hop_length=hop)[0][:len(f0)]  # [F']
    voiced = rms > 0.1 * rms.max()
    log_f0 = np.log(f0[voiced] if voiced.sum() > 2 else f0)
    return np.concatenate([mfcc.mean(1), np.percentile(log_f0, [25, 50, 75])])


class SpeakerScorer:
    """Which speaker says a clip (see the module docstring).

    Args:
        sample_rate: of every waveform given, Hz.
        mel_settings: the log-mel analysis whose Griffin-Lim rendering is an augmentation and a validation set.
        seed: of the augmentations and the solver.
    """

    def __init__(self, sample_rate: int, mel_settings: MelSettings | None = None, seed: int = 0):
        self.sample_rate = sample_rate
        self.mel_settings = mel_settings or MelSettings(sample_rate=sample_rate)
        self.seed = seed
        self.model = None

    def _features(self, waves) -> np.ndarray:
        return np.stack([speaker_features(w, self.sample_rate) for w in waves])

    def fit(self, waves: list[torch.Tensor], speakers, augment: bool = True) -> "SpeakerScorer":
        """Fit on real clips ``[T_i]`` and their speaker indices (ints), with their degraded renderings when
        ``augment``.

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
            raise ValueError("the speaker scorer needs at least two speakers")
        waves = [torch.as_tensor(w).float() for w in waves]
        sets = [waves] + ([degrade(waves, kind, self.mel_settings, self.seed + i, TRAIN_SNR_DB)
                           for i, kind in enumerate(DEGRADATIONS)] if augment else [])
        features = np.concatenate([self._features(s) for s in sets])
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0,
                                                                        random_state=self.seed))
        self.model.fit(features, np.tile(speakers, len(sets)))
        return self

    def predict(self, waves) -> np.ndarray:
        """Speaker index ``[N]`` for each waveform ``[T_i]``."""
        if self.model is None:
            raise RuntimeError("fit the speaker scorer first")
        return self.model.predict(self._features(waves))

    def accuracy(self, waves, speakers) -> float:
        """Fraction of ``waves`` assigned to their given ``speakers``."""
        return float((self.predict(waves) == np.asarray(speakers)).mean())

    def validate(self, waves: list[torch.Tensor], speakers) -> dict[str, float]:
        """Accuracy on held-out real clips ``clean`` and under each of :data:`DEGRADATIONS` at its fixed setting,
        and ``gain_agreement``: the fraction of decisions unchanged when the clips are scaled by 0.25 and by 4."""
        waves = [torch.as_tensor(w).float() for w in waves]
        clean = self.predict(waves)
        out = {"clean": float((clean == np.asarray(speakers)).mean())}
        for i, kind in enumerate(DEGRADATIONS):
            out[kind] = self.accuracy(degrade(waves, kind, self.mel_settings, self.seed + 100 + i), speakers)
        scaled = [self.predict([w * gain for w in waves]) for gain in (0.25, 4.0)]
        out["gain_agreement"] = float(np.mean([(s == clean).mean() for s in scaled]))
        return out
