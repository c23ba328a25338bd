"""The VQ-VAE-2 model: shapes at every level, each codebook trained by its own loss alone, progressive decoding."""

import math

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


def test_progressive_decoding_fills_the_levels_left_out_with_zeros():
    model = _model(3).eval()
    x = torch.rand(2, 3, 64, 64)
    indices = model.encode(x)
    stages = model.progressive(x)
    assert len(stages) == 3 and all(s.shape == x.shape and 0 <= s.min() and s.max() <= 1 for s in stages)
    torch.testing.assert_close(stages[-1], model(x).x_hat.clamp(0, 1))  # all levels = the forward's reconstruction
    for keep in (1, 2):
        changed = [(i + 1) % 16 if level < 3 - keep else i for level, i in enumerate(indices)]
        torch.testing.assert_close(model.decode(changed, keep=keep), model.decode(indices, keep=keep))  # unused
        assert not torch.allclose(model.decode(changed), model.decode(indices))  # all levels: they count
    z_qs = [q.lookup(i) for q, i in zip(model.quantizers, indices)]
    with torch.no_grad():
        top_alone = model._decode([torch.zeros_like(z_qs[0]), torch.zeros_like(z_qs[1]), z_qs[2]])
    torch.testing.assert_close(model.decode(indices, keep=1), top_alone)


def test_builder_loss_terms_and_reconstruction_nll():
    from image.hierarchy import build_image_vqvae
    from image.model import ImageVQVAE

    assert isinstance(build_image_vqvae(MODEL, QuantizerConfig(codebook_size=16, code_dim=4)), ImageVQVAE)
    two = build_image_vqvae(ImageModelConfig(hidden_channels=16, residual_channels=8, levels=2),
                            QuantizerConfig(kind="ema", codebook_size=16, code_dim=4))
    assert isinstance(two, HierarchicalVQVAE) and two.level_names == ("bottom", "top") and two.side_multiple == 8
    assert two.latent_shape(64, 32) == [(16, 8), (8, 4)]
    out = two(torch.rand(2, 3, 32, 32))
    terms = out.loss_terms()
    assert {"loss", "recon_loss", "quantizer_loss", "top/perplexity", "bottom/commitment_loss"} <= set(terms)
    assert float(terms["quantizer_loss"]) == pytest.approx(float(sum(o.loss.detach() for o in out.levels)))
    # a decoder that outputs 0.5 everywhere and σ → 0: levels 127 and 128 each get half the mass, 1 bit per sub-pixel
    model = _model(2).eval()
    with torch.no_grad():
        last = model.decoder.net[-1]
        last.weight.zero_()
        last.bias.zero_()
        model.pixel_log_sigma.fill_(-12.0)
    x = torch.randint(127, 129, (2, 3, 32, 32)).float() / 255
    nll = model.reconstruction_nll(x, model.encode(x))
    torch.testing.assert_close(nll, torch.full((2,), 3 * 32 * 32 * math.log(2)), rtol=1e-5, atol=1e-3)


def test_level_dropout_decodes_some_training_items_from_their_top_levels_alone():
    torch.manual_seed(0)
    cfg = ImageModelConfig(hidden_channels=16, residual_channels=8, num_residual_blocks=1, levels=3,
                           level_dropout=0.5)
    model = HierarchicalVQVAE(cfg, QuantizerConfig(codebook_size=16, code_dim=4), levels=3)
    z_qs = [torch.ones(400, s, s, 4) for s in (4, 2, 1)]
    dropped = model._drop_levels(z_qs)
    kept = torch.stack([z.flatten(1).amax(1) for z in dropped], 1)  # [B, L]: 1 where the level is decoded
    assert torch.all(kept[:, 2] == 1)  # the top level always
    patterns = {tuple(row.tolist()) for row in kept}
    assert patterns == {(1.0, 1.0, 1.0), (0.0, 1.0, 1.0), (0.0, 0.0, 1.0)}  # never a hole below a kept level
    assert 0.35 < float((kept[:, 0] == 0).float().mean()) < 0.65
    model.eval()
    assert all(torch.equal(a, b) for a, b in zip(model._drop_levels(z_qs), z_qs))  # evaluation decodes every level
