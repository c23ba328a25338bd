"""Priors of a hierarchical VQ-VAE: the bottom prior is causal over its level and sees every code above;
sampling top → bottom is the same cached and naive, level by level."""

import pytest
import torch
import torch.nn.functional as F

from priors.hierarchical import HierarchicalPrior

K = 6
pytestmark = pytest.mark.usefixtures("one_thread")


def _prior(levels=2, **kw):
    torch.manual_seed(0)
    return HierarchicalPrior(K, levels, channels=8, num_layers=3, kernel_size=3, **kw).double().eval()


def _codes(batch, grids, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, K, (batch, *s), generator=g) for s in grids]


def test_bottom_prior_is_causal_over_bottom_codes_and_sees_every_top_code():
    prior = _prior()
    bottom, top = _codes(2, [(8, 8), (4, 4)])
    emb = prior.priors[0].embedding(bottom).permute(0, 3, 1, 2).detach().requires_grad_(True)
    top_emb = prior.conditioners[0].embeddings[0]
    top_emb.weight.requires_grad_(True)
    r, c = 3, 5
    logits = prior.priors[0]._forward_embedded(emb, None, prior.spatial(0, [bottom, top]))
    logits[:, :, r, c].sum().backward()
    grad = emb.grad.abs().sum((0, 1))
    before = torch.arange(64).reshape(8, 8) < r * 8 + c
    assert torch.all(grad[~before] == 0) and grad[before].sum() > 0
    # every top code moves the bottom logits somewhere: change each top code in turn
    base = prior([bottom, top])[0]
    for i in range(4):
        for j in range(4):
            changed = top.clone()
            changed[:, i, j] = (changed[:, i, j] + 1) % K
            assert not torch.allclose(prior([bottom, changed])[0], base)
    # and the top prior ignores the bottom codes
    other = (bottom + 1) % K
    torch.testing.assert_close(prior([other, top])[1], prior([bottom, top])[1], rtol=0, atol=0)


@pytest.mark.parametrize("levels, kw", [(2, {}), (2, {"num_classes": 3, "top_attention_blocks": 1,
                                                        "attention_heads": 2}), (3, {})])
def test_hierarchical_cached_sampling_equals_naive_level_by_level(levels, kw):
    prior = _prior(levels, **kw)
    grids = [(8, 6), (4, 3), (2, 3)][:levels] if levels == 3 else [(6, 8), (3, 4)]
    if levels == 3:
        grids = [(8, 8), (4, 4), (2, 2)]
    cond = torch.tensor([2, 0, 1]) if kw.get("num_classes") else None
    draws = {m: prior.sample(3, grids, cond, 0.9, torch.Generator().manual_seed(7), m) for m in ("naive", "cached")}
    for level in range(levels):
        assert draws["cached"][level].shape == (3, *grids[level])
        assert torch.equal(draws["naive"][level], draws["cached"][level])
    assert draws["cached"][0].unique().numel() > 2


def test_nll_is_the_cross_entropy_per_level_and_bad_levels_raise():
    prior = _prior()
    codes = _codes(2, [(4, 6), (2, 3)])
    nll = prior.nll(codes)
    logits = prior(codes)
    for level in range(2):
        expect = F.cross_entropy(logits[level], codes[level], reduction="none").sum((1, 2))
        torch.testing.assert_close(nll[level], expect)
    with pytest.raises(ValueError, match="twice the sides"):
        prior([codes[0], codes[0]])
    with pytest.raises(ValueError, match="2 levels"):
        prior(codes[:1])
