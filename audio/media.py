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


def spectrogram_figure(waves: dict[str, torch.Tensor], sample_rate: int, title: str = "", columns: bool = False,
                       labels: list[str] | None = None):
    """A matplotlib figure with one log-mel spectrogram per ``name → [T]`` waveform, stacked vertically, or side by
    side with ``columns``; ``labels`` replace the names as panel titles."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(waves)
    fig, axes = plt.subplots(1 if columns else n, n if columns else 1,
                             figsize=(4.2 * n, 2.6) if columns else (9, 1.9 * n), squeeze=False)
    axes = axes.reshape(-1)
    for ax, (name, wave), label in zip(axes, waves.items(), labels or list(waves)):
        w = wave.detach().cpu().numpy().astype(np.float32)
        mel = librosa.feature.melspectrogram(y=w, sr=sample_rate, n_fft=1024, hop_length=160, n_mels=80)  # [M, F]
        db = librosa.power_to_db(mel, ref=1.0, top_db=80.0)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                  extent=(0.0, len(w) / sample_rate, 0.0, mel.shape[0]))
        ax.set_ylabel("mel band")
        ax.set_title(label, fontsize=9)
    for ax in axes[-n:] if columns else axes[-1:]:
        ax.set_xlabel("seconds")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def log_audio_comparison(tracker, waves: dict[str, torch.Tensor], sample_rate: int, artifact_path: str,
                         title: str = "", columns: bool = False, labels: list[str] | None = None) -> None:
    """The wav files (named by the keys of ``waves``) and one spectrogram plot of them under ``artifact_path``
    (arguments of :func:`spectrogram_figure`)."""
    if tracker is None:
        return
    import matplotlib.pyplot as plt

    log_wavs(tracker, waves, sample_rate, artifact_path)
    fig = spectrogram_figure(waves, sample_rate, title, columns, labels)
    tracker.log_figure(fig, f"{artifact_path}/spectrograms.png")
    plt.close(fig)
