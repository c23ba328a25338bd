"""The hand-written SQ-VAE step (core.quantize.stochastic) against the same formulas under plain autograd."""

import pytest
import torch
import torch.nn.functional as F

from core.quantize import stochastic
from core.quantize import GaussianSQVectorQuantizer
from core.quantize.stochastic import UniformNoise, stochastic_quantize, stochastic_quantize_autograd


def _reference(z, book, weight, tau, training, uniform):
    """SQ-VAE eq. 7/10 written directly: logits −Σ w (z − b)², Gumbel-softmax on the whole [N, K] at once."""
    w = weight if weight.dim() else weight.expand_as(z)
    logits = -(w[:, None, :] * (z[:, None, :] - book[None]).square()).sum(-1)  # [N, K]
    log_p = F.log_softmax(logits, -1)
    entropy = -(log_p.exp() * log_p).sum()
    if training:
        perturbed = logits - (-uniform.log()).log()
        indices = perturbed.argmax(-1)
        z_q = F.softmax(perturbed / tau, -1) @ book
    else:
        indices = logits.argmax(-1)
        z_q = book[indices]
    return z_q, indices, entropy, (w * (z - z_q).square()).sum()


def _inputs(elementwise, n=10, k=6, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64).requires_grad_()
    book = torch.randn(k, d, generator=g, dtype=torch.float64).requires_grad_()
    shape = (n, d) if elementwise else ()
    log_var = (0.3 * torch.randn(shape, generator=g, dtype=torch.float64)).requires_grad_()
    return z, book, log_var


@pytest.mark.parametrize("elementwise", [False, True])
@pytest.mark.parametrize("training, tau", [(True, 1.0), (True, 0.6), (False, 1.0)])
def test_values_and_gradients_equal_autograd_of_the_formulas(monkeypatch, elementwise, training, tau):
    monkeypatch.setattr(stochastic, "_CPU_BLOCK_ROWS", 3)  # 10 rows: four blocks, the last one short
    results = []
    for fast in (True, False):
        z, book, log_var = _inputs(elementwise)
        weight = 0.5 * torch.exp(-log_var)
        torch.manual_seed(5)
        noise = UniformNoise(z.device) if training else None
        if fast:
            z_q, indices, entropy, deq = stochastic_quantize(z, book, weight, tau, training, noise)
        else:
            uniform = noise.fill_(torch.empty(z.shape[0], book.shape[0], dtype=torch.float64)) if training else None
            z_q, indices, entropy, deq = _reference(z, book, weight, tau, training, uniform)
        probe = torch.linspace(-1, 1, z_q.numel(), dtype=torch.float64).view_as(z_q)
        ((probe * z_q).sum() + 0.7 * deq - 1.3 * entropy).backward()
        results.append((z_q.detach(), indices, entropy.detach(), deq.detach(), z.grad, book.grad, log_var.grad))
    for name, fast, ref in zip(("z_q", "indices", "entropy", "dequantization", "z grad", "codebook grad",
                                "log_var grad"), *results):
        if name == "indices":
            assert torch.equal(fast, ref)
        else:
            torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-10, msg=name)


def test_entropy_alone_and_z_q_alone_get_their_own_gradients():
    for use in ("entropy", "z_q"):
        z, book, log_var = _inputs(False)
        torch.manual_seed(0)
        out = stochastic_quantize(z, book, 0.5 * torch.exp(-log_var), 1.0, True, UniformNoise(z.device))
        (out[2] if use == "entropy" else out[0].sum()).backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0, use


def test_noise_blocks_equal_one_fill_and_follow_the_torch_seed():
    torch.manual_seed(3)
    whole = UniformNoise(torch.device("cpu")).fill_(torch.empty(7, 5))
    torch.manual_seed(3)
    noise = UniformNoise(torch.device("cpu"))
    parts = torch.cat([noise.fill_(torch.empty(r, 5)) for r in (2, 4, 1)])
    assert torch.equal(whole, parts)
    torch.manual_seed(4)
    assert not torch.equal(UniformNoise(torch.device("cpu")).fill_(torch.empty(7, 5)), whole)
    assert 0.0 <= float(whole.min()) and float(whole.max()) < 1.0


