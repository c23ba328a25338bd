"""``decode(encode(x))`` of whole photographs in one convolutional pass (window by window, without seams): the
``reconstruct`` stage and the full-image pictures.

``python experiments/run.py image --stage reconstruct --input PATH_OR_FOLDER`` reads every image file at the path
(a file, or the images directly inside a folder), reconstructs it with the run's trained VQ-VAE, writes
``<output_dir>/reconstruct/<name>.png`` (original left, reconstruction right) and prints the PSNR per image.

Axis legend: C channels (3, RGB), H W image height and width, T block side (the training crop size), m margin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.files import atomic_write
from core.metrics import psnr_of_mse
from image.data import load_rgb, to_tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm")
TILE_BATCH = 256


def read_rgb(path: Path) -> torch.Tensor:
    """The image at ``path`` as ``[3, H, W]`` float32 in [0, 1].

    Raises:
        ValueError: naming ``path`` if it cannot be read as an image.
    """
    return to_tensor(np.asarray(load_rgb(str(path)), dtype=np.uint8))


def image_files(path: str | Path) -> list[Path]:
    """The image file ``path``, or the files with an image suffix directly inside folder ``path``, sorted.

    Raises:
        FileNotFoundError: if ``path`` does not exist or a folder holds no image file.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"--input {path} does not exist")
    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
    return files


@torch.no_grad()
def reconstruct_whole(model, x: torch.Tensor, tile: int, margin: int | None = None) -> torch.Tensor:
    """Reconstruction of one whole image ``x: [3, H, W]`` in [0, 1] as one convolutional pass over the image,
    computed window by window to bound memory; clamped to [0, 1], same shape.

    Each ``tile × tile`` block of the output comes from a window that extends ``margin`` pixels beyond it on every
    side (default ``tile``; the image's edges are replicated outward), whose centre is kept: windows start on the
    model's down-sampling grid, so every window sees the codes the whole image would have there, and where
    ``margin`` covers the encoder's and decoder's receptive fields the result equals one pass over the whole image
    (up to float rounding) — no seams at the block edges.

    Raises:
        ValueError: if ``tile`` or ``margin`` is not a multiple of the model's down-sampling factor.
    """
    margin = tile if margin is None else margin
    f = model.side_multiple
    if tile % f or margin % f:
        raise ValueError(f"tile {tile} and margin {margin} must be multiples of the model's down-sampling factor {f}")
    c, h, w = x.shape
    rows, cols = -(-h // tile), -(-w // tile)
    device = next(model.parameters()).device
    padded = F.pad(x[None], (margin, cols * tile - w + margin, margin, rows * tile - h + margin),
                   mode="replicate")[0]  # [C, rows·T + 2m, cols·T + 2m]
    side = tile + 2 * margin
    windows = padded.unfold(1, side, tile).unfold(2, side, tile)  # [C, rows, cols, T + 2m, T + 2m]
    windows = windows.permute(1, 2, 0, 3, 4).reshape(-1, c, side, side)  # [rows·cols, C, T + 2m, T + 2m]
    batch = max(1, TILE_BATCH * tile * tile // (side * side))
    out = torch.cat([model.decode(model.encode(windows[i:i + batch].to(device)))[..., margin:margin + tile,
                                                                             margin:margin + tile].clamp(0, 1).cpu()
                     for i in range(0, len(windows), batch)])  # [rows·cols, C, T, T]
    out = out.reshape(rows, cols, c, tile, tile).permute(2, 0, 3, 1, 4).reshape(c, rows * tile, cols * tile)
    return out[:, :h, :w]


def side_by_side(x: torch.Tensor, x_hat: torch.Tensor, gap: int = 4) -> np.ndarray:
    """``[3, H, W]`` original and reconstruction → one ``[H, 2W + gap, 3]`` uint8 picture (white gap)."""
    white = torch.ones(x.shape[0], x.shape[1], gap)
    both = torch.cat([x, white, x_hat], dim=2)
    return (both.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def reconstruct_files(model, path: str | Path, out_dir: Path, tile: int) -> dict[str, float]:
    """Reconstruct every image at ``path`` (see :func:`image_files`), write the side-by-side PNGs into ``out_dir``
    and print one line per image; returns ``{name: PSNR in dB}`` (PSNR of the image's MSE, [0, 1] scale).

    All files are read before any work is spent, so an unreadable one stops the command at once.

    Raises:
        FileNotFoundError: see :func:`image_files`.
        ValueError: naming the first file that cannot be read.
    """
    files = image_files(path)
    images = [read_rgb(f) for f in files]
    scores = {}
    for f, x in zip(files, images):
        x_hat = reconstruct_whole(model, x, tile)
        scores[f.name] = psnr_of_mse(float((x_hat - x).square().mean()))
        target = out_dir / f"{f.stem}.png"
        picture = Image.fromarray(side_by_side(x, x_hat))
        atomic_write(target, lambda handle: picture.save(handle, format="PNG"))
        print(f"{f.name}: PSNR {scores[f.name]:.2f} dB ({x.shape[2]}×{x.shape[1]} px) → {target}")
    return scores
