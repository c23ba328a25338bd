"""EMAVectorQuantizer: the appendix A.1 update by hand, eval freeze, buffers, state round-trip."""

import pytest
import torch

from core.quantize import EMAVectorQuantizer


def _hand_case():
    q = EMAVectorQuantizer(3, 2, beta=0.25, decay=0.9, epsilon=0.1)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]))
        q.cluster_size.copy_(torch.tensor([2.0, 1.0, 1.0]))
        q.embed_avg.copy_(torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]))
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 1.0], [3.0, -1.0]])  # → codes 0, 0, 1, 1; code 2 unused
    return q, z


def test_update_equals_the_appendix_formula_computed_by_hand():
    q, z = _hand_case()
    out = q(z)
    assert out.indices.tolist() == [0, 0, 1, 1]
    # N = 0.9 N + 0.1 n with n = (2, 2, 0)
    assert q.cluster_size.tolist() == pytest.approx([2.0, 1.1, 0.9])
    # m = 0.9 m + 0.1 Σz: Σz = ((1, 1), (8, 0), (0, 0))
    torch.testing.assert_close(q.embed_avg, torch.tensor([[0.1, 0.1], [4.4, 0.0], [0.0, 3.6]]))
    # Laplace smoothing with Σ N = 4, K ε = 0.3: Ñ = (N + 0.1) / 4.3 · 4
    smoothed = [2.1 / 4.3 * 4, 1.2 / 4.3 * 4, 1.0 / 4.3 * 4]
    expected = torch.tensor([[0.1 / smoothed[0], 0.1 / smoothed[0]],
                             [4.4 / smoothed[1], 0.0],
                             [0.0, 3.6 / smoothed[2]]])
    torch.testing.assert_close(q.codebook, expected)


def test_assignment_and_loss_use_the_codebook_before_the_update():
    q, z = _hand_case()
    before = q.codebook.clone()
    out = q(z)
    assert torch.equal(out.z_q, before[out.indices])
    torch.testing.assert_close(out.commitment_loss, (z - before[out.indices]).square().mean())
    torch.testing.assert_close(out.loss, 0.25 * out.commitment_loss)
    assert out.codebook_loss.item() == 0.0


def test_codebook_moves_in_train_and_not_in_eval():
    q, z = _hand_case()
    q.eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q(z)
    for k, v in q.state_dict().items():
        assert torch.equal(v, before[k]), k
    q.train()
    q(z)
    assert not torch.equal(q.codebook, before["codebook"])


def test_statistics_are_buffers_not_parameters():
    q = EMAVectorQuantizer(8, 4, beta=0.25)
    assert list(q.parameters()) == []
    buffers = dict(q.named_buffers())
    assert {"codebook", "cluster_size", "embed_avg"} <= set(buffers)
    assert buffers["cluster_size"].shape == (8,) and buffers["embed_avg"].shape == (8, 4)


def test_commitment_gradient_reaches_z_e_and_z_q_is_straight_through():
    q, z = _hand_case()
    z = z.clone().requires_grad_(True)
    before = q.codebook.clone()
    out = q(z)
    (out.z_q.sum() + out.loss).backward()
    expected = 1.0 + 0.25 * 2 * (z.detach() - before[out.indices]) / z.numel()
    torch.testing.assert_close(z.grad, expected)


def test_state_dict_round_trip_restores_every_piece_of_state():
    torch.manual_seed(0)
    kw = dict(beta=0.25, groups=2, data_init=True, dead_code_restart=True, restart_every=2)
    q = EMAVectorQuantizer(8, 3, **kw)
    data = torch.randn(5, 40, 6)
    for batch in data[:3]:
        q(batch)
    clone = EMAVectorQuantizer(8, 3, **kw)
    clone.load_state_dict(q.state_dict())
    for (name, a), (_, b) in zip(q.state_dict().items(), clone.state_dict().items()):
        assert torch.equal(a, b), name
    torch.manual_seed(7)
    out_a = [q(batch).indices for batch in data[3:]]
    torch.manual_seed(7)
    out_b = [clone(batch).indices for batch in data[3:]]
    assert all(torch.equal(a, b) for a, b in zip(out_a, out_b))
    assert torch.equal(q.codebook, clone.codebook)


def test_several_codebooks_keep_separate_statistics():
    q = EMAVectorQuantizer(4, 2, beta=0.25, groups=3)
    assert q.cluster_size.shape == (3, 4) and q.embed_avg.shape == (3, 4, 2)
    z = torch.randn(10, 6)
    out = q(z)
    assert out.indices.shape == (10, 3)
    assert q.cluster_size.sum().item() == pytest.approx(3 * (0.99 * 4 + 0.01 * 10))


def test_invalid_hyper_parameters_raise():
    with pytest.raises(ValueError):
        EMAVectorQuantizer(8, 4, beta=0.25, decay=1.0)
    with pytest.raises(ValueError):
        EMAVectorQuantizer(0, 4, beta=0.25)


def test_golden_values_on_a_fixed_seed():
    # pinned outputs of one training call (assignment with the old codebook, then the appendix A.1 update): a
    # change of the update, the smoothing or the initial statistics moves them
    torch.manual_seed(1234)
    q = EMAVectorQuantizer(8, 3, beta=0.25)
    out = q(torch.randn(6, 3))
    assert out.indices.tolist() == [7, 6, 1, 4, 4, 0]
    assert out.loss.item() == pytest.approx(0.06300726532936096, rel=1e-5)
    assert out.perplexity.item() == pytest.approx(4.762204170227051, rel=1e-5)
    assert q.codebook.sum().item() == pytest.approx(-3.545034885406494, rel=1e-5)
    assert q.cluster_size.sum().item() == pytest.approx(0.99 * 8 + 0.01 * 6, rel=1e-6)  # γ·K·1 + (1 − γ)·N
