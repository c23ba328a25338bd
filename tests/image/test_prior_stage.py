"""The image experiment's prior stage: vocabulary checks, code grids, and bits/dim by hand."""

import math

import pytest
import torch

from core.checkpoint import FrozenVQVAE, check_fits
from core.config import QuantizerConfig
from image.config import ImageConfig, ImageModelConfig
from image.data import TensorImages
from image.model import ImageVQVAE
from image.prior_stage import ImagePriorTrainer
from priors.codes import extract_codes, from_prior_grid, to_prior_grid


def _vqvae(k=16, likelihood="categorical", groups=1):
    torch.manual_seed(0)
    return ImageVQVAE(ImageModelConfig(hidden_channels=8, residual_channels=4, likelihood=likelihood),
                      QuantizerConfig(codebook_size=k, code_dim=4, groups=groups)).eval()


def test_prior_refuses_a_vqvae_with_another_codebook_size_or_other_weights():
    payload = {"codebook_size": 16, "vqvae_hash": "abc", "grid": [8, 16]}
    check_fits(payload, {"codebook_size": 16, "vqvae_hash": "abc", "grid": (8, 16)})  # lists and tuples alike
    with pytest.raises(ValueError, match="prior's codebook_size \\(16\\) differs .* \\(32\\)"):
        check_fits(payload, {"codebook_size": 32, "vqvae_hash": "abc"})
    with pytest.raises(ValueError, match="prior's vqvae_hash \\(abc\\) differs .* \\(def\\)"):
        check_fits(payload, {"codebook_size": 16, "vqvae_hash": "def"})


def test_code_grids_put_the_codebooks_of_a_position_side_by_side():
    codes = torch.arange(2 * 3 * 4 * 5).view(2, 3, 4, 5)
    grid = to_prior_grid(codes)
    assert grid.shape == (2, 3, 20) and grid[0, 0, :5].tolist() == codes[0, 0, 0].tolist()
    assert torch.equal(from_prior_grid(grid, 5), codes)
    vqvae = _vqvae(groups=2)
    data = TensorImages(torch.rand(5, 3, 8, 8))
    extracted, labels = extract_codes(vqvae, data, 0, torch.device("cpu"))
    assert extracted.shape == (5, 2, 4) and labels.tolist() == [-1] * 5
    assert torch.equal(from_prior_grid(extracted, 2), vqvae.encode(data.images))


def test_bits_per_dim_equals_the_hand_computation_for_uniform_models():
    vqvae = _vqvae(k=16)
    with torch.no_grad():  # uniform decoder: every level has probability 1/256
        last = vqvae.decoder.net[-1]
        last.weight.zero_()
        last.bias.zero_()
    images = torch.rand(6, 3, 8, 8)
    data = TensorImages(images)
    codes, labels = extract_codes(vqvae, data, 0, torch.device("cpu"))
    cfg = ImageConfig()
    cfg.prior.channels, cfg.prior.num_layers = 8, 2
    cfg.train.device = "cpu"
    cfg.tracking.enabled = False
    trainer = ImagePriorTrainer(cfg, FrozenVQVAE(vqvae, cfg, "hash"), codes, labels, codes, labels, data)
    with torch.no_grad():  # uniform prior over the K = 16 codes
        for p in trainer.model.parameters():
            p.zero_()
    bits = trainer.bits_per_dim()
    dims, latents = 3 * 8 * 8, 2 * 2
    assert bits["recon_bits_per_dim"] == pytest.approx(8.0, rel=1e-6)
    assert bits["prior_bits_per_dim"] == pytest.approx(latents * math.log2(16) / dims, rel=1e-6)
    assert bits["bits_per_dim"] == pytest.approx(8.0 + latents * 4 / dims, rel=1e-6)
    assert trainer.evaluate()["nll_bits_per_code"] == pytest.approx(4.0, rel=1e-6)


def test_code_cache_is_reused_only_for_the_same_weights_and_data(tmp_path, monkeypatch):
    import priors.codes as stage

    vqvae = _vqvae()
    data = TensorImages(torch.rand(4, 3, 8, 8))
    calls = []
    real = stage.extract_codes
    monkeypatch.setattr(stage, "extract_codes", lambda *a: calls.append(1) or real(*a))
    path = tmp_path / "codes.pt"
    first = stage.cached_codes(path, vqvae, "h1", data, 4, torch.device("cpu"), "data-a")
    again = stage.cached_codes(path, vqvae, "h1", data, 4, torch.device("cpu"), "data-a")
    assert len(calls) == 1 and torch.equal(first[0], again[0])
    stage.cached_codes(path, vqvae, "h2", data, 4, torch.device("cpu"), "data-a")
    stage.cached_codes(path, vqvae, "h2", data, 4, torch.device("cpu"), "data-b")
    assert len(calls) == 3
