"""The VQ-VAE-2 model: shapes at every level, each codebook trained by its own loss alone, progressive decoding."""

import pytest
import torch

from core.config import QuantizerConfig
from image.config import ImageModelConfig
from image.hierarchy import HierarchicalVQVAE

MODEL = ImageModelConfig(hidden_channels=16, residual_channels=8, num_residual_blocks=1)


def _model(levels, kind="vq"):
    torch.manual_seed(0)
    return HierarchicalVQVAE(MODEL, QuantizerConfig(kind=kind, codebook_size=16, code_dim=4), levels=levels)


@pytest.mark.parametrize("levels, sides", [(1, [16]), (2, [16, 8]), (3, [16, 8, 4])])
def test_shapes_at_every_level(levels, sides):
    model = _model(levels)
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    assert out.x_hat.shape == x.shape and out.loss.dim() == 0
    assert [tuple(o.indices.shape) for o in out.levels] == [(2, s, s) for s in sides]
    assert [tuple(o.z_q.shape) for o in out.levels] == [(2, s, s, 4) for s in sides]
    assert model.downsampling == tuple(64 // s for s in sides)
    indices = model.encode(x)
    for keep in range(1, levels + 1):
        assert model.decode(indices, keep=keep).shape == x.shape
    with pytest.raises(ValueError, match="divisible by"):
        model(torch.rand(1, 3, 66, 66))


def test_each_codebook_gets_gradient_only_from_its_own_loss():
    model = _model(3)
    out = model(torch.rand(2, 3, 64, 64))
    for level in range(3):
        model.zero_grad(set_to_none=True)
        out.levels[level].codebook_loss.backward(retain_graph=True)
        grads = [q.codebook.grad for q in model.quantizers]
        assert grads[level] is not None and grads[level].abs().sum() > 0
        assert all(g is None or g.abs().sum() == 0 for i, g in enumerate(grads) if i != level)
    model.zero_grad(set_to_none=True)
    (out.recon_loss + sum(o.commitment_loss for o in out.levels)).backward()
    assert all(q.codebook.grad is None or q.codebook.grad.abs().sum() == 0 for q in model.quantizers)
    assert model.encoder.net[0].weight.grad.abs().sum() > 0  # the encoder learns from the rest


def test_ema_codebooks_move_only_with_their_own_assignments():
    model = _model(2, kind="ema")
    before = [q.codebook.detach().clone() for q in model.quantizers]
    model.train()
    model(torch.rand(2, 3, 64, 64))
    after = [q.codebook.detach() for q in model.quantizers]
    assert all(not torch.equal(a, b) for a, b in zip(after, before))  # each level's EMA update ran
    model.eval()
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(q.codebook, a) for q, a in zip(model.quantizers, after))  # nothing moves in eval


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="1, 2 or 3"):
        HierarchicalVQVAE(MODEL, QuantizerConfig(), levels=4)
    with pytest.raises(ValueError, match="vq or ema"):
        HierarchicalVQVAE(MODEL, QuantizerConfig(kind="sq"), levels=2)
    with pytest.raises(ValueError, match="need 2 index maps"):
        _model(2).decode([torch.zeros(1, 16, 16, dtype=torch.long)], keep=1)
