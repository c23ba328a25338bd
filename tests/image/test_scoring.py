"""Held-out scores: pooled against per-image PSNR, and the bicubic baseline, against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from core.config import QuantizerConfig
from image.config import ImageModelConfig
from image.data import TensorImages
from image.model import ImageVQVAE
from image.scoring import bicubic_resample, score_reconstructions


def test_bicubic_keeps_constant_images_and_loses_detail_above_its_band():
    flat = torch.full((2, 3, 32, 32), 0.3)
    assert torch.allclose(bicubic_resample(flat, 4), flat, atol=1e-6)
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2  # finest pattern: gone after ×4 down
    x = checker.float().expand(1, 3, 32, 32).contiguous()
    assert bicubic_resample(x, 4).std() < 0.05
    with pytest.raises(ValueError, match="divisible by the factor 4"):
        bicubic_resample(torch.zeros(1, 3, 30, 32), 4)


def test_pooled_and_per_image_psnr_and_bicubic_match_the_hand_computation():
    torch.manual_seed(0)
    model = ImageVQVAE(ImageModelConfig(hidden_channels=8, residual_channels=4),
                       QuantizerConfig(kind="ema", codebook_size=16, code_dim=4, beta=0.25)).eval()
    x = torch.rand(10, 3, 16, 16)
    x[:5] = x[:5] * 0.1 + 0.45  # half nearly flat: pooled and per-image PSNR differ
    scores, usage = score_reconstructions(model, TensorImages(x), torch.device("cpu"), data_variance=0.05)
    with torch.no_grad():
        x_hat = model(x).x_hat.clamp(0, 1)
    per_item = (x_hat - x).square().flatten(1).mean(1)
    assert scores["mse"] == pytest.approx(float(per_item.mean()), rel=1e-5)
    assert scores["psnr"] == pytest.approx(10 * math.log10(1 / float(per_item.mean())), rel=1e-5)
    assert scores["psnr_per_image"] == pytest.approx(float((10 * torch.log10(1 / per_item)).mean()), rel=1e-5)
    assert scores["nmse"] == pytest.approx(scores["mse"] / 0.05)
    small = F.interpolate(x, size=(4, 4), mode="bicubic", antialias=True)
    up = F.interpolate(small, size=(16, 16), mode="bicubic").clamp(0, 1)
    assert scores["bicubic_psnr"] == pytest.approx(10 * math.log10(1 / float((up - x).square().mean())), rel=1e-5)
    assert usage[""].summary()["perplexity"] == scores["perplexity"]
    with pytest.raises(ValueError, match="empty held-out set"):
        score_reconstructions(model, TensorImages(x[:0]), torch.device("cpu"), 0.05)


def test_top_code_swap_scores_the_reconstruction_from_another_items_top_codes():
    from image.hierarchy import HierarchicalVQVAE

    torch.manual_seed(0)
    model = HierarchicalVQVAE(ImageModelConfig(hidden_channels=8, residual_channels=4),
                              QuantizerConfig(kind="ema", codebook_size=16, code_dim=4), levels=2).eval()
    x = torch.rand(6, 3, 16, 16)
    scores, _ = score_reconstructions(model, TensorImages(x), torch.device("cpu"), data_variance=0.05)
    with torch.no_grad():  # brute force: item i decoded with its bottom codes and item (i − 3)'s top codes
        bottom, top = model.encode(x)
        swapped = torch.stack([model.decode([bottom[i:i + 1], top[(i - 3) % 6:(i - 3) % 6 + 1]])[0]
                               for i in range(6)]).clamp(0, 1)
    mse = float((swapped - x).square().mean())
    assert scores["top/swap_psnr"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
    assert scores["top/swap_psnr_drop"] == pytest.approx(scores["psnr"] - scores["top/swap_psnr"])
    same, _ = score_reconstructions(model, TensorImages(x[:1].expand(4, -1, -1, -1)), torch.device("cpu"), 0.05)
    assert same["top/swap_psnr_drop"] == pytest.approx(0.0, abs=1e-9)  # swapping equal items changes nothing
    assert "top/swap_psnr" not in score_reconstructions(
        ImageVQVAE(ImageModelConfig(hidden_channels=8, residual_channels=4),
                   QuantizerConfig(kind="ema", codebook_size=16, code_dim=4)).eval(),
        TensorImages(x), torch.device("cpu"), 0.05)[0]
