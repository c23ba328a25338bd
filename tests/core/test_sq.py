"""GaussianSQVectorQuantizer (SQ-VAE): posterior, loss terms, self-annealing limit, variance variants."""

import math

import pytest
import torch

from core.quantize import EMAVectorQuantizer, GaussianSQVectorQuantizer, SQOutput, VectorQuantizer, gumbel_temperature


def _pair(variance=1.0, k=16, d=4):
    torch.manual_seed(0)
    sq = GaussianSQVectorQuantizer(k, d, init_variance=variance)
    vq = VectorQuantizer(k, d, beta=0.25)
    with torch.no_grad():
        vq.codebook.copy_(sq.codebook)
    return sq, vq


def test_eval_is_deterministic_nearest_code():
    sq, vq = _pair()
    sq.eval()
    z = torch.randn(2, 6, 4)
    out = sq(z)
    assert isinstance(out, SQOutput) and out.z_q.shape == z.shape and out.indices.shape == (2, 6)
    assert torch.equal(out.indices, vq(z).indices)
    assert torch.equal(out.z_q, sq.codebook.detach()[out.indices])
    assert torch.equal(sq(z).indices, out.indices)


def test_training_samples_stochastically():
    sq, _ = _pair(variance=20.0)
    z = torch.randn(200, 4)
    torch.manual_seed(1)
    a = sq(z)
    torch.manual_seed(2)
    b = sq(z)
    assert not torch.equal(a.indices, b.indices)


def test_loss_terms_equal_the_reference_formulas():
    sq, _ = _pair(variance=2.0)
    sq.eval()
    z = torch.randn(12, 4)
    out = sq(z)
    d2 = ((z[:, None, :] - sq.codebook.detach()[None]) ** 2).sum(-1)  # [N, K]
    p = torch.softmax(-d2 / (2 * 2.0), -1)
    entropy = -(p * p.log()).sum(-1).mean()
    dequant = ((z - out.z_q) ** 2).sum(-1).mean() / (2 * 2.0)
    torch.testing.assert_close(out.entropy, entropy, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.dequantization_loss, dequant, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.loss, dequant - entropy, rtol=1e-4, atol=1e-5)
    assert out.variance.item() == pytest.approx(2.0, rel=1e-6)


def test_self_annealing_limit_equals_deterministic_vq():
    sq, vq = _pair(variance=1e-8)
    z = torch.randn(3, 50, 4)
    out = sq(z)  # training mode: Gumbel-softmax sample with σ² → 0
    ref = vq(z)
    assert torch.equal(out.indices, ref.indices)
    torch.testing.assert_close(out.z_q, ref.z_q, rtol=0, atol=1e-6)
    assert out.entropy.item() < 1e-6


def test_gradients_reach_encoder_codebook_and_variance():
    sq, _ = _pair(variance=5.0)
    z = torch.randn(20, 4, requires_grad=True)
    out = sq(z)
    (out.z_q.square().sum() + out.loss).backward()
    for name, g in (("z_e", z.grad), ("codebook", sq.codebook.grad), ("log_variance", sq.log_variance.grad)):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_elementwise_variance_needs_log_var_and_matches_shared_when_constant():
    torch.manual_seed(0)
    ew = GaussianSQVectorQuantizer(16, 4, variance="elementwise")
    shared = GaussianSQVectorQuantizer(16, 4, init_variance=3.0)
    with torch.no_grad():
        shared.codebook.copy_(ew.codebook)
    ew.eval(), shared.eval()
    z = torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match="log_var"):
        ew(z)
    with pytest.raises(ValueError, match="log_var"):
        ew(z, torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="log_var"):
        shared(z, torch.zeros_like(z))
    a = ew(z, torch.full_like(z, math.log(3.0)))
    b = shared(z)
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(a.loss, b.loss)


def test_elementwise_weights_each_dimension():
    torch.manual_seed(0)
    q = GaussianSQVectorQuantizer(2, 2, variance="elementwise").eval()
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.5]]))
    z = torch.zeros(1, 2)  # closer to code 0 in plain L2, but dim 0 has a tiny variance
    log_var = torch.log(torch.tensor([[0.01, 1.0]]))
    assert q(z, log_var).indices.item() == 1


def test_temperature_schedule_and_step_counter():
    assert gumbel_temperature(0) == 1.0
    assert gumbel_temperature(1000, init=2.0, decay=1e-3) == pytest.approx(2 * math.exp(-1))
    assert gumbel_temperature(10**7, minimum=0.5) == 0.5
    q = GaussianSQVectorQuantizer(8, 2, temperature_decay=0.1)
    z = torch.randn(5, 2)
    q(z), q(z)
    assert int(q.step) == 2 and q(z).temperature.item() == pytest.approx(math.exp(-0.2))
    q.eval()
    q(z)
    assert int(q.step) == 3


def test_state_dict_round_trip():
    q = GaussianSQVectorQuantizer(8, 2)
    q(torch.randn(5, 2))
    clone = GaussianSQVectorQuantizer(8, 2)
    clone.load_state_dict(q.state_dict())
    assert int(clone.step) == 1
    for (name, a), (_, b) in zip(q.state_dict().items(), clone.state_dict().items()):
        assert torch.equal(a, b), name


def test_contract_errors_and_empty_batch():
    q = GaussianSQVectorQuantizer(8, 3)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        q(torch.randn(4, 2))
    z = torch.randn(4, 3)
    z[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        q(z)
    out = q(torch.randn(0, 3))
    assert out.z_q.shape == (0, 3) and out.loss.item() == 0.0
    with pytest.raises(ValueError):
        GaussianSQVectorQuantizer(8, 3, variance="diagonal")


def test_several_codebooks():
    q = GaussianSQVectorQuantizer(8, 2, groups=3).eval()
    z = torch.randn(7, 6)
    out = q(z)
    assert out.indices.shape == (7, 3)
    assert torch.equal(q.lookup(out.indices), out.z_q)


def test_outputs_say_how_their_loss_scales_and_which_quantizer_takes_a_log_variance():
    z = torch.randn(4, 8)
    assert VectorQuantizer(16, 8, beta=0.25)(z).loss_per == "element"
    assert EMAVectorQuantizer(16, 8, beta=0.25)(z).loss_per == "element"
    assert GaussianSQVectorQuantizer(16, 8)(z).loss_per == "vector"
    assert not VectorQuantizer(16, 8, beta=0.25).takes_log_variance
    assert not GaussianSQVectorQuantizer(16, 8).takes_log_variance
    assert GaussianSQVectorQuantizer(16, 8, variance="elementwise").takes_log_variance


def test_golden_values_on_a_fixed_seed():
    # pinned outputs of one stochastic training call and of the deterministic eval call (shared variance σ² = 20)
    torch.manual_seed(1234)
    q = GaussianSQVectorQuantizer(8, 3)
    z = torch.randn(5, 3) * 0.5
    out = q(z)
    assert out.indices.tolist() == [1, 5, 6, 2, 1]
    assert out.loss.item() == pytest.approx(-2.0190086364746094, rel=1e-5)
    assert out.dequantization_loss.item() == pytest.approx(0.057596128433942795, rel=1e-5)
    assert out.entropy.item() == pytest.approx(2.0766048431396484, rel=1e-5)
    assert out.z_q.sum().item() == pytest.approx(-2.5646302700042725, rel=1e-5)
    q.eval()
    out = q(z)
    assert out.indices.tolist() == [0, 7, 1, 1, 0]
    assert out.loss.item() == pytest.approx(-2.0593552589416504, rel=1e-5)
