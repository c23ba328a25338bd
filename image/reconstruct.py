"""``decode(encode(x))`` of whole photographs without a tile grid (tiles in four half-shifted tilings, blended):
the ``reconstruct`` stage and the full-image pictures.

``python experiments/run.py image --stage reconstruct --input PATH_OR_FOLDER`` reads every image file at the path
(a file, or the images directly inside a folder), reconstructs it with the run's trained VQ-VAE, writes
``<output_dir>/reconstruct/<name>.png`` (original left, reconstruction right) and prints the PSNR per image.

Axis legend: C channels (3, RGB), H W image height and width, T tile side (the training crop size).
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


def _tile_weight(tile: int) -> torch.Tensor:
    """``[T, T]`` product of triangles peaking at the tile's centre: copies shifted by half a tile sum to 1."""
    i = torch.arange(tile, dtype=torch.float32)
    ramp = 1.0 - (2.0 * (i + 0.5) / tile - 1.0).abs()  # [T]
    return ramp[:, None] * ramp[None, :]


@torch.no_grad()
def _tiles_decoded(model, region: torch.Tensor, tile: int, device) -> torch.Tensor:
    """``decode(encode(·))`` of every ``tile × tile`` tile of ``region [C, r·T, c·T]``, clamped to [0, 1], put back in
    place: ``[C, r·T, c·T]``."""
    c, height, width = region.shape
    rows, cols = height // tile, width // tile
    tiles = region.unfold(1, tile, tile).unfold(2, tile, tile)  # [C, rows, cols, T, T]
    tiles = tiles.permute(1, 2, 0, 3, 4).reshape(-1, c, tile, tile)  # [rows·cols, C, T, T]
    out = torch.cat([model.decode(model.encode(tiles[i:i + TILE_BATCH].to(device))).clamp(0, 1).cpu()
                     for i in range(0, len(tiles), TILE_BATCH)])
    return out.reshape(rows, cols, c, tile, tile).permute(2, 0, 3, 1, 4).reshape(c, height, width)


@torch.no_grad()
def reconstruct_whole(model, x: torch.Tensor, tile: int) -> torch.Tensor:
    """Reconstruction of one whole image ``x: [3, H, W]`` in [0, 1] without a tile grid; same shape, in [0, 1].

    The model sees ``tile × tile`` tiles, as in training, in four tilings shifted by half a tile (0 or T/2 down and
    across); every pixel is the average of the four tiles that cover it, weighted by a triangle in each direction
    that peaks at the tile's centre and vanishes at its edges (the four weights sum to 1). A tile's edge, where its
    reconstruction is least sure of its context, so carries no weight, and no seam is left (each tiling's seams fall
    where the others' tiles are centred). The image's edges are replicated outward by half a tile.

    Raises:
        ValueError: if ``tile`` is not an even multiple of the model's down-sampling factor.
    """
    f = model.side_multiple
    if tile % f or tile % 2:
        raise ValueError(f"tile {tile} must be an even multiple of the model's down-sampling factor {f}")
    c, h, w = x.shape
    half = tile // 2
    device = next(model.parameters()).device
    rows, cols = -(-(h + half) // tile) + 1, -(-(w + half) // tile) + 1  # tiles of the unshifted tiling
    padded = F.pad(x[None], (half, cols * tile - w - half, half, rows * tile - h - half), mode="replicate")[0]
    weight = _tile_weight(tile)
    total = torch.zeros(c, rows * tile, cols * tile)
    for dy in (0, half):
        for dx in (0, half):
            region = padded[:, dy:, dx:]  # whole tiles of this tiling: rows (or rows − 1) by cols (or cols − 1)
            r, k = region.shape[1] // tile, region.shape[2] // tile
            region = region[:, :r * tile, :k * tile]
            total[:, dy:dy + r * tile, dx:dx + k * tile] += _tiles_decoded(model, region, tile, device) * \
                weight.repeat(r, k)
    return total[:, half:half + h, half:half + w].clamp(0, 1)


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
