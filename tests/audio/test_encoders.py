"""The speech VQ-VAE's encoders: the paper's strided waveform encoder and the log-mel front end (``model.encoder``)."""

import pytest
import torch

from audio.config import AudioConfig, AudioModelConfig
from audio.encoders import MelEncoder
from audio.mel import MelSettings
from audio.model import AudioVQVAE
from core.config import ConfigError, QuantizerConfig, load_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _mel_encoder(layers=2, instance_norm=False):
    torch.manual_seed(0)
    return MelEncoder(MelSettings(16000, 64, 256, 20), 8, layers, 4, instance_norm)


def test_mel_encoder_gives_one_code_frame_per_hop_and_sees_a_bounded_window():
    enc = _mel_encoder(layers=2)
    x = (0.1 * torch.randn(2, 64 * 40)).requires_grad_()
    z = enc(x)
    assert z.shape == (2, 40, 4) and enc.receptive_field == 7
    # frame 20 depends on samples within ±(3 frames · 64 + half the 256-sample window) of sample 20·64, and on
    # nothing of the other item
    z[0, 20].sum().backward()
    touched = (x.grad[0] != 0).nonzero().squeeze(1)
    assert touched.min() >= 20 * 64 - 3 * 64 - 128 and touched.max() <= 20 * 64 + 3 * 64 + 128
    assert (x.grad[1] == 0).all()
    with pytest.raises(ValueError, match="multiple of 64"):
        enc(torch.zeros(1, 100))


def test_mel_encoder_instance_norm_centres_each_channel_before_the_projection():
    # with the hidden features zero-mean over time per item and channel, each code channel's time mean is the
    # output projection's bias, whatever the input; without the norm it is not
    x = 0.1 * torch.randn(3, 64 * 50)
    enc = _mel_encoder(instance_norm=True).eval()
    with torch.no_grad():
        means = enc(x).mean(1)  # [B, D]
    assert torch.allclose(means, enc.output.bias.expand_as(means), atol=1e-5)
    plain = _mel_encoder(instance_norm=False).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(x).mean(1), plain.output.bias.expand_as(means), atol=1e-3)


def test_model_builds_the_encoder_named_in_the_config_and_refuses_others(tmp_path):
    q = QuantizerConfig(codebook_size=16, code_dim=8)
    mel = AudioVQVAE(AudioModelConfig(decoder="mel", encoder="mel", encoder_channels=8, residual_channels=8,
                                      skip_channels=8, dilation_layers=2, kernel_size=3, mel_bands=20, mel_fft=256,
                                      encoder_mel_fft=256), q, 2)
    assert isinstance(mel.encoder, MelEncoder) and mel.encoder.mel.n_fft == 256
    out = mel(0.1 * torch.randn(2, 64 * 16), torch.tensor([0, 1]))
    assert out.mel.shape == (2, 20, 16) and torch.isfinite(out.loss)
    with pytest.raises(ConfigError, match="model.encoder"):
        load_config(AudioConfig, None, ["model.encoder=spectrogram"])
