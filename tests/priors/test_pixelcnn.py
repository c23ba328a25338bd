"""Gated PixelCNN prior: exact causality without blind spot, cached == naive sampling, conditioning, errors, loss."""

import pytest
import torch
import torch.nn.functional as F

from priors.pixelcnn import GatedPixelCNN
from priors.sampling import gumbel_noise

K = 8


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(num_codes=K, channels=16, num_layers=4, kernel_size=5, seed=0, **kw):
    torch.manual_seed(seed)
    return GatedPixelCNN(num_codes, channels, num_layers, kernel_size, **kw).double().eval()


def _codes(shape, seed=1, k=K):
    return torch.randint(0, k, shape, generator=torch.Generator().manual_seed(seed))


def _input_gradient(model, r, c, height=8, width=8):
    """Per-position gradient magnitude ``[H, W]`` of ``logits[:, :, r, c].sum()`` w.r.t. the embedded codes."""
    emb = torch.randn(2, model.channels, height, width, dtype=torch.double, requires_grad=True)
    model._forward_embedded(emb)[:, :, r, c].sum().backward()
    return emb.grad.abs().sum(dim=(0, 1))


@pytest.mark.parametrize("r, c", [(0, 0), (0, 5), (3, 0), (4, 3), (2, 7), (7, 7)])
def test_output_depends_on_exactly_the_positions_before_it(r, c):
    # 4 layers of k = 5 reach 9 rows up and 8 columns sideways: the whole 8×8 past, so no blind spot may hide.
    grad = _input_gradient(_model(), r, c)
    before = torch.arange(64).reshape(8, 8) < r * 8 + c  # raster order
    assert torch.all(grad[~before] == 0), "logits see the current or a later position"
    assert torch.all(grad[before] > 0), "some earlier position is invisible (blind spot)"


def test_no_blind_spot_up_right_of_the_current_position():
    grad = _input_gradient(_model(num_layers=3, kernel_size=3), 4, 2)
    assert grad[3, 3] > 0 and grad[3, 4] > 0  # (r − 1, c + 1), (r − 1, c + 2): masked PixelCNNs miss these
    deep = _input_gradient(_model(num_layers=8, kernel_size=3), 4, 0)
    assert deep[3, 7] > 0  # (r − 1, W − 1) from the first column
    assert torch.all(deep[4:] == 0)


def test_single_layer_sees_only_its_causal_neighbourhood():
    grad = _input_gradient(_model(num_layers=1, kernel_size=3), 4, 4)
    seen = {tuple(p) for p in (grad > 0).nonzero().tolist()}
    # type-A horizontal: (4, 2), (4, 3); vertical (2 × 3 kernel) shifted down: rows 2–3, columns 3–5
    assert seen == {(4, 2), (4, 3), (2, 3), (2, 4), (2, 5), (3, 3), (3, 4), (3, 5)}


def test_changing_later_codes_leaves_earlier_logits_unchanged():
    model = _model()
    codes = _codes((2, 6, 7))
    later = codes.clone()
    later[:, 3, 4:] = (later[:, 3, 4:] + 1) % K
    later[:, 4:] = (later[:, 4:] + 3) % K
    a, b = model(codes).reshape(2, K, -1), model(later).reshape(2, K, -1)
    pos = 3 * 7 + 4
    torch.testing.assert_close(a[..., :pos + 1], b[..., :pos + 1], rtol=0, atol=0)
    assert not torch.allclose(a[..., pos + 1:], b[..., pos + 1:])


def _conditioning(kind, batch, height, width):
    if kind == "class":
        return dict(num_classes=3), torch.tensor([2, 0, 1][:batch]), None
    if kind == "vector":
        return dict(cond_dim=4), torch.randn(batch, 4), None  # float32 vector: cast to the model's dtype
    if kind == "spatial":
        return dict(spatial_channels=2), None, torch.randn(batch, 2, height, width, dtype=torch.double)
    if kind == "class+spatial":
        return (dict(num_classes=3, spatial_channels=2), torch.tensor([1, 2, 0][:batch]),
                torch.randn(batch, 2, height, width, dtype=torch.double))
    return {}, None, None


@pytest.mark.parametrize("kind", ["none", "class", "vector", "spatial", "class+spatial"])
def test_cached_sampling_equals_naive_sampling(kind):
    torch.manual_seed(3)
    batch, height, width = 3, 6, 7
    kw, cond, spatial = _conditioning(kind, batch, height, width)
    model = _model(num_layers=3, **kw)
    draws = {method: model.sample((batch, height, width), cond, spatial, temperature=0.8,
                                  generator=torch.Generator().manual_seed(5), method=method)
             for method in ("naive", "cached")}
    assert draws["cached"].shape == (batch, height, width) and draws["cached"].dtype == torch.long
    assert torch.equal(draws["naive"], draws["cached"])
    assert draws["cached"].unique().numel() > 2  # a real draw, not a constant grid


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["none", "class+spatial"])
def test_cuda_graph_sampling_equals_eager_and_naive_on_cuda(kind):
    torch.manual_seed(3)
    batch, height, width = 2, 5, 6
    kw, cond, spatial = _conditioning(kind, batch, height, width)
    model = _model(num_layers=3, **kw).cuda()
    cond = cond.cuda() if cond is not None else None
    spatial = spatial.cuda() if spatial is not None else None
    draws = [model.sample((batch, height, width), cond, spatial, generator=torch.Generator("cuda").manual_seed(5),
                          method=method, graphs=graphs)
             for method, graphs in (("cached", None), ("cached", False), ("naive", None))]
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])


