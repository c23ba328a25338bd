"""How generated futures are scored: per frame, per window set, per sampling protocol.

Definitions (every ``generate/*`` curve of the video job; step i = generated frame i, 1 … F):

* **frame scores** ``[N, F]``: PSNR in dB on the [0, 1] scale of each generated frame against the true frame, its MSE
  floored at the 8-bit rounding noise ``MSE_FLOOR`` (identical frames score 58.9 dB, not infinity), and SSIM
  (``skimage.metrics.structural_similarity`` over the RGB channels, data range 255, 7×7 window or the largest odd
  window that fits);
* **step sets**: *all* generated steps of the held-out windows; *moving* steps, where the true transition into the
  step's frame (the last given frame → true frame 1, true frame i − 1 → i) changes the view: the two frames' mean
  absolute difference exceeds ``moving_min_change`` 8-bit levels (config); *still* steps, the others (on MiniWorld:
  a step forward into a wall). The sets come from consecutive true frames alone, not from any prediction's score;
  repeating the last given frame is not exact on still steps after the view moved earlier in the window;
* **curve**: the mean over the windows of a set at each step ``[F]`` (NaN at a step where the set has none);
* **protocols** for S sampled rollouts per window: the headline is **one try**, the expected score of a single
  rollout: every sample is scored on its own against the truth, and the scores (not the frames) are averaged over
  the S samples and the windows. *Oracle best of S* (``_oracle_best_of_S``) keeps, per window, the sample with the
  highest mean score over the F steps, chosen with the true frames (by PSNR for the PSNR curve and by SSIM for the
  SSIM curve): it is an oracle, set only beside other predictions under the same oracle, never beside a one-try
  baseline. Deterministic predictions (copy-last, the VQ-VAE's reconstruction) have one try.

Axis legend: S samples, N windows, F generated frames, H W frame size, 3 RGB channels.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

# The MSE of 8-bit rounding, (1/255)²/12: identical frames (an agent walking into a wall does not move) score the
# PSNR of quantisation noise, 58.9 dB, instead of an unbounded value that would swamp the average over windows.
MSE_FLOOR = (1.0 / 255) ** 2 / 12


def frame_psnr(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """PSNR (dB) of every frame: ``[..., H, W, 3]`` uint8 pairs → ``[...]`` (MSE floored at ``MSE_FLOOR``)."""
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch: {pred.shape} vs {truth.shape}")
    diff = (pred.astype(np.float64) - truth.astype(np.float64)) / 255
    mse = np.maximum((diff ** 2).reshape(*pred.shape[:-3], -1).mean(-1), MSE_FLOOR)
    return -10 * np.log10(mse)


def frame_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """``{"psnr": [N, F], "ssim": [N, F]}`` of ``pred`` against ``truth`` (both ``[N, F, H, W, 3]`` uint8).

    Raises:
        ValueError: for different shapes.
    """
    psnr = frame_psnr(pred, truth)
    n, f, height, width = pred.shape[:4]
    win = min(7, height, width)
    win -= 1 - win % 2  # odd
    ssim = np.array([[structural_similarity(truth[i, j], pred[i, j], channel_axis=-1, data_range=255, win_size=win)
                      for j in range(f)] for i in range(n)]).reshape(n, f)
    return {"psnr": psnr, "ssim": ssim}


def moving_steps(last_given: np.ndarray, truth: np.ndarray, min_change: float) -> np.ndarray:
    """``[N, F]`` bool: the true transition into each generated step's frame changes the view by more than
    ``min_change`` levels (mean absolute difference on the 0–255 scale) — ``last_given`` ``[N, H, W, 3]``, ``truth``
    ``[N, F, H, W, 3]``."""
    frames = np.concatenate([last_given[:, None], truth], axis=1).astype(np.int16)
    change = np.abs(np.diff(frames, axis=1)).reshape(*truth.shape[:2], -1).mean(-1)  # [N, F]
    return change > min_change


def curve(scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-step mean ``[F]`` of ``scores`` ``[N, F]`` over the windows, only where ``mask`` ``[N, F]`` holds
    (NaN at a step no window passes)."""
    if mask is None:
        return scores.mean(0)
    counts = mask.sum(0)
    sums = np.where(mask, scores, 0.0).sum(0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def best_of(samples: np.ndarray) -> np.ndarray:
    """Per window, the sample with the highest mean over the steps: ``[S, N, F]`` → ``[N, F]``."""
    best = samples.mean(2).argmax(0)  # [N]
    return samples[best, np.arange(samples.shape[1])]


def protocol_curves(name: str, samples: dict[str, np.ndarray], moving: np.ndarray) -> dict[str, np.ndarray]:
    """Curves of one prediction under every protocol and window set.

    Args:
        name: the prediction's name (``true_actions``, ``copy_last``, …).
        samples: ``{"psnr": [S, N, F], "ssim": [S, N, F]}`` frame scores of S samples (S = 1: deterministic).
        moving: ``[N, F]`` from :func:`moving_steps`.

    Returns:
        ``{"<metric>_<name>": one try on all steps, "moving/<metric>_<name>", "still/<metric>_<name>": on the moving
        and the still steps, and for S > 1 the same keys with ``_oracle_best_of_<S>``}``, each ``[F]``.
    """
    out: dict[str, np.ndarray] = {}
    for metric, scores in samples.items():
        per_protocol = {"": scores.mean(0)}  # per-sample scores averaged: the expected score of one try
        if scores.shape[0] > 1:
            per_protocol[f"_oracle_best_of_{scores.shape[0]}"] = best_of(scores)
        for suffix, per_window in per_protocol.items():
            out[f"{metric}_{name}{suffix}"] = curve(per_window)
            out[f"moving/{metric}_{name}{suffix}"] = curve(per_window, moving)
            out[f"still/{metric}_{name}{suffix}"] = curve(per_window, ~moving)
    return out
