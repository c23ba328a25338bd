"""The paper's speech VQ-VAE: 64× downsampling, objective per quantizer, training, generation, speaker conversion."""

import pytest
import torch
import torch.nn.functional as F

from audio.config import AudioModelConfig
from audio.model import AudioEncoder, AudioVQVAE, mu_law_decode, mu_law_encode
from core.config import QuantizerConfig

SPEAKERS = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(kind="vq", num_downsamples=6, **q):
    torch.manual_seed(0)
    cfg = AudioModelConfig(encoder_channels=16, num_downsamples=num_downsamples, residual_channels=8,
                           skip_channels=8, dilation_layers=4, dilation_cycles=1, speaker_dim=4)
    return AudioVQVAE(cfg, QuantizerConfig(kind=kind, codebook_size=16, code_dim=8, **q), SPEAKERS)


def _waves(batch, length, seed=0):
    """Sums of random sinusoids in [-0.9, 0.9]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000
    freq = 100 + 900 * torch.rand(batch, 3, 1, generator=g)
    return 0.3 * torch.sin(2 * torch.pi * freq * t).sum(1)


def test_encoder_downsamples_exactly_64x_with_the_paper_settings():
    model = AudioVQVAE(AudioModelConfig(), QuantizerConfig(codebook_size=512, code_dim=64), 4)
    assert model.hop == 64 and model.receptive_field == 2 * 1023 + 1
    z = model.z_e(_waves(1, 4096))
    assert z.shape == (1, 64, 64)
    with pytest.raises(ValueError, match="multiple of 64"):
        model.encode(_waves(1, 4096 + 32))
    with pytest.raises(ValueError):
        AudioEncoder(8, 6, 4)(torch.zeros(2, 1, 128))


@pytest.mark.parametrize("kind, extra", [("vq", {}), ("ema", {}), ("sq", {}), ("sq", {"variance": "elementwise"})])
def test_forward_shapes_and_objective(kind, extra):
    model = _model(kind, **extra)
    x, speaker = _waves(2, 512), torch.tensor([0, 2])
    out = model(x, speaker)
    assert out.logits.shape == (2, 256, 512)
    assert out.quantizer.indices.shape == (2, 8) and out.quantizer.z_q.shape == (2, 8, 8)
    targets = mu_law_encode(x, 256)
    assert torch.allclose(out.recon_loss, F.cross_entropy(out.logits, targets))
    weight = 1 / 64 if kind == "sq" else 1.0
    assert torch.allclose(out.loss, out.recon_loss + weight * out.quantizer.loss)
    assert torch.isfinite(out.loss) and out.quantizer.perplexity >= 1


def test_mu_law_round_trip():
    x = torch.linspace(-1, 1, 1001)
    levels = mu_law_encode(x, 256)
    assert levels.dtype == torch.long and int(levels.min()) == 0 and int(levels.max()) == 255
    assert (mu_law_decode(levels, 256) - x).abs().max() < 0.025  # half the largest μ-law step (~0.044 at ±1)
    assert torch.equal(mu_law_encode(torch.tensor([-3.0, 3.0]), 256), torch.tensor([0, 255]))


def test_loss_decreases_over_a_few_adam_steps_on_a_fixed_batch():
    model = _model(num_downsamples=3)
    x, speaker = _waves(2, 256), torch.tensor([0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        out = model(x, speaker)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.9 * losses[0], losses  # 5.56 → 4.39 nats per sample


def test_gradients_reach_encoder_codebook_and_decoder():
    model = _model("vq")
    model(_waves(2, 256), torch.tensor([0, 1])).loss.backward()
    for name, param in [("encoder", model.encoder.net[0].weight), ("codebook", model.quantizer.codebook),
                        ("local", model.decoder.local_proj.weight), ("speaker", model.decoder.global_embedding.weight),
                        ("decoder", model.decoder.layers[0].conv.weight), ("head", model.decoder.head[3].weight)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_decode_of_encode_and_speaker_conversion():
    model = _model().eval()
    x = _waves(2, 256)
    codes = model.encode(x)
    assert codes.shape == (2, 4) and codes.dtype == torch.long
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    same = model.decode(codes, torch.tensor([0, 1]), generator=gen())
    assert same.shape == (2, 256) and same.dtype == torch.float32 and same.abs().max() <= 1
    converted = model.decode(codes, torch.tensor([2, 2]), generator=gen())
    assert not torch.equal(same, converted)  # same codes and noise, another speaker
    again = model.decode(codes, torch.tensor([0, 1]), generator=gen())
    assert torch.equal(same, again)


def test_decode_incremental_equals_naive_in_float64():
    model = _model(num_downsamples=2).double().eval()
    codes = torch.randint(0, 16, (2, 6), generator=torch.Generator().manual_seed(1))
    speaker = torch.tensor([1, 2])
    draws = [model.decode_mu_law(codes, speaker, generator=torch.Generator().manual_seed(3), method=m)
             for m in ("incremental", "naive")]
    assert draws[0].shape == (2, 24) and torch.equal(*draws)


def test_bad_inputs_raise_value_error():
    model = _model()
    with pytest.raises(ValueError):
        model(_waves(2, 128), torch.tensor([0, SPEAKERS]))  # speaker out of range
    with pytest.raises(ValueError):
        model(_waves(2, 128).unsqueeze(1), torch.tensor([0, 1]))  # [B, 1, L]
    with pytest.raises(ValueError):
        model.decode(torch.zeros(2, 2, dtype=torch.long), torch.tensor([0]))  # batch mismatch
    with pytest.raises(ValueError):
        model.decode(torch.full((1, 2), 16), torch.tensor([0]))  # code out of range
    with pytest.raises(ValueError):
        AudioVQVAE(AudioModelConfig(), QuantizerConfig(), 0)
