"""WaveNet: causality and receptive field by gradients, conditioning alignment, incremental == naive generation,
temperature, errors."""

import pytest
import torch
import torch.nn.functional as F

import priors.wavenet as wavenet
from priors.sampling import gumbel_noise
from priors.wavenet import WaveNet, build_code_prior

K = 7


pytestmark = pytest.mark.usefixtures("one_thread")


def _net(layers=3, cycles=2, kernel_size=2, seed=0, **kw):
    torch.manual_seed(seed)
    return WaveNet(K, 8, 6, layers, cycles, kernel_size, **kw).double().eval()


def _symbols(shape, seed=1, k=K):
    return torch.randint(0, k, shape, generator=torch.Generator().manual_seed(seed))


def _input_gradient(net, t, length=40, **cond):
    """Per-position gradient magnitude ``[T]`` of ``logits[:, :, t].sum()`` w.r.t. the input embeddings."""
    emb = torch.randn(2, net.residual_channels, length, dtype=torch.double, requires_grad=True)
    net.forward_embedded(emb, **cond)[:, :, t].sum().backward()
    return emb.grad.abs().sum(dim=(0, 1))


@pytest.mark.parametrize("t", [0, 1, 5, 16, 39])
def test_logits_at_t_see_only_earlier_inputs(t):
    grad = _input_gradient(_net(), t)
    assert torch.all(grad[t:] == 0), "logits see the current or a later symbol"
    if t > 0:
        assert grad[t - 1] > 0, "logits do not see the previous symbol"


@pytest.mark.parametrize("layers, cycles, kernel_size", [(3, 2, 2), (4, 1, 2), (2, 2, 3)])
def test_receptive_field_matches_formula_and_gradients(layers, cycles, kernel_size):
    net = _net(layers, cycles, kernel_size)
    rf = (kernel_size - 1) * cycles * (2 ** layers - 1) + 1
    assert net.receptive_field == rf
    t = 45
    grad = _input_gradient(net, t, length=48)
    assert torch.all(grad[:t - rf] == 0) and torch.all(grad[t:] == 0)
    assert torch.all(grad[t - rf:t] > 0), "a position inside the receptive field is invisible"


def test_changing_later_symbols_leaves_earlier_logits_unchanged():
    net = _net(global_classes=3)
    x, ids = _symbols((2, 30)), torch.tensor([0, 2])
    y = x.clone()
    y[:, 17:] = (y[:, 17:] + 1) % K
    assert torch.equal(net(x, global_ids=ids)[..., :18], net(y, global_ids=ids)[..., :18])
    assert not torch.allclose(net(x, global_ids=ids)[..., 18], net(y, global_ids=ids)[..., 18])


def test_local_frames_are_held_for_local_hop_steps():
    """``local_hop`` = nearest-neighbour upsampling of the local map followed by the per-layer 1×1 convolution."""
    coarse = _net(local_channels=3, local_hop=4)
    fine = _net(local_channels=3)
    fine.load_state_dict(coarse.state_dict())
    x, local = _symbols((2, 24)), torch.randn(2, 3, 6, dtype=torch.double)
    assert torch.allclose(coarse(x, local), fine(x, local.repeat_interleave(4, dim=-1)), atol=1e-12)
    local.requires_grad_(True)
    coarse.forward_embedded(coarse.embedding(x).transpose(1, 2), local)[:, :, 13].sum().backward()
    seen = local.grad.abs().sum(dim=(0, 1)) > 0
    # frame 13 // 4 = 3 directly; earlier frames through earlier positions' activations; never a later frame
    assert seen.tolist() == [True, True, True, True, False, False]


def test_global_ids_change_the_logits():
    net = _net(global_classes=3, global_dim=4)
    x = _symbols((2, 10))
    assert not torch.allclose(net(x, global_ids=torch.tensor([0, 0])), net(x, global_ids=torch.tensor([1, 2])))


CONDITIONS = {
    "unconditional": dict(),
    "local": dict(local_channels=3),
    "local_hop": dict(local_channels=3, local_hop=5),
    "global": dict(global_classes=4, global_dim=5),
    "global_onehot_k3": dict(global_classes=4, kernel_size=3),
}


