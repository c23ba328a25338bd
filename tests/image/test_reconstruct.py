"""Whole-image reconstruction window by window, the reconstruct command's files and errors, and the labelled grids."""

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


def test_window_by_window_equals_one_pass_over_the_whole_image(model):
    x = torch.rand(3, 40, 24)  # 3 × 2 blocks of 16 after padding: 40 → 48 rows, 24 → 32 columns
    out = reconstruct_whole(model, x, tile=16, margin=32)
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    # one pass over the whole image (its edges replicated outward as the windows see them): no seams
    padded = F.pad(x[None], (32, 32 + 8, 32, 32 + 8), mode="replicate")
    whole = model.decode(model.encode(padded))[0, :, 32:32 + 40, 32:32 + 24].clamp(0, 1)
    torch.testing.assert_close(out, whole, atol=1e-5, rtol=0)
    # blocks encoded alone (no margin) are not the whole pass: the margin is what removes the seams
    alone = reconstruct_whole(model, x, tile=16, margin=0)
    assert (alone - whole).abs().max() > 1e-2
    with pytest.raises(ValueError, match="multiples of the model's down-sampling factor 4"):
        reconstruct_whole(model, x, tile=10)
    with pytest.raises(ValueError, match="multiples of the model's down-sampling factor 4"):
        reconstruct_whole(model, x, tile=16, margin=6)


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
