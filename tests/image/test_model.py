"""The paper's image VQ-VAE: shapes in both settings, encode/decode consistency, residual blocks, errors."""

import math

import pytest
import torch

from core.config import QuantizerConfig
from image.config import ImageModelConfig
from image.model import ImageVQVAE, ResidualBlock, discretized_gaussian_nll, to_levels


def _model(kind="vq", hidden=32, residual=8, **q):
    torch.manual_seed(0)
    return ImageVQVAE(ImageModelConfig(hidden_channels=hidden, residual_channels=residual),
                      QuantizerConfig(kind=kind, codebook_size=16, code_dim=8, **q))


def test_cifar_shape_32_to_8x8_latents_with_the_paper_width():
    model = ImageVQVAE(ImageModelConfig(), QuantizerConfig())  # 256 hidden units, K = 512, D = 64
    assert model.quantizer.codebook.shape == (512, 64)
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert out.x_hat.shape == x.shape and out.quantizer.indices.shape == (2, 8, 8)
    assert out.quantizer.z_q.shape == (2, 8, 8, 64) and model.latent_shape(32, 32) == (8, 8)


def test_imagenet_shape_128_to_32x32_latents():
    model = _model()
    x = torch.rand(1, 3, 128, 128)
    out = model(x)
    assert out.x_hat.shape == x.shape and out.quantizer.indices.shape == (1, 32, 32)


def test_several_codebooks_per_latent():
    model = _model(groups=10)
    out = model(torch.rand(2, 3, 32, 32))
    assert out.quantizer.indices.shape == (2, 8, 8, 10) and model.latent_shape(32, 32) == (8, 8, 10)


@pytest.mark.parametrize("kind, extra", [("vq", {}), ("ema", {}), ("sq", {}), ("sq", {"variance": "elementwise"})])
def test_decode_of_encode_equals_forward_in_eval(kind, extra):
    model = _model(kind, **extra).eval()
    x = torch.rand(3, 3, 16, 16)
    out = model(x)
    assert torch.equal(model.decode(model.encode(x)), out.x_hat)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("kind", ["vq", "ema", "sq"])
def test_training_gradient_reaches_encoder_decoder_and_quantizer(kind):
    model = _model(kind)
    out = model(torch.rand(2, 3, 16, 16))
    out.loss.backward()
    assert model.encoder.net[0].weight.grad.abs().sum() > 0
    assert model.decoder.net[-1].weight.grad.abs().sum() > 0
    if kind != "ema":
        assert model.quantizer.codebook.grad.abs().sum() > 0


def test_vq_objective_is_nmse_plus_the_quantizer_terms():
    model = _model()
    model.data_variance.fill_(0.05)
    x = torch.rand(2, 3, 16, 16)
    out = model(x)
    torch.testing.assert_close(out.recon_loss, (out.x_hat - x).square().mean())
    torch.testing.assert_close(out.loss, out.recon_loss / 0.05 + out.quantizer.loss)


def test_residual_block_keeps_its_input_and_adds_the_branch():
    block = ResidualBlock(4, 3)
    x = torch.randn(2, 4, 5, 5)
    x_before = x.clone()
    y = block(x)
    assert torch.equal(x, x_before), "the first ReLU must not modify the skip input in place"
    branch = block.conv1(torch.relu(block.conv3(torch.relu(x_before))))
    torch.testing.assert_close(y, x_before + branch)


def test_bad_input_shape_is_a_clear_error():
    model = _model()
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError):
        ImageVQVAE(ImageModelConfig(), QuantizerConfig(), data_variance=0.0)


def test_categorical_decoder_objective_and_reconstruction_nll():
    torch.manual_seed(0)
    model = ImageVQVAE(ImageModelConfig(hidden_channels=16, residual_channels=8, likelihood="categorical"),
                       QuantizerConfig(codebook_size=16, code_dim=8)).eval()
    x = torch.rand(2, 3, 8, 8)
    out = model(x)
    logits = model._decoder_output(out.quantizer.z_q)  # [B, 256, C, H, W]
    assert logits.shape == (2, 256, 3, 8, 8)
    ce = torch.nn.functional.cross_entropy(logits, to_levels(x))
    torch.testing.assert_close(out.loss, ce + out.quantizer.loss)
    nll = model.reconstruction_nll(x, out.quantizer.indices)
    torch.testing.assert_close(nll, ce * 3 * 8 * 8 * torch.ones(2), rtol=0.2, atol=0)  # per image, ≈ mean·dims
    torch.testing.assert_close(nll.mean(), ce * 3 * 8 * 8)
    assert model.decode(model.encode(x)).shape == x.shape


def test_discretized_gaussian_is_a_distribution_over_the_256_levels():
    levels = torch.arange(256)
    for mean, sigma in ((0.5, 0.05), (0.0, 0.01), (0.97, 0.2)):
        nll = discretized_gaussian_nll(levels, torch.full((256,), mean), torch.tensor(sigma))
        assert torch.exp(-nll).sum().item() == pytest.approx(1.0, abs=1e-5)
    # a level's probability is the Gaussian mass of its bin: hand value for the centre level
    nll = discretized_gaussian_nll(torch.tensor([128]), torch.tensor([128 / 255]), torch.tensor(0.01))
    mass = math.erf((0.5 / 255) / (0.01 * math.sqrt(2)))
    assert nll.item() == pytest.approx(-math.log(mass), rel=1e-4)


def test_decoder_input_kernel_sets_the_first_decoder_convolution():
    q = QuantizerConfig(codebook_size=16, code_dim=4, groups=2)
    for k in (1, 3):
        model = ImageVQVAE(ImageModelConfig(hidden_channels=8, residual_channels=4, decoder_input_kernel=k), q)
        assert model.post_quantize.weight.shape == (8, 8, k, k)  # from G·D = 8 code channels to 8 hidden
        assert model(torch.rand(2, 3, 16, 16)).x_hat.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="decoder_input_kernel must be a positive odd number, got 2"):
        ImageVQVAE(ImageModelConfig(decoder_input_kernel=2), q)
