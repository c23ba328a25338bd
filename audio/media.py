"""What the audio experiment logs besides metrics: playable wav files and spectrogram plots.

Axis legend: T waveform samples, M mel bands, F frames.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from audio.io import write_audio


def log_wavs(tracker, waves: dict[str, torch.Tensor], sample_rate: int, artifact_path: str) -> None:
    """Write each ``name → [T]`` waveform as ``<artifact_path>/<name>.wav`` into the run's artifacts."""
    if tracker is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, wave in waves.items():
            path = write_audio(Path(tmp) / f"{name}.wav", wave.detach().cpu(), sample_rate)
            tracker.log_artifact(path, artifact_path)


def spectrogram_figure(waves: dict[str, torch.Tensor], sample_rate: int, title: str = ""):
    """A matplotlib figure with one log-mel spectrogram per ``name → [T]`` waveform, stacked vertically."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(waves), 1, figsize=(9, 1.9 * len(waves)), squeeze=False)
    for ax, (name, wave) in zip(axes[:, 0], waves.items()):
        w = wave.detach().cpu().numpy().astype(np.float32)
        mel = librosa.feature.melspectrogram(y=w, sr=sample_rate, n_fft=1024, hop_length=160, n_mels=80)  # [M, F]
        db = librosa.power_to_db(mel, ref=1.0, top_db=80.0)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                  extent=(0.0, len(w) / sample_rate, 0.0, mel.shape[0]))
        ax.set_ylabel("mel band")
        ax.set_title(name, fontsize=9)
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def log_audio_comparison(tracker, waves: dict[str, torch.Tensor], sample_rate: int, artifact_path: str,
                         title: str = "") -> None:
    """The wav files and one spectrogram plot of them under ``artifact_path``."""
    if tracker is None:
        return
    import matplotlib.pyplot as plt

    log_wavs(tracker, waves, sample_rate, artifact_path)
    fig = spectrogram_figure(waves, sample_rate, title)
    tracker.log_figure(fig, f"{artifact_path}/spectrograms.png")
    plt.close(fig)