def _cond(kw, batch, length):
    local = (torch.randn(batch, kw["local_channels"], length // kw.get("local_hop", 1), dtype=torch.double)
             if "local_channels" in kw else None)
    return dict(local=local, global_ids=torch.arange(batch) % kw["global_classes"] if "global_classes" in kw else None)


@pytest.mark.parametrize("kind", sorted(CONDITIONS))
def test_incremental_generation_equals_naive(kind):
    kw = CONDITIONS[kind]
    net, batch, length = _net(**kw), 3, 35
    cond = _cond(kw, batch, length)
    draws = [net.generate(length, **cond, batch=batch, generator=torch.Generator().manual_seed(2), method=method)
             for method in ("incremental", "naive")]
    assert draws[0].shape == (batch, length) and draws[0].dtype == torch.long
    assert torch.equal(*draws)
    assert len(set(draws[0].flatten().tolist())) > 1


def test_incremental_equals_naive_across_noise_blocks(monkeypatch):
    monkeypatch.setattr(wavenet, "NOISE_BLOCK", 8)
    net = _net(local_channels=2, global_classes=2)
    cond = _cond(dict(local_channels=2, global_classes=2), 2, 21)
    draws = [net.generate(21, **cond, generator=torch.Generator().manual_seed(3), method=m)
             for m in ("incremental", "naive")]
    assert torch.equal(*draws)


def test_explicit_noise_is_used_and_generation_leaves_no_trace():
    net = _net(global_classes=2).train()
    noise = gumbel_noise((2, 20, K), torch.Generator().manual_seed(4), dtype=torch.double)
    ids = torch.tensor([1, 0])
    a = net.generate(20, global_ids=ids, noise=noise)
    assert torch.equal(a, net.generate(20, global_ids=ids, noise=noise, method="naive"))
    assert net.training and not a.is_inference() and not a.requires_grad
    b = net.sample((2, 20), cond=ids, generator=torch.Generator().manual_seed(4))
    c = net.sample((2, 20), cond=ids, generator=torch.Generator().manual_seed(4))
    assert torch.equal(b, c)


def test_temperature_limits_greedy_and_pure_noise():
    net = _net(local_channels=2)
    local = torch.randn(2, 2, 25, dtype=torch.double)
    greedy = net.generate(25, local, generator=torch.Generator().manual_seed(5), temperature=1e-9)
    assert torch.equal(greedy, net(greedy, local).argmax(dim=1))  # each step the mode given the drawn past
    noise = gumbel_noise((2, 25, K), torch.Generator().manual_seed(6), dtype=torch.double)
    hot = net.generate(25, local, noise=noise, temperature=1e9)
    assert torch.equal(hot, noise.argmax(dim=-1))
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            net.generate(5, local[..., :5], temperature=bad)


def test_loss_is_cross_entropy_in_nats_per_symbol():
    net = _net(global_classes=2)
    x, ids = _symbols((2, 16)), torch.tensor([0, 1])
    assert torch.allclose(net.loss(x, global_ids=ids), F.cross_entropy(net(x, global_ids=ids), x))


def test_code_prior_is_a_speaker_conditional_wavenet():
    prior = build_code_prior(codebook_size=16, num_speakers=3, residual_channels=8, skip_channels=8,
                             dilation_layers=3, dilation_cycles=1)
    assert prior.num_classes == 16 and prior.local_proj is None and prior.global_classes == 3
    codes = prior.sample((2, 12), cond=torch.tensor([0, 2]), generator=torch.Generator().manual_seed(0))
    assert codes.shape == (2, 12) and int(codes.max()) < 16
    assert torch.isfinite(prior.loss(codes, global_ids=torch.tensor([0, 2])))


def test_invalid_inputs_raise_value_error():
    net = _net(local_channels=2, local_hop=2, global_classes=3)
    x, local, ids = _symbols((2, 8)), torch.randn(2, 2, 4, dtype=torch.double), torch.tensor([0, 1])
    bad_calls = {
        "symbol range": lambda: net(torch.full((2, 8), K), local, ids),
        "negative symbol": lambda: net(-x - 1, local, ids),
        "float symbols": lambda: net(x.double(), local, ids),
        "1-d symbols": lambda: net(x[0], local, ids),
        "no steps": lambda: net(x[:, :0], local[..., :0], ids),
        "local missing": lambda: net(x, None, ids),
        "local channels": lambda: net(x, torch.randn(2, 3, 4, dtype=torch.double), ids),
        "local length": lambda: net(x, local[..., :3], ids),
        "local batch": lambda: net(x, local[:1], ids),
        "global missing": lambda: net(x, local, None),
        "global range": lambda: net(x, local, torch.tensor([0, 3])),
        "global dtype": lambda: net(x, local, ids.double()),
        "length vs local": lambda: net.generate(10, local, ids),
        "batch disagrees": lambda: net.generate(8, local, ids, batch=3),
        "noise shape": lambda: net.generate(8, local, ids, noise=torch.zeros(2, 8, K + 1)),
        "method": lambda: net.generate(8, local, ids, method="fast"),
        "length": lambda: net.generate(0, local[..., :0], ids),
        "unexpected local": lambda: _net()(x, local),
        "unexpected global": lambda: _net()(x, global_ids=ids),
        "kernel size": lambda: WaveNet(K, 8, 8, 2, 1, kernel_size=1),
        "sizes": lambda: WaveNet(0, 8, 8, 2, 1),
    }
    for name, call in bad_calls.items():
        with pytest.raises(ValueError):
            call()
            pytest.fail(name)


@pytest.mark.parametrize("kind", sorted(CONDITIONS))
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_static_buffer_steps_equal_naive(monkeypatch, kind, kernel_size):
    """The steps CUDA graphs replay (device-side step counter, ring slots by index), run eagerly on the CPU."""
    monkeypatch.setattr(wavenet, "NOISE_BLOCK", 20)  # blocks of 20 and 15: 16-step graphs, then one-step ones
    kw = CONDITIONS[kind]
    net, batch, length = _net(**{**kw, "kernel_size": kernel_size}), 2, 35
    cond = _cond(kw, batch, length)
    draws = [net.generate(length, **cond, batch=batch, generator=torch.Generator().manual_seed(7), method=method,
                          graphs=graphs) for method, graphs in (("incremental", True), ("naive", None))]
    assert torch.equal(*draws)
    with pytest.raises(ValueError, match="graphs"):
        net.generate(10, **_cond(kw, batch, 10), batch=batch, graphs="yes")


@pytest.mark.gpu
def test_cuda_graph_generation_equals_eager_and_naive_on_cuda():
    net = _net(local_channels=2, global_classes=2).cuda()
    cond = {k: v.cuda() for k, v in _cond(dict(local_channels=2, global_classes=2), 2, 40).items()}
    draws = [net.generate(40, **cond, generator=torch.Generator(device="cuda").manual_seed(8), method=m, graphs=g)
             for m, g in (("incremental", None), ("incremental", False), ("naive", None))]
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])
