"""Loss-based VectorQuantizer: assignment, straight-through gradient, loss routing, contract errors."""

import pytest
import torch

from core.quantize import VectorQuantizer, VQOutput


def _quantizer(k=16, d=4, **kw):
    torch.manual_seed(0)
    q = VectorQuantizer(k, d, beta=0.25, **kw)
    with torch.no_grad():
        q.codebook.normal_()
    return q


def test_assignment_is_nearest_code_and_z_q_is_exactly_the_code():
    q = _quantizer()
    z = torch.randn(3, 5, 7, 4)
    out = q(z)
    assert isinstance(out, VQOutput)
    assert out.z_q.shape == z.shape and out.indices.shape == (3, 5, 7) and out.indices.dtype == torch.long
    brute = torch.cdist(z.reshape(-1, 4).double(), q.codebook.double()).argmin(-1)
    assert torch.equal(out.indices.reshape(-1), brute)
    assert torch.equal(out.z_q.reshape(-1, 4), q.codebook.detach()[brute])


def test_losses_equal_the_paper_terms():
    q = _quantizer()
    z = torch.randn(10, 4)
    out = q(z)
    mse = (q.codebook.detach()[out.indices] - z).square().mean()
    torch.testing.assert_close(out.codebook_loss, mse)
    torch.testing.assert_close(out.commitment_loss, mse)
    torch.testing.assert_close(out.loss, mse * 1.25)


def test_straight_through_gradient_is_all_ones_and_skips_the_codebook():
    q = _quantizer()
    z = torch.randn(6, 4, requires_grad=True)
    q(z).z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
    assert q.codebook.grad is None or not q.codebook.grad.any()


def test_codebook_loss_reaches_only_the_codebook():
    q = _quantizer()
    z = torch.randn(6, 4, requires_grad=True)
    out = q(z)
    out.codebook_loss.backward()
    assert z.grad is None or not z.grad.any()
    e = q.codebook.detach()[out.indices]
    expected = torch.zeros_like(q.codebook).index_add_(0, out.indices, 2 * (e - z.detach()) / z.numel())
    torch.testing.assert_close(q.codebook.grad, expected)


def test_commitment_loss_reaches_only_z_e():
    q = _quantizer()
    z = torch.randn(6, 4, requires_grad=True)
    out = q(z)
    out.commitment_loss.backward()
    assert q.codebook.grad is None or not q.codebook.grad.any()
    e = q.codebook.detach()[out.indices]
    torch.testing.assert_close(z.grad, 2 * (z.detach() - e) / z.numel())


def test_gradients_match_the_textbook_autograd_formulation():
    q = _quantizer()
    z = torch.randn(2, 3, 3, 4, requires_grad=True)
    out = q(z)
    w = torch.randn_like(z)
    ((out.z_q * w).sum() + 3.0 * out.loss).backward()
    ours = (z.grad.clone(), q.codebook.grad.clone())

    z.grad, q.codebook.grad = None, None
    e = q.codebook[out.indices]  # textbook: z_q = z + sg[e − z], losses with sg[·]
    z_q = z + (e - z).detach()
    loss = (e - z.detach()).square().mean() + 0.25 * (z - e.detach()).square().mean()
    ((z_q * w).sum() + 3.0 * loss).backward()
    torch.testing.assert_close(ours[0], z.grad)
    torch.testing.assert_close(ours[1], q.codebook.grad)


def test_beta_is_required():
    with pytest.raises(TypeError):
        VectorQuantizer(16, 4)


def test_wrong_last_dimension_raises():
    q = _quantizer()
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        q(torch.randn(3, 5))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_raises_and_changes_nothing(bad):
    q = _quantizer(dead_code_restart=True, restart_every=1)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    z = torch.randn(4, 4)
    z[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        q(z)
    for k, v in q.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_empty_batch_works():
    q = _quantizer()
    z = torch.randn(0, 4, requires_grad=True)
    out = q(z)
    assert out.z_q.shape == (0, 4) and out.indices.shape == (0,)
    assert out.loss.item() == 0.0 and out.perplexity.item() == 0.0
    (out.z_q.sum() + out.loss).backward()
    assert z.grad.shape == (0, 4)


def test_several_codebooks_quantize_each_slice_with_its_own_codebook():
    q = _quantizer(k=8, d=3, groups=2)
    assert q.codebook.shape == (2, 8, 3)
    z = torch.randn(5, 6)
    out = q(z)
    assert out.indices.shape == (5, 2)
    for g in range(2):
        part = z[:, 3 * g:3 * g + 3]
        brute = torch.cdist(part.double(), q.codebook[g].double()).argmin(-1)
        assert torch.equal(out.indices[:, g], brute)
        assert torch.equal(out.z_q[:, 3 * g:3 * g + 3], q.codebook.detach()[g][brute])
    assert torch.equal(q.lookup(out.indices), out.z_q)


def test_lookup_inverts_the_assignment_and_validates():
    q = _quantizer()
    z = torch.randn(2, 3, 4)
    out = q(z)
    assert torch.equal(q.lookup(out.indices), out.z_q)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        q.lookup(torch.tensor([16]))


def test_autocast_computes_in_float32_and_returns_the_input_dtype():
    q = _quantizer()
    z = torch.randn(64, 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z)
    assert out.z_q.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    assert torch.equal(out.indices, q(z.float()).indices)


def test_golden_values_on_a_fixed_seed():
    torch.manual_seed(1234)
    q = VectorQuantizer(8, 3, beta=0.25)
    z = torch.randn(5, 3) * 0.2
    out = q(z)
    assert out.indices.tolist() == GOLDEN_INDICES
    assert out.loss.item() == pytest.approx(GOLDEN_LOSS, rel=1e-5)
    assert out.perplexity.item() == pytest.approx(GOLDEN_PERPLEXITY, rel=1e-5)


GOLDEN_INDICES = [1, 5, 1, 5, 4]
GOLDEN_LOSS = 0.012317811138927937
GOLDEN_PERPLEXITY = 2.871746063232422


def test_ema_statistics_under_bf16_autocast_are_float32_and_equal_the_float32_update():
    from core.quantize import EMAVectorQuantizer

    torch.manual_seed(0)
    z = torch.randn(256, 4).bfloat16()
    plain, mixed = (EMAVectorQuantizer(16, 4, beta=0.25, decay=0.9).train() for _ in range(2))
    mixed.load_state_dict(plain.state_dict())
    plain(z.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed(z)
    for name, buffer in mixed.state_dict().items():
        assert buffer.dtype in (torch.float32, torch.bool, torch.long), name
        torch.testing.assert_close(buffer, plain.state_dict()[name], rtol=1e-6, atol=1e-6)


def test_codebook_lr_scale_is_validated_and_only_taken_by_the_loss_trained_codebook():
    from core.config import ConfigError, QuantizerConfig

    assert VectorQuantizer(8, 4, beta=0.25, codebook_lr_scale=30.0).lr_scales == {"codebook": 30.0}
    with pytest.raises(ValueError, match="codebook_lr_scale"):
        VectorQuantizer(8, 4, beta=0.25, codebook_lr_scale=0.0)
    assert QuantizerConfig(kind="vq", codebook_lr_scale=30.0).build_kwargs()["codebook_lr_scale"] == 30.0
    with pytest.raises(ConfigError, match="codebook_lr_scale"):
        QuantizerConfig(kind="ema", codebook_lr_scale=30.0).build_kwargs()