@pytest.mark.parametrize("kind", ["none", "class+spatial"])
def test_cached_sampler_computes_the_forward_logits_of_its_own_sample(kind):
    # stronger than equal samples: a small error in the cached features would rarely flip an argmax
    batch, height, width = 2, 5, 6
    kw, cond, spatial = _conditioning(kind, batch, height, width)
    model = _model(num_layers=3, kernel_size=3, **kw)
    noise = gumbel_noise((batch, height, width, K), torch.Generator().manual_seed(2), dtype=torch.double)
    logits = torch.full((batch, K, height, width), float("nan"), dtype=torch.double)
    with torch.no_grad():
        codes = model._sample_cached(noise, cond, spatial, 1.0, logits_out=logits)
        torch.testing.assert_close(logits, model(codes, cond, spatial), rtol=1e-12, atol=1e-12)


def test_sampling_restores_training_mode_and_uses_the_generator():
    model = _model().train()
    a = model.sample((2, 4, 4), generator=torch.Generator().manual_seed(0))
    b = model.sample((2, 4, 4), generator=torch.Generator().manual_seed(0))
    c = model.sample((2, 4, 4), generator=torch.Generator().manual_seed(1))
    assert model.training
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_temperature_limits_greedy_and_pure_noise():
    model = _model()
    shape = (2, 5, 6)
    cold = model.sample(shape, temperature=1e-9, generator=torch.Generator().manual_seed(0))
    # greedy decoding is a fixed point: every code is the argmax of the logits computed from its own past
    assert torch.equal(model(cold).argmax(dim=1), cold)
    hot = model.sample(shape, temperature=1e9, generator=torch.Generator().manual_seed(0))
    noise = gumbel_noise((*shape, K), torch.Generator().manual_seed(0), dtype=torch.double)
    assert torch.equal(hot, noise.argmax(dim=-1))  # logits vanish: the Gumbel noise alone decides
    assert not torch.equal(cold, hot)


@pytest.mark.parametrize("kind", ["class", "vector", "spatial"])
def test_conditioning_changes_the_logits(kind):
    kw, cond, spatial = _conditioning(kind, 2, 5, 5)
    model = _model(**kw)
    codes = _codes((2, 5, 5))
    base = model(codes, cond, spatial)
    if kind == "class":
        other = model(codes, (cond + 1) % 3, spatial)
    elif kind == "vector":
        other = model(codes, cond + 1.0, spatial)
    else:
        other = model(codes, cond, spatial.flip(-1))
    assert (base - other).abs().amax(dim=(1, 2, 3)).min() > 1e-6  # every batch element changes


def test_invalid_inputs_raise_value_error():
    plain, labelled, spatial = _model(), _model(num_classes=3), _model(spatial_channels=2)
    codes = _codes((2, 4, 4))
    for bad in (codes + K, codes - K, codes.float(), codes[0]):
        with pytest.raises(ValueError):
            plain(bad)
    with pytest.raises(ValueError, match="unconditional"):
        plain(codes, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="required"):
        labelled(codes)
    with pytest.raises(ValueError):
        labelled(codes, torch.tensor([0, 3]))  # label out of range
    with pytest.raises(ValueError):
        labelled(codes, torch.tensor([0]))  # wrong batch
    with pytest.raises(ValueError, match="spatial"):
        spatial(codes, spatial=torch.randn(2, 2, 4, 5, dtype=torch.double))
    with pytest.raises(ValueError, match="spatial"):
        spatial(codes, spatial=torch.randn(2, 3, 4, 4, dtype=torch.double))
    with pytest.raises(ValueError):
        spatial(codes)
    with pytest.raises(ValueError):
        plain(codes, spatial=torch.randn(2, 2, 4, 4, dtype=torch.double))
    with pytest.raises(ValueError):
        labelled.sample((2, 3, 3))
    with pytest.raises(ValueError):
        spatial.sample((2, 3, 3), spatial=torch.randn(2, 2, 4, 3, dtype=torch.double))
    with pytest.raises(ValueError):
        plain.sample((1, 3, 3), temperature=0.0)
    with pytest.raises(ValueError):
        plain.sample((1, 3, 3), method="fast")
    with pytest.raises(ValueError):
        GatedPixelCNN(K, 8, 2, kernel_size=4)
    with pytest.raises(ValueError):
        GatedPixelCNN(K, 8, 2, num_classes=3, cond_dim=4)


def test_loss_is_cross_entropy_of_the_forward():
    model = _model(num_classes=3)
    codes, labels = _codes((3, 5, 6)), torch.tensor([0, 2, 1])
    expected = F.cross_entropy(model(codes, labels), codes)
    torch.testing.assert_close(model.loss(codes, labels), expected)
    assert model.loss(codes, labels).dim() == 0


def test_a_few_adam_steps_overfit_a_tiny_batch():
    torch.manual_seed(0)
    model = GatedPixelCNN(K, 16, 3, 3)
    rows, cols = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    codes = torch.stack([(rows + cols + s) % K for s in range(4)])  # [4, 6, 6] diagonals: predictable from the past
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model.loss(codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
