"""Pictures the image experiment logs: image grids (the codebook-usage histogram lives in :mod:`core.media`).

Axis legend: N images, C channels, H W height and width, G codebooks, K codebook size.
"""

from __future__ import annotations

import numpy as np
import torch

from core.media import usage_histogram  # noqa: F401  (re-exported for the image stages)


def image_grid(images: torch.Tensor, nrow: int) -> np.ndarray:
    """``[N, C, H, W]`` in [0, 1] → one ``[H', W', 3]`` uint8 picture, ``nrow`` images per row."""
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
