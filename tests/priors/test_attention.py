"""Causal self-attention in the gated PixelCNN: causality over the raster past, whole reach, exact cached sampling."""

import pytest
import torch

from priors.attention import AttentionBlock, CausalAttentionStack
from priors.pixelcnn import GatedPixelCNN
from priors.sampling import gumbel_noise

K = 8
pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**kw):
    torch.manual_seed(0)
    return GatedPixelCNN(K, 16, 2, 3, attention_blocks=2, attention_heads=4, **kw).double().eval()


def _input_gradient(model, r, c, height=6, width=6):
    emb = torch.randn(2, model.channels, height, width, dtype=torch.double, requires_grad=True)
    model._forward_embedded(emb)[:, :, r, c].sum().backward()
    return emb.grad.abs().sum(dim=(0, 1))


@pytest.mark.parametrize("r, c", [(0, 0), (0, 4), (3, 2), (5, 5)])
def test_attention_sees_the_whole_raster_past_and_nothing_else(r, c):
    # two layers of k = 3 alone reach one or two rows up; with attention every earlier position counts
    grad = _input_gradient(_model(), r, c)
    before = torch.arange(36).reshape(6, 6) < r * 6 + c
    assert torch.all(grad[~before] == 0)
    assert torch.all(grad[before] > 0)
    plain = GatedPixelCNN(K, 16, 2, 3).double()
    if r == 5:
        assert _input_gradient(plain, r, c)[0].sum() == 0  # without attention row 0 is out of reach


@pytest.mark.parametrize("kind", ["none", "class"])
def test_cached_sampling_with_attention_equals_naive_and_the_forward(kind):
    kw, cond = ({"num_classes": 3}, torch.tensor([2, 0, 1])) if kind == "class" else ({}, None)
    model = _model(**kw)
    draws = {m: model.sample((3, 5, 6), cond, temperature=0.9, generator=torch.Generator().manual_seed(4), method=m)
             for m in ("naive", "cached")}
    assert torch.equal(draws["naive"], draws["cached"]) and draws["cached"].unique().numel() > 2
    noise = gumbel_noise((3, 5, 6, K), torch.Generator().manual_seed(1), dtype=torch.double)
    logits = torch.full((3, K, 5, 6), float("nan"), dtype=torch.double)
    with torch.no_grad():
        codes = model._sample_cached(noise, cond, None, 1.0, logits_out=logits)
        torch.testing.assert_close(logits, model(codes, cond), rtol=1e-12, atol=1e-12)


def test_block_step_equals_its_forward_and_bad_sizes_raise():
    torch.manual_seed(1)
    block = AttentionBlock(8, 2).double()
    x, emb = torch.randn(2, 5, 8, dtype=torch.double), torch.randn(2, 5, 8, dtype=torch.double)
    cache = block.start(2, 5, x)
    steps = []
    for t in range(5):
        steps.append(block.step(x[:, t], cache, t))
        block.commit(x[:, t], emb[:, t], cache, t)
    torch.testing.assert_close(torch.stack(steps, 1), block(x, emb), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="divide"):
        AttentionBlock(8, 3)
    with pytest.raises(ValueError, match="blocks"):
        CausalAttentionStack(8, 0, 2)
