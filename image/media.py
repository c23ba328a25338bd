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


def labelled_grid(rows: list[tuple[str, torch.Tensor]], scale: int = 4, label_width: int = 110) -> np.ndarray:
    """Rows of images enlarged ``scale``× by nearest-neighbour, each row labelled on its left.

    Args:
        rows: ``(label, images [N, C, H, W] in [0, 1])`` per row; every row has the same N, H and W.
        scale: integer enlargement (nearest neighbour: every pixel becomes a ``scale × scale`` block).
        label_width: pixels of the label column.

    Returns:
        ``[H', W', 3]`` uint8 picture.

    Raises:
        ValueError: for no rows, rows of different shapes, or ``scale < 1``.
    """
    from PIL import Image, ImageDraw

    if not rows or scale < 1:
        raise ValueError("labelled_grid needs at least one row and scale >= 1")
    shape = rows[0][1].shape
    if any(images.shape != shape for _, images in rows):
        raise ValueError(f"all rows must have the shape of the first, {tuple(shape)}")
    pictures = [image_grid(images.repeat_interleave(scale, -1).repeat_interleave(scale, -2), nrow=shape[0])
                for _, images in rows]
    height, width = pictures[0].shape[:2]
    canvas = Image.new("RGB", (label_width + width, height * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, ((label, _), picture) in enumerate(zip(rows, pictures)):
        canvas.paste(Image.fromarray(picture), (label_width, i * height))
        draw.multiline_text((4, i * height + height // 2 - 12), label, fill="black")
    return np.asarray(canvas)


def kept_levels(level_names: tuple[str, ...], keep: int) -> str:
    """The label of a decode from the top ``keep`` levels: ``("bottom", "top"), 1`` → ``"top"``, 2 → ``"top+bottom"``."""
    return "+".join(reversed(level_names[-keep:]))


def progressive_grid(name: str, x: torch.Tensor, reconstructions: list[torch.Tensor],
                     level_names: tuple[str, ...]) -> np.ndarray:
    """The hierarchical model's progressive reconstructions (VQ-VAE-2's Fig. 3) as a labelled grid: the
    originals, then the reconstruction from the top level alone, the top two, …, all levels, each row labelled with
    its pooled PSNR (dB) on the images shown.

    Args:
        name: the held-out set's name (row labels).
        x: ``[N, C, H, W]`` originals in [0, 1].
        reconstructions: ``[N, C, H, W]`` per number of top levels kept (1 … L), as
            :meth:`image.hierarchy.HierarchicalVQVAE.progressive` returns them.
        level_names: the model's level names, bottom first.
    """
    from core.metrics import psnr_of_mse

    rows = [(f"{name}\noriginal", x.cpu())]
    for keep, x_hat in enumerate(reconstructions, start=1):
        kept = kept_levels(level_names, keep)
        mse = float((x_hat.cpu() - x.cpu()).square().mean())
        rows.append((f"{kept}\n{psnr_of_mse(mse):.2f} dB", x_hat.cpu()))
    return labelled_grid(rows)


def levels_grid(decodes: list[torch.Tensor], level_names: tuple[str, ...], scale: int = 4) -> np.ndarray:
    """The same codes decoded from the top level alone, the top two, …, every level, one row each labelled with the
    levels kept (``top``, ``top+bottom``), enlarged ``scale``×.

    Args:
        decodes: ``[N, C, H, W]`` in [0, 1] per number of top levels kept (1 … L).
        level_names: the model's level names, bottom first (L names).

    Raises:
        ValueError: if ``len(decodes) != len(level_names)`` (or as :func:`labelled_grid`).
    """
    if len(decodes) != len(level_names):
        raise ValueError(f"need one decode per level ({len(level_names)}), got {len(decodes)}")
    return labelled_grid([(f"samples:\n{kept_levels(level_names, keep)}", x.cpu())
                          for keep, x in enumerate(decodes, start=1)], scale=scale)


def sample_grid(images: torch.Tensor, per_row: int = 8, scale: int = 4) -> np.ndarray:
    """``[N, C, H, W]`` samples in rows of ``per_row``, enlarged ``scale``× and labelled "samples i–j" (a short
    last row is filled with white)."""
    n = images.shape[0]
    fill = (-n) % per_row
    images = torch.cat([images.cpu(), torch.ones(fill, *images.shape[1:])]) if fill else images.cpu()
    return labelled_grid([(f"samples {i + 1}-{min(i + per_row, n)}", images[i:i + per_row])
                          for i in range(0, n, per_row)], scale=scale)
