"""The hierarchical prior stage: codes of every level, bits/dim over every level by hand, samples and refusals."""

import math

import numpy as np
import pytest
import torch

from core.checkpoint import FrozenVQVAE
from core.config import QuantizerConfig
from image.config import ImageConfig, ImageModelConfig
from image.data import TensorImages
from image.hierarchy import HierarchicalVQVAE
from image.hierarchical_prior_stage import (
    HierarchicalPriorTrainer,
    level_codes,
    levels_picture,
    sample_hierarchical,
    sample_hierarchical_codes,
)
from image.media import levels_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def _vqvae():
    torch.manual_seed(0)
    model = HierarchicalVQVAE(ImageModelConfig(hidden_channels=8, residual_channels=4, num_residual_blocks=1),
                              QuantizerConfig(codebook_size=16, code_dim=4), levels=2).eval()
    with torch.no_grad():  # decoder mean 0.5 everywhere, σ → 0: levels 127 and 128 get half the mass each
        model.decoder.net[-1].weight.zero_()
        model.decoder.net[-1].bias.zero_()
        model.pixel_log_sigma.fill_(-12.0)
    return model


def _trainer(tmp_path, vqvae, data, attention=0):
    codes, labels = level_codes(tmp_path / "codes.pt", vqvae, "hash", data, len(data), torch.device("cpu"))
    cfg = ImageConfig()
    cfg.prior.channels, cfg.prior.num_layers = 8, 2
    cfg.prior.top_attention_blocks, cfg.prior.attention_heads = attention, 2
    cfg.train.device, cfg.train.output_dir = "cpu", str(tmp_path / "out")
    cfg.tracking.enabled = False
    return HierarchicalPriorTrainer(cfg, FrozenVQVAE(vqvae, cfg, "hash"), codes, labels, codes, labels, data), codes


def test_codes_of_every_level_and_bits_per_dim_by_hand_for_uniform_models(tmp_path):
    vqvae = _vqvae()
    data = TensorImages(torch.randint(127, 129, (6, 3, 32, 32)).float() / 255)
    trainer, codes = _trainer(tmp_path, vqvae, data, attention=1)
    assert [tuple(c.shape) for c in codes] == [(6, 8, 8), (6, 4, 4)]
    for mine, theirs in zip(codes, vqvae.encode(data.images)):
        assert torch.equal(mine, theirs)
    with torch.no_grad():  # uniform priors over the K = 16 codes at every level
        for p in trainer.model.parameters():
            p.zero_()
    bits = trainer.final_metrics()
    dims = 3 * 32 * 32
    assert bits["recon_bits_per_dim"] == pytest.approx(1.0, rel=1e-5)
    assert bits["bottom/prior_bits_per_dim"] == pytest.approx(64 * 4 / dims, rel=1e-6)
    assert bits["top/prior_bits_per_dim"] == pytest.approx(16 * 4 / dims, rel=1e-6)
    assert bits["bits_per_dim"] == pytest.approx(1.0 + 80 * 4 / dims, rel=1e-5)
    scores = trainer.evaluate()
    assert scores["top/nll_bits_per_code"] == pytest.approx(4.0) and scores["nll_bits_per_code"] == pytest.approx(4.0)
    terms = trainer.compute_loss((*codes, torch.full((6,), -1)))
    assert float(terms["loss"].detach()) == pytest.approx(2 * math.log(16), rel=1e-6)  # nats per code, Σ over levels


def test_samples_are_drawn_top_down_and_decoded(tmp_path):
    vqvae = _vqvae()
    data = TensorImages(torch.rand(4, 3, 32, 32))
    trainer, _ = _trainer(tmp_path, vqvae, data)
    images = sample_hierarchical(trainer.model.eval(), vqvae, trainer.grids, 3, 0, 1.0, 0, torch.device("cpu"))
    assert images.shape == (3, 3, 32, 32) and 0 <= images.min() and images.max() <= 1


def test_level_samples_decode_the_same_codes_from_the_top_alone_and_every_level(tmp_path):
    vqvae = _vqvae()
    trainer, _ = _trainer(tmp_path, vqvae, TensorImages(torch.rand(4, 3, 32, 32)))
    prior, cpu = trainer.model.eval(), torch.device("cpu")
    codes = sample_hierarchical_codes(prior, trainer.grids, 3, 0, 1.0, 5, cpu)
    full = sample_hierarchical(prior, vqvae, trainer.grids, 3, 0, 1.0, 5, cpu)
    assert torch.equal(vqvae.decode(codes).clamp(0, 1), full)  # same seed → same codes as the sample grid
    top_alone = vqvae.decode(codes, keep=1).clamp(0, 1)
    picture = levels_picture(vqvae, codes, count=2)  # the first two samples of the same draw
    assert np.array_equal(picture, levels_grid([top_alone[:2], full[:2]], vqvae.level_names))
    assert picture.shape[0] == 2 * (4 * 32 + 4)  # two rows (top alone, every level), enlarged 4×, 2 px padding
    with pytest.raises(ValueError, match="one decode per level"):
        levels_grid([full], vqvae.level_names)
