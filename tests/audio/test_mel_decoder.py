"""The ``mel`` decoder of the speech VQ-VAE, the log-mel analysis and its Griffin-Lim rendering."""

import pytest
import torch

from audio.clips import decode_as
from audio.config import AudioModelConfig
from audio.mel import MelSettings, cepstral_postfilter, griffin_lim, log_mel, spectral_envelope
from audio.mel_decoder import MelDecoder
from audio.model import AudioVQVAE
from core.config import QuantizerConfig, check_limits

SPEAKERS = 3

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(instance_norm=False, kind="vq"):
    torch.manual_seed(0)
    cfg = AudioModelConfig(decoder="mel", encoder_channels=16, residual_channels=8, skip_channels=8,
                           dilation_layers=3, dilation_cycles=1, kernel_size=3, speaker_dim=4, mel_bands=20,
                           mel_fft=256, griffin_lim_iters=4, instance_norm=instance_norm)
    return AudioVQVAE(cfg, QuantizerConfig(kind=kind, codebook_size=16, code_dim=8), SPEAKERS)


def _waves(batch, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000
    freq = 100 + 900 * torch.rand(batch, 3, 1, generator=g)
    return 0.3 * torch.sin(2 * torch.pi * freq * t).sum(1)


@pytest.mark.parametrize("kind", ["vq", "ema", "sq"])
def test_forward_shapes_and_l1_objective(kind):
    model = _model(kind=kind)
    x, speaker = _waves(2, 640), torch.tensor([0, 2])
    with torch.no_grad():
        out = model(x, speaker)
    assert out.logits is None and out.mel.shape == (2, 20, 10)  # one frame per code
    target = log_mel(x, model.mel_settings)
    assert out.recon_loss == pytest.approx(float((out.mel - target).abs().mean()), rel=1e-6)
    # sq's latent term is per code frame: weighed by 1 / bands to match the L1's mean per band and frame
    weight = 1 / 20 if kind == "sq" else 1.0
    assert out.loss == pytest.approx(float(out.recon_loss + weight * out.quantizer.loss), rel=1e-6)
    assert not model.autoregressive and model.receptive_field == (2 * (1 + 2 + 4) + 1) * 64


def test_speaker_conditioning_changes_the_output_and_decode_matches_forward():
    model = _model().eval()
    x = _waves(2, 640)
    out = model(x, torch.tensor([0, 1]))
    codes = model.encode(x)
    assert torch.allclose(model.decode_mel(codes, torch.tensor([0, 1])), out.mel, atol=1e-6)
    other = model.decode_mel(codes, torch.tensor([2, 2]))
    assert not torch.allclose(other, out.mel, atol=1e-3)
    wave = model.decode(codes, torch.tensor([0, 1]))
    assert wave.shape == (2, 640) and wave.abs().max() <= 1
    assert torch.equal(wave, model.decode(codes, torch.tensor([0, 1])))  # Griffin-Lim from zero phase: deterministic


def test_decode_unquantized_bypasses_the_codebook_and_nothing_else():
    model = _model().eval()
    x, speaker = _waves(1, 640), torch.tensor([1])
    direct = model.decode_unquantized(x, speaker)  # [1, 20, 10]
    assert direct.shape == (1, 20, 10)
    assert not torch.allclose(direct, model.decode_mel(model.encode(x), speaker), atol=1e-4)
    with torch.no_grad():  # make each frame's z_e a code: the nearest codes are then z_e itself
        model.quantizer.codebook[:10] = model.z_e(x)[0]
    assert torch.allclose(model.decode_mel(model.encode(x), speaker), direct, atol=1e-6)
    wavenet = AudioVQVAE(AudioModelConfig(encoder_channels=8, residual_channels=8, skip_channels=8,
                                          dilation_layers=2, speaker_dim=4),
                         QuantizerConfig(codebook_size=16, code_dim=8), SPEAKERS)
    with pytest.raises(ValueError, match="decode_unquantized needs model.decoder=mel"):
        wavenet.decode_unquantized(x, speaker)


def test_gradients_reach_encoder_codebook_and_decoder():
    model = _model()
    model(_waves(2, 640), torch.tensor([0, 1])).loss.backward()
    dec = model.decoder
    for name, param in [("encoder", model.encoder.net[0].weight), ("codebook", model.quantizer.codebook),
                        ("local", dec.local_proj.weight), ("speaker", dec.speaker_embedding.weight),
                        ("conv", dec.convs[0].weight), ("head", dec.head[3].weight)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_receptive_field_is_centred_and_exact():
    torch.manual_seed(0)
    dec = MelDecoder(4, 5, 6, 6, dilation_layers=3, dilation_cycles=1, kernel_size=3, num_speakers=2, speaker_dim=3)
    z = torch.randn(1, 4, 40, requires_grad=True)
    dec(z, torch.tensor([1]))[0, :, 20].sum().backward()
    seen = (z.grad[0].abs().sum(0) > 0).nonzero().flatten()
    half = (dec.receptive_field - 1) // 2  # 7 frames each side
    assert seen.min() == 20 - half and seen.max() == 20 + half


def test_instance_norm_normalises_each_clip_and_channel_over_time():
    model = _model(instance_norm=True).eval()
    x = torch.cat([_waves(1, 1280), 5.0 * _waves(1, 1280, seed=1) + 0.1])  # another level and offset
    hidden = model.encoder.net[:-1](x.unsqueeze(1))  # [B, C, N] before the 1×1 projection
    assert torch.allclose(hidden.mean(-1), torch.zeros(2, 16), atol=1e-5)
    raw = model.encoder.net[:-2](x.unsqueeze(1))  # [B, C, N] the last ReLU's output
    by_hand = (raw - raw.mean(-1, keepdim=True)) / (raw.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    assert torch.allclose(hidden, by_hand, atol=1e-5) and raw.abs().sum() > 0
    plain = _model(instance_norm=False)
    assert not any(isinstance(m, torch.nn.InstanceNorm1d) for m in plain.encoder.modules())


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="odd kernel"):
        MelDecoder(4, 5, 6, 6, 3, 1, kernel_size=2, num_speakers=2, speaker_dim=3)
    with pytest.raises(ValueError, match="unknown model.decoder"):
        AudioVQVAE(AudioModelConfig(decoder="vocoder"), QuantizerConfig(), 2)
    model = _model()
    with pytest.raises(ValueError, match="wavenet"):
        model.decode_mu_law(torch.zeros(1, 2, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ValueError, match="speaker"):
        model.decode_mel(torch.zeros(1, 2, dtype=torch.long), torch.tensor([SPEAKERS]))
    with pytest.raises(ValueError):
        log_mel(torch.zeros(1, 10), MelSettings())


def test_log_mel_frames_and_griffin_lim_reproduces_the_spectrogram():
    settings = MelSettings(hop=64, n_fft=512, n_mels=40, griffin_lim_iters=32)
    x = _waves(1, 64 * 100, seed=3)
    mel = log_mel(x, settings)
    assert mel.shape == (1, 40, 100)
    y = griffin_lim(mel, settings)
    assert y.shape == x.shape
    again = log_mel(y, settings)
    loud = mel > mel.max() - 4  # bands within 4 nats (35 dB) of the peak
    err = (again - mel)[loud].abs().mean()
    noise = log_mel(torch.randn_like(x) * x.std(), settings)
    assert err < 0.5 < (noise - mel)[loud].abs().mean()  # close to the target, far from noise of the same power


def test_spectral_envelope_keeps_the_slow_shape_and_removes_the_harmonic_ripple():
    bands = torch.arange(80.0)
    slope = -0.05 * bands  # a smooth tilt, inside the first cepstra
    ripple = torch.cos(torch.pi * 40 * (bands + 0.5) / 80)  # one DCT basis vector far above 20 coefficients
    frames = (slope + ripple)[None, :, None].repeat(2, 1, 3)  # [B, M, N]
    env = spectral_envelope(frames, 20)
    assert (env - spectral_envelope(slope[None, :, None].repeat(2, 1, 3), 20)).abs().max() < 1e-4
    assert torch.allclose(spectral_envelope(env, 20), env, atol=1e-5)  # a projection
    assert torch.allclose(spectral_envelope(frames, 80), frames, atol=1e-5)  # every coefficient kept: identity
    with pytest.raises(ValueError, match="cepstra"):
        spectral_envelope(frames, 81)


def _envelope_run(**weights):
    """A small mel VQ-VAE with the given envelope loss weights (6 cepstra), its output on two clips and their log-mels."""
    torch.manual_seed(0)
    cfg = AudioModelConfig(decoder="mel", encoder_channels=16, residual_channels=8, skip_channels=8,
                           dilation_layers=3, dilation_cycles=1, kernel_size=3, speaker_dim=4, mel_bands=20,
                           mel_fft=256, envelope_cepstra=6, **weights)
    model = AudioVQVAE(cfg, QuantizerConfig(kind="vq", codebook_size=16, code_dim=8), 3)
    x = _waves(2, 640)
    with torch.no_grad():
        out = model(x, torch.tensor([0, 2]))
    return out, log_mel(x, model.mel_settings)


def test_envelope_loss_adds_the_weighted_l1_of_the_envelopes():
    out, target = _envelope_run(envelope_loss=0.5)
    by_hand = (spectral_envelope(out.mel, 6) - spectral_envelope(target, 6)).abs().mean()
    assert out.envelope_loss == pytest.approx(float(by_hand), rel=1e-5)
    assert out.loss == pytest.approx(float(out.recon_loss + out.quantizer.loss + 0.5 * by_hand), rel=1e-5)
    assert out.envelope_delta_loss is None


def test_envelope_delta_loss_adds_the_weighted_l1_of_the_envelope_transitions():
    out, target = _envelope_run(envelope_delta_loss=2.0)
    env_hat, env = spectral_envelope(out.mel, 6), spectral_envelope(target, 6)
    by_hand = ((env_hat[..., 1:] - env_hat[..., :-1]) - (env[..., 1:] - env[..., :-1])).abs().mean()
    assert out.envelope_loss is None and out.envelope_delta_loss == pytest.approx(float(by_hand), rel=1e-5)
    assert out.loss == pytest.approx(float(out.recon_loss + out.quantizer.loss + 2.0 * by_hand), rel=1e-5)


def test_decode_as_pads_to_whole_codes_and_cuts_back_for_every_speaker():
    model = _model(instance_norm=True).eval()
    wave = _waves(1, 640 + 20)[0]  # not a whole number of codes
    out = decode_as(model, wave, torch.tensor([0, 2]))
    assert out.shape == (2, 660)
    padded = torch.nn.functional.pad(wave, (0, 44))[None]
    codes = model.encode(padded)
    by_hand = model.decode(codes.expand(2, -1), torch.tensor([0, 2]))[:, :660]
    assert torch.equal(out, by_hand)


def test_log_mel_is_float32_and_unchanged_under_bf16_autocast():
    # the log-mel frames are the decoder's target and the encoder's input: a bf16 run must not round them
    settings = MelSettings(hop=64, n_fft=256, n_mels=20)
    wave = torch.randn(2, 1024) * 0.1
    plain = log_mel(wave, settings)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = log_mel(wave, settings)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, plain)


def test_cepstral_postfilter_scales_every_cepstrum_from_the_third_and_keeps_level_and_tilt():
    bands = 20
    m = torch.arange(bands, dtype=torch.float64)
    basis = torch.stack([torch.cos(torch.pi * k * (m + 0.5) / bands) for k in range(bands)])  # [C, M] DCT-II rows
    level_and_tilt = (2.0 + 0.7 * basis[1])[None, :, None].float().repeat(1, 1, 3)  # the first two cepstra only
    ripple = basis[5][None, :, None].float().repeat(1, 1, 3)  # a single fifth cepstrum
    frames = level_and_tilt + ripple
    out = cepstral_postfilter(frames, 1.5)
    # by hand: the level and the tilt stay, the ripple is scaled
    assert torch.allclose(out, level_and_tilt + 1.5 * ripple, atol=1e-5)
    assert torch.allclose(out.mean(dim=1), frames.mean(dim=1), atol=1e-5)  # each frame's mean log level kept
    assert cepstral_postfilter(frames, 1.0) is frames  # 1: off
    with pytest.raises(ValueError, match="beta"):
        cepstral_postfilter(frames, 0.0)


def test_decode_renders_the_postfiltered_frames_and_the_limit_is_checked():
    model = _model().eval()
    codes = model.encode(_waves(1, 640))
    plain = model.decode(codes, torch.tensor([1]))
    model.model_cfg.postfilter = 1.3
    sharpened = model.decode(codes, torch.tensor([1]))
    by_hand = griffin_lim(cepstral_postfilter(model.decode_mel(codes, torch.tensor([1])), 1.3),
                          model.mel_settings).clamp(-1, 1)
    assert torch.equal(sharpened, by_hand) and not torch.allclose(sharpened, plain, atol=1e-4)
    with pytest.raises(ValueError, match="postfilter"):
        check_limits(AudioModelConfig(postfilter=0.0), "model.")
