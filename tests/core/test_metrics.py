"""Metrics against hand computations."""

import math

import pytest
import torch

from core.metrics import (CodebookUsage, bits_per_dim_to_nats, code_counts, nats_to_bits_per_dim, nmse, perplexity,
                          perplexity_from_counts, psnr, psnr_of_mse)


def test_perplexity_of_uniform_and_of_single_code():
    assert perplexity(torch.arange(8), 8).item() == pytest.approx(8.0)
    assert perplexity(torch.full((50,), 3), 8).item() == pytest.approx(1.0)


def test_perplexity_hand_case():
    # p̄ = (1/4, 1/4, 1/2): H = 1.5 ln 2 nats, perplexity = 2^1.5
    assert perplexity(torch.tensor([0, 1, 2, 2]), 5).item() == pytest.approx(2**1.5, rel=1e-6)


def test_perplexity_of_several_codebooks_is_their_mean_and_empty_is_zero():
    idx = torch.tensor([[0, 0], [1, 0], [2, 0], [3, 0]])  # codebook 0 uniform over 4, codebook 1 one code
    assert perplexity(idx, 4).item() == pytest.approx((4 + 1) / 2)
    assert perplexity_from_counts(torch.zeros(6)).item() == 0.0


def test_code_counts_per_group():
    counts = code_counts(torch.tensor([[0, 2], [0, 1], [2, 1]]), 3)
    assert counts.tolist() == [[2.0, 0.0, 1.0], [0.0, 2.0, 1.0]]


def test_codebook_usage_accumulates_over_a_pass():
    usage = CodebookUsage(codebook_size=6)
    usage.update(torch.tensor([[0, 1], [1, 1]]))
    usage.update(torch.tensor([4]))
    assert usage.used_codes == 3 and usage.dead_codes == 3
    assert usage.codebook_usage == pytest.approx(0.5)
    s = usage.summary()
    assert s["dead_codes"] == 3 and s["perplexity"] == pytest.approx(perplexity(torch.tensor([0, 1, 1, 1, 4]), 6).item())


def test_bits_per_dim_conversions():
    assert nats_to_bits_per_dim(3072 * math.log(2), 3072) == pytest.approx(1.0)
    assert bits_per_dim_to_nats(nats_to_bits_per_dim(123.4, 10), 10) == pytest.approx(123.4)
    with pytest.raises(ValueError):
        nats_to_bits_per_dim(1.0, 0)


def test_psnr_and_nmse():
    x = torch.zeros(2, 3, 4, 4)
    x_hat = x + 0.1  # MSE 0.01 → 20 dB on a unit range
    assert psnr(x, x_hat).item() == pytest.approx(20.0, rel=1e-5)
    assert psnr(x, x_hat, data_range=2.0).item() == pytest.approx(20.0 + 20 * math.log10(2), rel=1e-5)
    assert nmse(x, x_hat, data_variance=0.04).item() == pytest.approx(0.25, rel=1e-5)
    with pytest.raises(ValueError):
        psnr(x, x_hat[:1])
    with pytest.raises(ValueError):
        nmse(x, x_hat, data_variance=0.0)


def test_psnr_of_a_pooled_mse_by_hand():
    assert psnr_of_mse(0.01) == pytest.approx(20.0)
    assert psnr_of_mse(0.04, data_range=2.0) == pytest.approx(20.0)
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    x_hat = torch.tensor([[0.1, 0.1], [0.3, 0.3]])  # per-item MSE 0.01 and 0.09, pooled 0.05
    assert psnr_of_mse(0.05) < float(psnr(x, x_hat))  # pooled below the mean of per-item PSNRs (Jensen)
