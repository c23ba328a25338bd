"""Pictures the video experiment logs: static strips and animated gifs of generated rollouts.

Strip (PNG), per example three rows: the given context frames | the generated frames | the ground truth.
Gif, one frame per time step: per example the model's view (the given frames, then the generated ones) beside the
ground truth; a green border marks real frames, a red border generated ones.

Axis legend: N examples, G given frames, F generated frames, H W frame size, 3 RGB channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PAD = 2
REAL, GENERATED, BLANK = (40, 200, 60), (220, 40, 40), (255, 255, 255)


def _upscale(frames: np.ndarray, min_side: int = 64) -> np.ndarray:
    """Nearest-neighbour upscale ``[..., H, W, 3]`` so that small frames stay visible."""
    scale = max(1, -(-min_side // frames.shape[-2]))
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)


def _bordered(frame: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """``[H, W, 3]`` → ``[H + 2·PAD, W + 2·PAD, 3]`` with a coloured border."""
    out = np.empty((frame.shape[0] + 2 * PAD, frame.shape[1] + 2 * PAD, 3), np.uint8)
    out[:] = colour
    out[PAD:-PAD, PAD:-PAD] = frame
    return out


def strip(given: np.ndarray, generated: np.ndarray, truth: np.ndarray | None,
          shuffled: np.ndarray | None = None) -> np.ndarray:
    """One ``[rows·(H+2·PAD), max(G, F)·(W+2·PAD), 3]`` uint8 picture: per example the rows context | generated |
    ground truth (left out when the truth is unknown) | generated under shuffled actions (when given).

    Args:
        given: ``[N, G, H, W, 3]`` uint8.
        generated: ``[N, F, H, W, 3]`` uint8.
        truth: ``[N, F, H, W, 3]`` uint8 or None.
        shuffled: ``[N, F, H, W, 3]`` uint8 or None.
    """
    given, generated = _upscale(given), _upscale(generated)
    truth = None if truth is None else _upscale(truth)
    shuffled = None if shuffled is None else _upscale(shuffled)
    width = max(given.shape[1], generated.shape[1])
    blank = np.full(given.shape[2:], 255, np.uint8)

    def row(frames, colour):
        cells = [_bordered(x, colour) for x in frames] + [_bordered(blank, BLANK)] * (width - len(frames))
        return np.concatenate(cells, axis=1)

    rows = []
    for i in range(len(given)):
        rows += [row(given[i], REAL), row(generated[i], GENERATED)]
        if truth is not None:
            rows.append(row(truth[i], REAL))
        if shuffled is not None:
            rows.append(row(shuffled[i], GENERATED))
    return np.concatenate(rows, axis=0)


def gif_frames(given: np.ndarray, generated: np.ndarray, truth: np.ndarray | None,
               shuffled: np.ndarray | None = None) -> list[np.ndarray]:
    """The G + F pictures of the animation: examples stacked vertically, each ``model | ground truth`` (and
    ``| model under shuffled actions`` when ``shuffled`` is given).

    During the first G steps every column shows the given frames; then the model columns show the generated frames
    (red border) and the other the true future (green; white when unknown).
    """
    given, generated = _upscale(given), _upscale(generated)
    truth = None if truth is None else _upscale(truth)
    shuffled = None if shuffled is None else _upscale(shuffled)
    blank = np.full(given.shape[2:], 255, np.uint8)
    pictures = []
    for t in range(given.shape[1] + generated.shape[1]):
        rows = []
        for i in range(len(given)):
            if t < given.shape[1]:
                cells = [_bordered(given[i, t], REAL)] * (2 if shuffled is None else 3)
            else:
                j = t - given.shape[1]
                cells = [_bordered(generated[i, j], GENERATED),
                         _bordered(truth[i, j], REAL) if truth is not None else _bordered(blank, BLANK)]
                if shuffled is not None:
                    cells.append(_bordered(shuffled[i, j], GENERATED))
            rows.append(np.concatenate(cells, axis=1))
        pictures.append(np.concatenate(rows, axis=0))
    return pictures


def write_gif(pictures: list[np.ndarray], path: str | Path, frame_ms: int = 250) -> Path:
    """Write ``[H, W, 3]`` uint8 pictures as a looping gif (the last picture held longer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(p) for p in pictures]
    durations = [frame_ms] * (len(images) - 1) + [frame_ms * 4]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path


# (curve name without the metric, label) of the per-step plot, all one try: (a) model, true actions; (b) shuffled
# actions; (c) repeat the last given frame; (d) the frame VQ-VAE's reconstruction of the truth (the ceiling). The
# oracle best-of-S curves are metrics only: an oracle is never drawn beside a one-try baseline.
PLOTTED = (("true_actions", "true actions (one try)"), ("shuffled_actions", "shuffled actions (one try)"),
           ("copy_last", "repeat last given frame"),
           ("vqvae_recon", "VQ-VAE reconstruction of the truth"))


def curves_figure(curves: dict[str, np.ndarray], metric: str):
    """A matplotlib figure of ``metric`` (``psnr`` or ``ssim``) against the generated step on all steps of the
    held-out windows, the moving and the still steps, one line per prediction of ``PLOTTED`` that ``curves`` holds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    for ax, prefix, title in zip(axes, ("", "moving/", "still/"),
                                 ("all held-out windows", "moving steps", "still steps")):
        for name, label in PLOTTED:
            key = f"{prefix}{metric}_{name}"
            if key in curves:
                values = curves[key]
                ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("generated frame")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(confusions: dict[str, np.ndarray], action_names: list[str]):
    """One panel per condition: the action scorer's confusion counts (rows: the action taken or commanded; columns:
    the scorer's answer), drawn with scikit-learn's ``ConfusionMatrixDisplay``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, axes = plt.subplots(1, len(confusions), figsize=(4.5 * len(confusions), 4.2), squeeze=False)
    for ax, (title, counts) in zip(axes[0], confusions.items()):
        ConfusionMatrixDisplay(counts, display_labels=action_names).plot(ax=ax, colorbar=False, xticks_rotation=30)
        accuracy = np.trace(counts) / max(counts.sum(), 1)
        ax.set_title(f"{title}: {accuracy:.1%} of {counts.sum()}", fontsize=9)
        ax.set_ylabel("commanded / taken")
        ax.set_xlabel("scored")
    fig.tight_layout()
    return fig
