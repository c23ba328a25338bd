"""The speaker adversary: gradient reversal, its own training signal, and its place in the speech VQ-VAE."""

import pytest
import torch
import torch.nn.functional as F

from audio.adversary import SpeakerAdversary, reverse_gradient
from audio.config import AudioModelConfig
from audio.model import AudioVQVAE
from core.config import QuantizerConfig


def test_reverse_gradient_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(3, 4, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.arange(4.0)).sum().backward()
    assert torch.equal(x.grad, -0.5 * torch.arange(4.0).expand(3, 4))


def test_adversary_learns_normally_while_the_codes_get_the_reversed_gradient():
    torch.manual_seed(0)
    adv = SpeakerAdversary(code_dim=5, num_speakers=3, weight=2.0, hidden=8)
    z = torch.randn(2, 7, 5, requires_grad=True)
    speaker = torch.tensor([0, 2])
    loss, acc = adv(z, speaker)
    loss.backward()
    # the same network without the reversal, by hand
    z2 = z.detach().clone().requires_grad_(True)
    logits = adv.net(z2.transpose(1, 2))  # [B, S, N]
    plain = F.cross_entropy(logits, speaker[:, None].expand(-1, 7))
    plain.backward()
    assert loss.item() == pytest.approx(plain.item())
    assert torch.allclose(z.grad, -2.0 * z2.grad)
    assert acc.item() == pytest.approx(float((logits.argmax(1) == speaker[:, None]).float().mean()))
    assert adv.net[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="positive"):
        SpeakerAdversary(5, 3, weight=0.0)


def test_model_adds_the_adversary_term_and_refuses_a_negative_weight():
    torch.manual_seed(0)
    cfg = AudioModelConfig(decoder="mel", encoder_channels=8, residual_channels=8, skip_channels=8,
                           dilation_layers=2, kernel_size=3, speaker_dim=4, mel_bands=20, mel_fft=256,
                           speaker_adversary=1.0)
    model = AudioVQVAE(cfg, QuantizerConfig(kind="vq", codebook_size=16, code_dim=8), 3)
    x = 0.1 * torch.randn(2, 640)
    out = model(x, torch.tensor([0, 1]))
    assert out.adversary_loss is not None and 0 <= out.adversary_accuracy <= 1
    assert out.loss.item() == pytest.approx((out.recon_loss + out.quantizer.loss + out.adversary_loss).item(),
                                            rel=1e-6)
    cfg.speaker_adversary = -1.0
    with pytest.raises(ValueError, match="speaker_adversary"):
        AudioVQVAE(cfg, QuantizerConfig(kind="vq", codebook_size=16, code_dim=8), 3)