def test_sampled_codes_follow_the_posterior():
    """Gumbel-max: the sampled index of each row is distributed as softmax(logits) (instrument check)."""
    book = torch.tensor([[0.0], [1.0], [2.0], [4.0]])
    z = torch.full((40000, 1), 0.8)
    weight = torch.tensor(0.5)
    torch.manual_seed(0)
    _, indices, _, _ = stochastic_quantize(z, book, weight, 1.0, True, UniformNoise(z.device))
    expected = torch.softmax(-0.5 * (0.8 - book[:, 0]).square(), 0)
    observed = torch.bincount(indices, minlength=4) / indices.numel()
    torch.testing.assert_close(observed, expected, rtol=0, atol=0.01)


def test_without_gradients_the_same_samples_come_out():
    z, book = torch.randn(50, 4), torch.randn(8, 4)
    torch.manual_seed(0)
    with_grad = stochastic_quantize(z, book.requires_grad_(), torch.tensor(0.3), 0.5, True, UniformNoise(z.device))
    torch.manual_seed(0)
    with torch.no_grad():
        without = stochastic_quantize(z, book, torch.tensor(0.3), 0.5, True, UniformNoise(z.device))
    assert torch.equal(with_grad[0], without[0]) and torch.equal(with_grad[1], without[1])


class _FixedNoise:
    """Hands out the rows of one uniform array in order (the same numbers in float32 and float64)."""

    def __init__(self, uniform):
        self.uniform, self.row = uniform, 0

    def fill_(self, out):
        out.copy_(self.uniform[self.row:self.row + out.shape[0]])
        self.row += out.shape[0]
        return out


def test_float32_gradients_stay_accurate_when_the_posterior_is_nearly_deterministic():
    """σ² small: y nearly one-hot. The float32 gradients must keep float32 accuracy against float64; a softmax
    backward with ⟨y, g⟩ from another product (equal only in exact arithmetic) was off by 1e-4 here."""
    g = torch.Generator().manual_seed(0)
    book = torch.randn(64, 8, generator=g)
    z = book[torch.randint(64, (512,), generator=g)] + 0.1 * torch.randn(512, 8, generator=g)
    uniform, probe = torch.rand(512, 64, generator=g), torch.randn(512, 8, generator=g)
    grads = {}
    for dtype in (torch.float32, torch.float64):
        zz, bb = z.to(dtype).clone().requires_grad_(), book.to(dtype).clone().requires_grad_()
        log_var = torch.tensor(-4.6, dtype=dtype, requires_grad=True)  # σ² = 0.01
        z_q, _, entropy, deq = stochastic_quantize(zz, bb, 0.5 * torch.exp(-log_var), 0.9, True,
                                                   _FixedNoise(uniform))
        ((probe.to(dtype) * z_q).sum() + deq - entropy).backward()
        grads[dtype] = [t.grad.double() for t in (zz, bb, log_var)]
    for name, low, high in zip(("z", "codebook", "log_var"), grads[torch.float32], grads[torch.float64]):
        assert float((low - high).norm() / high.norm()) < 2e-6, name


@pytest.mark.parametrize("elementwise", [False, True])
def test_the_default_autograd_formulation_equals_the_reference(elementwise):
    """The quantizer's default path (one block here, so its torch.rand_like draw is the reference's torch.rand)."""
    results = []
    for default in (True, False):
        z, book, log_var = _inputs(elementwise)
        weight = 0.5 * torch.exp(-log_var)
        torch.manual_seed(9)
        if default:
            out = stochastic_quantize_autograd(z, book, weight, 0.7, True)
        else:
            out = _reference(z, book, weight, 0.7, True, torch.rand(z.shape[0], book.shape[0], dtype=z.dtype))
        (out[0].square().sum() + out[3] - out[2]).backward()
        results.append((out[0].detach(), out[1], out[2].detach(), z.grad, book.grad, log_var.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b) if a.dtype == torch.long else torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_fused_quantizer_option_matches_the_default_in_evaluation_and_trains():
    torch.manual_seed(0)
    default = GaussianSQVectorQuantizer(16, 4, groups=2, init_variance=2.0)
    fused = GaussianSQVectorQuantizer(16, 4, groups=2, init_variance=2.0, fused=True)
    fused.load_state_dict(default.state_dict())
    z = torch.randn(3, 5, 8)
    a, b = default.eval()(z), fused.eval()(z)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.z_q, b.z_q)
    torch.testing.assert_close(a.loss, b.loss)
    zz = z.clone().requires_grad_()
    out = fused.train()(zz)
    (out.z_q.sum() + out.loss).backward()
    assert out.z_q.shape == z.shape and torch.isfinite(zz.grad).all() and fused.codebook.grad.abs().sum() > 0
    assert "fused=True" in repr(fused)
