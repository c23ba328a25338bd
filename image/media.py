"""Pictures the image experiment logs: image grids and the codebook-usage histogram.

Axis legend: N images, C channels, H W height and width, G codebooks, K codebook size.
"""

from __future__ import annotations

import numpy as np
import torch

from core.metrics import CodebookUsage


def image_grid(images: torch.Tensor, nrow: int) -> np.ndarray:
    """``[N, C, H, W]`` in [0, 1] → one ``[H', W', 3]`` uint8 picture, ``nrow`` images per row."""
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def usage_histogram(usage: CodebookUsage):
    """A matplotlib figure of the code counts of an evaluation pass, sorted by use (summed over codebooks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.sort(usage.counts.sum(0).numpy())[::-1]  # [K]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(np.arange(len(counts)), counts, width=1.0)
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("assignments on the held-out split")
    ax.set_title(f"codebook usage {usage.codebook_usage:.1%}, perplexity {usage.perplexity:.1f}")
    fig.tight_layout()
    return fig
