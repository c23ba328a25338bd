"""Whole-image reconstruction from blended half-shifted tilings, the reconstruct command's files and errors, and the labelled grids."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.config import QuantizerConfig
from core.metrics import psnr_of_mse
from image.config import ImageModelConfig
from image.media import labelled_grid, sample_grid
from image.model import ImageVQVAE
from image.reconstruct import (
    image_files,
    read_rgb,
    reconstruct_files,
    reconstruct_whole,
    side_by_side,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ImageVQVAE(ImageModelConfig(hidden_channels=8, residual_channels=4),
                      QuantizerConfig(kind="ema", codebook_size=16, code_dim=4, beta=0.25)).eval()


class _Identity(torch.nn.Module):
    """A stand-in "VQ-VAE" whose reconstruction is its input (down-sampling factor 4)."""

    side_multiple = 4

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def encode(self, x):
        return x

    def decode(self, z):
        return z


def test_the_four_half_shifted_tilings_blend_to_a_partition_of_unity():
    x = torch.rand(3, 40, 26)  # not whole tiles in either direction
    torch.testing.assert_close(reconstruct_whole(_Identity(), x, tile=16), x, atol=1e-6, rtol=0)


def test_each_pixel_is_the_triangle_weighted_average_of_the_four_tiles_over_it(model):
    x = torch.rand(3, 40, 24)
    out = reconstruct_whole(model, x, tile=16)
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    # pixel (20, 13): padded by 8, it is (28, 21); the tiles over it start at rows 16 / 24 and columns 16 / 8
    padded = F.pad(x[None], (8, 8 + 16, 8, 8 + 16), mode="replicate")[0]
    ramp = lambda i: 1 - abs(2 * (i + 0.5) / 16 - 1)  # noqa: E731
    value = torch.zeros(3)
    for top in (16, 24):
        for left in (16, 8):
            tile = padded[:, top:top + 16, left:left + 16][None]
            decoded = model.decode(model.encode(tile))[0].clamp(0, 1)
            value += decoded[:, 28 - top, 21 - left] * ramp(28 - top) * ramp(21 - left)
    torch.testing.assert_close(out[:, 20, 13], value, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="even multiple of the model's down-sampling factor 4"):
        reconstruct_whole(model, x, tile=10)


def test_reconstruct_files_writes_side_by_side_pngs_and_returns_psnr(model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 256, (20, 36, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    scores = reconstruct_files(model, folder, tmp_path / "out", tile=16)
    assert sorted(scores) == ["a.png", "b.jpg"]
    x = read_rgb(folder / "a.png")
    assert scores["a.png"] == pytest.approx(psnr_of_mse(float((reconstruct_whole(model, x, 16) - x).square().mean())))
    picture = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert picture.shape == (20, 2 * 36 + 4, 3)
    assert np.array_equal(picture[:, :36], (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    assert "a.png: PSNR" in capsys.readouterr().out
    assert not list((tmp_path / "out").glob("*.partial"))


def test_unreadable_and_missing_inputs_fail_with_the_path(model, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        reconstruct_files(model, tmp_path, tmp_path / "out", tile=16)
    assert not (tmp_path / "out").exists()  # nothing written before every file was read
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        image_files(tmp_path / "empty")


def test_labelled_grid_enlarges_by_nearest_neighbour():
    a = torch.rand(3, 3, 4, 4)
    picture = labelled_grid([("original", a), ("reconstruction", a.flip(0))], scale=4, label_width=50)
    assert picture.shape == (2 * (16 + 4), 50 + 3 * 18 + 2, 3)
    block = picture[2:6, 52:56]  # the first pixel of the first image became a 4×4 block
    assert (block == block[0, 0]).all()
    assert np.array_equal(block[0, 0], (a[0, :, 0, 0] * 255).round().to(torch.uint8).numpy())
    with pytest.raises(ValueError, match="shape of the first"):
        labelled_grid([("a", a), ("b", a[:2])])
    assert sample_grid(torch.rand(10, 3, 4, 4), per_row=8).shape[0] == 2 * (16 + 4)
    assert side_by_side(torch.zeros(3, 5, 6), torch.ones(3, 5, 6)).shape == (5, 16, 3)
