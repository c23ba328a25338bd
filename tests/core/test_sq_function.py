"""The hand-written SQ-VAE step (core.quantize.stochastic) against the same formulas under plain autograd."""

import pytest
import torch
import torch.nn.functional as F

from core.quantize import stochastic
from core.quantize.stochastic import UniformNoise, stochastic_quantize


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
