"""Data-dependent initialisation and dead-code restart (named options beyond the paper, off by default)."""

import pytest
import torch

from core.quantize import EMAVectorQuantizer, GaussianSQVectorQuantizer, VectorQuantizer


def _rows_of(a, b):
    """True when every row of a equals some row of b."""
    return bool((torch.cdist(a, b).min(1).values == 0).all())


@pytest.mark.parametrize("cls", [VectorQuantizer, GaussianSQVectorQuantizer])
def test_options_are_off_by_default(cls):
    kw = {"beta": 0.25} if cls is VectorQuantizer else {}
    q = cls(8, 2, **kw)
    assert not q.data_init and not q.dead_code_restart and bool(q.initialized)


def test_data_init_draws_codes_from_the_first_training_batch_only():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 2, beta=0.25, data_init=True)
    assert not bool(q.initialized)
    q.eval()
    q(torch.randn(20, 2) + 50)
    assert not bool(q.initialized), "eval must not initialise"
    q.train()
    z = torch.randn(20, 2) + 10
    q(z)
    assert bool(q.initialized) and _rows_of(q.codebook.detach(), z)
    first = q.codebook.detach().clone()
    q(torch.randn(20, 2) - 10)
    assert torch.equal(q.codebook.detach(), first)


def test_dead_code_restart_moves_unused_codes_onto_encoder_outputs():
    torch.manual_seed(0)
    q = VectorQuantizer(4, 2, beta=0.25, dead_code_restart=True, restart_every=2)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [0.5, 0.5], [-100.0, 100.0]]))
    z = torch.rand(30, 2)
    q(z)
    q(z)  # two calls: codes 1 and 3 were never used
    assert q.code_usage[0, 1] == 0 and q.code_usage[0, 3] == 0
    out = q(z)  # the check runs before this call's assignment
    cb = q.codebook.detach()
    assert _rows_of(cb[[1, 3]], z)
    assert torch.equal(cb[[0, 2]], torch.tensor([[0.0, 0.0], [0.5, 0.5]]))
    assert int(q.calls_since_restart) == 1 and q.code_usage.sum() == 30
    assert {1, 3} & set(out.indices.tolist())


def _ema_with_a_far_code():
    """An EMA quantizer (γ = 0.5, restart every 4 calls) whose code 1 no vector of ``z`` will ever pick."""
    torch.manual_seed(0)
    q = EMAVectorQuantizer(4, 2, beta=0.25, decay=0.5, dead_code_restart=True, restart_every=4)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [0.5, 0.5], [1.0, 0.0]]))
        q.embed_avg.copy_(q.codebook)
    z = torch.rand(30, 2)
    return q, z


def test_ema_restart_resets_the_statistics_of_restarted_codes():
    q, z = _ema_with_a_far_code()
    for _ in range(4):
        q(z)
    assert q.cluster_size[1] == pytest.approx(0.5**4)  # decayed, never used
    before = q.embed_avg[1].clone()
    mask = torch.tensor([False, True, False, False])
    new = torch.tensor([[0.25, 0.75]])
    q._replace_codes(0, mask, new)
    assert q.cluster_size[1] == 1.0 and torch.equal(q.embed_avg[1], new[0]) and torch.equal(q.codebook[1], new[0])
    assert not torch.equal(before, q.embed_avg[1])


def test_ema_restart_through_forward_gives_the_code_a_fresh_count():
    q, z = _ema_with_a_far_code()
    for _ in range(5):  # the fifth call restarts code 1, then assigns and updates
        out = q(z)
    assert 1 in out.indices.tolist()
    # reset to N = 1, then one update: N = 0.5 · 1 + 0.5 · n₁ ≥ 1 (it was 0.5⁴ before the restart)
    assert q.cluster_size[1] >= 1.0
