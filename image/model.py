"""The paper's image VQ-VAE (sec. 4.1): strided-convolution encoder, residual blocks, any core quantizer.

Axis legend: B batch, C image channels, H W image height/width, h w latent height/width, D code dim,
G codebooks per latent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from core.config import QuantizerConfig
from core.quantize import QuantizerOutput, build_quantizer
from image.config import ImageModelConfig

LIKELIHOODS = ("gaussian", "categorical")
PIXEL_LEVELS = 256


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] → integer levels 0…255 (long)."""
    return (x.clamp(0, 1) * (PIXEL_LEVELS - 1)).round().long()


def discretized_gaussian_nll(levels: torch.Tensor, mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """−log P(level) in nats for a Gaussian N(mean, σ²) on the [0, 1] scale integrated over each level's bin
    (width 1/255; the bins of levels 0 and 255 extend to ∓∞). Same shape as ``levels``."""
    half = 0.5 / (PIXEL_LEVELS - 1)
    centre = levels.to(mean.dtype) / (PIXEL_LEVELS - 1)
    upper = torch.where(levels == PIXEL_LEVELS - 1, torch.full_like(mean, float("inf")), centre + half)
    lower = torch.where(levels == 0, torch.full_like(mean, -float("inf")), centre - half)
    prob = torch.special.ndtr((upper - mean) / sigma) - torch.special.ndtr((lower - mean) / sigma)
    return -torch.log(prob.clamp_min(1e-12))


class ResidualBlock(nn.Module):
    """``x + conv1×1(ReLU(conv3×3(ReLU(x))))`` (paper sec. 4.1).

    The first ReLU is not in place: an in-place ReLU here would overwrite ``x`` and break the skip connection.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.conv3 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.conv1 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv3(F.relu(x))))


class Encoder(nn.Module):
    """``[B, C, H, W]`` → ``[B, hidden, H / 2^n, W / 2^n]``: n strided 4×4 convolutions, a 3×3 convolution,
    residual blocks and a final ReLU."""

    def __init__(self, cfg: ImageModelConfig):
        super().__init__()
        h, n = cfg.hidden_channels, cfg.num_downsamples
        layers: list[nn.Module] = []
        channels = cfg.in_channels
        for i in range(n):
            out = h // 2 if (n > 1 and i < n - 1) else h
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), nn.ReLU()]
            channels = out
        layers.append(nn.Conv2d(channels, h, 3, padding=1))
        layers += [ResidualBlock(h, cfg.residual_channels) for _ in range(cfg.num_residual_blocks)]
        layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """``[B, hidden, h, w]`` → ``[B, out_channels, h·2^n, w·2^n]``: residual blocks, a ReLU, n strided 4×4
    transposed convolutions."""

    def __init__(self, cfg: ImageModelConfig, out_channels: int):
        super().__init__()
        h, n = cfg.hidden_channels, cfg.num_downsamples
        layers: list[nn.Module] = [ResidualBlock(h, cfg.residual_channels) for _ in range(cfg.num_residual_blocks)]
        layers.append(nn.ReLU())
        channels = h
        for i in range(n):
            last = i == n - 1
            out = out_channels if last else h // 2
            layers.append(nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1))
            if not last:
                layers.append(nn.ReLU())
            channels = out
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class ImageVQVAEOutput:
    """Output of :meth:`ImageVQVAE.forward`."""

    x_hat: torch.Tensor  # [B, C, H, W] reconstruction in [0, 1] units (not clamped)
    loss: torch.Tensor  # [] training objective
    recon_loss: torch.Tensor  # [] mean squared error per sub-pixel, [0, 1] units
    quantizer: QuantizerOutput  # z_q [B, h, w, G*D], indices [B, h, w] (or [B, h, w, G]), loss terms


class ImageVQVAE(nn.Module):
    """VQ-VAE for images with any core quantizer (``quantizer.kind``: vq, ema or sq).

    Pixels are in [0, 1] at the interface and shifted to [−0.5, 0.5] inside (as in the reference implementation).
    Objective per quantizer kind:

    * vq / ema (paper eq. 3): ``MSE / data_variance + quantizer.loss`` — the reconstruction term is the MSE
      normalised by the data variance (the sonnet example's NMSE), which sets its weight against β;
    * sq (SQ-VAE eq. 10, Gaussian decoder with its variance at the maximum-likelihood value, as in the reference
      implementation): ``½ log MSE + quantizer.loss · (h·w) / (C·H·W)``, i.e. the negative ELBO per sub-pixel;
    * ``model.likelihood = "categorical"``: the reconstruction term is the cross-entropy of a 256-way softmax per
      sub-pixel (nats per sub-pixel) instead, as needed for bits/dim (paper sec. 4.1).

    Args:
        model_cfg: encoder/decoder sizes.
        quantizer_cfg: which core quantizer and its settings.
        data_variance: variance of the training pixels in [0, 1] units (for the NMSE term).

    Shapes:
        ``forward(x: [B, C, H, W]) -> ImageVQVAEOutput``; ``encode(x) -> indices [B, h, w]`` (``[B, h, w, G]``
        with G codebooks); ``decode(indices) -> x_hat [B, C, H, W]``. H and W must be divisible by 2^n.
    """

    def __init__(self, model_cfg: ImageModelConfig, quantizer_cfg: QuantizerConfig, data_variance: float = 1.0):
        super().__init__()
        if data_variance <= 0:
            raise ValueError(f"data_variance must be positive, got {data_variance}")
        self.model_cfg = model_cfg
        self.quantizer_cfg = quantizer_cfg
        self.register_buffer("data_variance", torch.tensor(float(data_variance)))
        self.encoder = Encoder(model_cfg)
        self.quantizer = build_quantizer(quantizer_cfg.kind, **quantizer_cfg.build_kwargs())
        code_channels = self.quantizer.input_dim  # G·D
        self.elementwise_variance = self.quantizer.takes_log_variance
        head = 2 * code_channels if self.elementwise_variance else code_channels
        self.pre_quantize = nn.Conv2d(model_cfg.hidden_channels, head, 1)  # into the code space
        k = model_cfg.decoder_input_kernel
        if k < 1 or k % 2 == 0:
            raise ValueError(f"model.decoder_input_kernel must be a positive odd number, got {k}")
        self.post_quantize = nn.Conv2d(code_channels, model_cfg.hidden_channels, k, padding=k // 2)  # out of code space
        if model_cfg.likelihood not in LIKELIHOODS:
            raise ValueError(f"model.likelihood must be one of {LIKELIHOODS}, got {model_cfg.likelihood!r}")
        self.categorical = model_cfg.likelihood == "categorical"
        self.decoder = Decoder(model_cfg, model_cfg.in_channels * (PIXEL_LEVELS if self.categorical else 1))
        # σ of the discretized Gaussian p(x|z_q) used for bits/dim with the Gaussian decoder; set from the training
        # split's MSE by the experiment (maximum likelihood), never from held-out data.
        self.register_buffer("pixel_log_sigma", torch.tensor(0.0))

    @property
    def downsampling(self) -> int:
        """Factor between image and latent side: 2^num_downsamples."""
        return 2 ** self.model_cfg.num_downsamples

    @property
    def side_multiple(self) -> int:
        """What image sides must be a multiple of (the downsampling factor)."""
        return self.downsampling

    def _check_input(self, x: torch.Tensor) -> None:
        f = self.downsampling
        if x.dim() != 4 or x.shape[1] != self.model_cfg.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"x must have shape [B, {self.model_cfg.in_channels}, H, W] with H and W divisible by {f}, "
                             f"got {tuple(x.shape)}")

    def _z_e(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``z_e`` ``[B, h, w, G*D]`` and SQ's element-wise ``log_var`` (same shape) or None."""
        head = self.pre_quantize(self.encoder(x - 0.5))  # [B, G*D (×2), h, w]
        head = rearrange(head, "b d h w -> b h w d")  # [B, h, w, G*D (×2)]
        if self.elementwise_variance:
            z_e, log_var = head.chunk(2, dim=-1)
            return z_e, log_var
        return head, None

    def _quantize(self, x: torch.Tensor) -> QuantizerOutput:
        self._check_input(x)
        z_e, log_var = self._z_e(x)
        return self.quantizer(z_e) if log_var is None else self.quantizer(z_e, log_var)

    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode reconstruction ``[B, C, H, W]`` of ``x: [B, C, H, W]`` (sides multiples of
        ``side_multiple``) through the nearest codes: ``forward(x).x_hat`` in eval mode, as one graph that
        ``torch.export`` traces (the logged MLflow model, :mod:`core.export`); inputs are not validated."""
        return self._decode_latents(self.quantizer.nearest_latents(*self._z_e(x)))

    def _decoder_output(self, z_q: torch.Tensor) -> torch.Tensor:
        """``[B, h, w, G*D]`` → ``[B, C, H, W]`` means (Gaussian) or ``[B, 256, C, H, W]`` logits (categorical)."""
        out = self.decoder(self.post_quantize(rearrange(z_q, "b h w d -> b d h w")))
        if self.categorical:
            return rearrange(out, "b (c k) h w -> b k c h w", k=PIXEL_LEVELS)  # [B, 256, C, H, W]
        return out + 0.5  # [B, C, H, W]

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        """Reconstruction in [0, 1] units: the decoder mean (the expected level for the categorical decoder)."""
        if not self.categorical:
            return out
        levels = torch.arange(PIXEL_LEVELS, device=out.device, dtype=out.dtype) / (PIXEL_LEVELS - 1)
        return torch.einsum("bkchw,k->bchw", out.softmax(1), levels)

    def _decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        return self._mean(self._decoder_output(z_q))

    def forward(self, x: torch.Tensor) -> ImageVQVAEOutput:
        """Encode, quantize, decode and compute the objective (see the class docstring)."""
        q = self._quantize(x)
        out = self._decoder_output(q.z_q)
        x_hat = self._mean(out)
        mse = F.mse_loss(x_hat, x)
        if self.categorical:
            recon = F.cross_entropy(out, to_levels(x))  # nats per sub-pixel
        elif q.loss_per == "vector":  # a latent term in nats per vector needs a likelihood, not an MSE
            recon = 0.5 * torch.log(mse.clamp_min(1e-12))
        else:
            recon = mse / self.data_variance
        if q.loss_per == "vector":
            latents_per_dim = q.indices.shape[1] * q.indices.shape[2] / (x.shape[1] * x.shape[2] * x.shape[3])
            loss = recon + q.loss * latents_per_dim
        else:
            loss = recon + q.loss
        return ImageVQVAEOutput(x_hat=x_hat, loss=loss, recon_loss=mse, quantizer=q)

    @torch.no_grad()
    def reconstruction_nll(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """−log p(x | z_q) of 8-bit images in nats per image, summed over C·H·W sub-pixels: ``[B]``.

        Categorical decoder: the 256-way softmax. Gaussian decoder: a Gaussian of standard deviation
        ``exp(pixel_log_sigma)`` around the decoder mean, discretized to the 256 levels (edge levels take the tails).
        """
        out = self._decoder_output(self.quantizer.lookup(indices))
        target = to_levels(x)  # [B, C, H, W]
        if self.categorical:
            return F.cross_entropy(out, target, reduction="none").flatten(1).sum(1)
        return discretized_gaussian_nll(target, out, self.pixel_log_sigma.exp()).flatten(1).sum(1)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices of ``x: [B, C, H, W]`` → ``[B, h, w]`` (``[B, h, w, G]``); deterministic in eval mode."""
        return self._quantize(x).indices

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[B, C, H, W]`` from code indices ``[B, h, w]`` (``[B, h, w, G]``)."""
        return self._decode_latents(self.quantizer.lookup(indices))

    def latent_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of the index grid of one ``height × width`` image: ``(h, w)`` or ``(h, w, G)``."""
        h, w = height // self.downsampling, width // self.downsampling
        g = self.quantizer.groups
        return (h, w) if g == 1 else (h, w, g)
