"""The VQ-VAE-2 image model (Razavi et al. 2019, Fig. 2): a hierarchy of latent maps, each with its own codebook.

Level 0 (bottom) sits at 2^n× downsampling (the one-level model's grid, ``model.num_downsamples``); each further
level halves the side again (two levels: bottom 4× and top 8× for n = 2; three levels: 4×, 8×, 16×, the three maps
of the paper's Fig. 3). Encoding runs bottom-up, quantization top-down:

* ``h_0 = Encoder(x)``; ``h_l = LevelEncoder(h_{l-1})`` (one strided 4×4 convolution, residual blocks);
* the top level quantizes ``1×1(h_top)``; every lower level ``l`` quantizes ``1×1([h_l, d_l])``, where
  ``d_l = LevelDecoder([z_q_{l+1}, d_{l+1}])`` decodes the level above to level ``l``'s grid (one 4×4 transposed
  convolution), so a lower level codes what the levels above left out;
* the image decoder reads ``[z_q_0, up(z_q_1), …, up(z_q_top)]`` at the bottom grid, each ``up`` a stack of 4×4
  transposed convolutions (2× each).

With ``model.level_dropout = p`` (a named deviation, 0 by default), each training item is, with probability p,
decoded from its top k levels alone (k uniform in 1 … L − 1; lower levels zero vectors, as in :meth:`decode`), so
that the decoder learns to read the upper levels on their own and progressive reconstructions stay images.

Each level has its own quantizer (any core kind but ``sq``) and loss; a level's codebook moves only through its own
codebook loss or EMA statistics (the straight-through estimator passes no gradient from the decoder or from a
lower level to a codebook). The objective is ``MSE / data_variance + Σ_l quantizer_l.loss``.

Axis legend: B batch, C image channels, H W image side, L levels, D code dim (all levels alike), h_l w_l the grid of
level l.
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
from image.model import Decoder, Encoder, ImageVQVAE, ResidualBlock, discretized_gaussian_nll, to_levels

LEVEL_NAMES = {1: ("bottom",), 2: ("bottom", "top"), 3: ("bottom", "middle", "top")}  # bottom first


def build_image_vqvae(model_cfg: ImageModelConfig, quantizer_cfg: QuantizerConfig,
                      data_variance: float = 1.0) -> "ImageVQVAE | HierarchicalVQVAE":
    """The image VQ-VAE a config asks for: :class:`~image.model.ImageVQVAE` for ``model.levels = 1``, else
    :class:`HierarchicalVQVAE`."""
    if model_cfg.levels == 1:
        return ImageVQVAE(model_cfg, quantizer_cfg, data_variance=data_variance)
    return HierarchicalVQVAE(model_cfg, quantizer_cfg, model_cfg.levels, data_variance=data_variance)


@dataclass
class HierarchicalOutput:
    """Output of :meth:`HierarchicalVQVAE.forward`."""

    x_hat: torch.Tensor  # [B, C, H, W] reconstruction in [0, 1] units (not clamped)
    loss: torch.Tensor  # [] training objective: MSE / data_variance + Σ_l quantizer_l.loss
    recon_loss: torch.Tensor  # [] mean squared error per sub-pixel, [0, 1] units
    levels: list[QuantizerOutput]  # level 0 (bottom) first: z_q [B, h_l, w_l, D], indices [B, h_l, w_l]

    def loss_terms(self) -> dict[str, torch.Tensor]:
        """``loss`` to minimise; detached for logging: ``recon_loss``, ``quantizer_loss`` (Σ over levels) and each
        level's quantizer terms as ``<level>/<term>`` (``top/perplexity``, ``bottom/commitment_loss``…)."""
        terms = {"loss": self.loss, "recon_loss": self.recon_loss.detach(),
                 "quantizer_loss": sum(o.loss for o in self.levels).detach()}
        for name, out in zip(LEVEL_NAMES[len(self.levels)], self.levels):
            terms.update({f"{name}/{k}": v.detach() for k, v in out.terms().items() if k != "loss"})
        return terms


def _upsampler(channels: int, times: int) -> nn.Module:
    """``times`` 4×4 transposed convolutions of stride 2 (ReLU between): side × 2^times, channels kept."""
    layers: list[nn.Module] = []
    for i in range(times):
        layers.append(nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1))
        if i < times - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers) if layers else nn.Identity()


class HierarchicalVQVAE(nn.Module):
    """VQ-VAE-2 with ``levels`` latent maps (see the module docstring).

    Args:
        model_cfg: widths and the bottom level's downsampling (``num_downsamples``); Gaussian likelihood only.
        quantizer_cfg: the quantizer of every level (one instance per level; ``kind`` vq or ema).
        levels: 1, 2 or 3.
        data_variance: variance of the training pixels in [0, 1] units (the NMSE normaliser).

    Raises:
        ValueError: for another number of levels, ``quantizer.kind = sq``, several codebooks per level, a
            categorical likelihood, or a non-positive data variance.

    Shapes:
        ``forward(x: [B, C, H, W])`` with H and W divisible by 2^(n + levels − 1); ``encode(x)`` → list of
        ``[B, h_l, w_l]`` (bottom first); ``decode(indices, keep=L)`` → ``[B, C, H, W]``.
    """

    def __init__(self, model_cfg: ImageModelConfig, quantizer_cfg: QuantizerConfig, levels: int = 2,
                 data_variance: float = 1.0):
        super().__init__()
        if levels not in (1, 2, 3):
            raise ValueError(f"model.levels must be 1, 2 or 3, got {levels}")
        if quantizer_cfg.kind == "sq" or quantizer_cfg.groups != 1 or model_cfg.likelihood != "gaussian":
            raise ValueError("the hierarchical model takes quantizer.kind vq or ema, one codebook per level and the "
                             "gaussian likelihood")
        if data_variance <= 0:
            raise ValueError(f"data_variance must be positive, got {data_variance}")
        self.model_cfg, self.levels = model_cfg, levels
        self.level_names = LEVEL_NAMES[levels]
        self.categorical = False
        self.register_buffer("data_variance", torch.tensor(float(data_variance)))
        # σ of the discretized Gaussian p(x|z) for bits/dim, set from the training split's MSE (as ImageVQVAE's)
        self.register_buffer("pixel_log_sigma", torch.tensor(0.0))
        h, r, d = model_cfg.hidden_channels, model_cfg.residual_channels, quantizer_cfg.code_dim
        self.encoder = Encoder(model_cfg)
        self.level_encoders = nn.ModuleList(
            nn.Sequential(nn.Conv2d(h, h, 4, stride=2, padding=1), nn.ReLU(),
                          *[ResidualBlock(h, r) for _ in range(model_cfg.num_residual_blocks)], nn.ReLU())
            for _ in range(levels - 1))  # h_{l-1} → h_l
        self.quantizers = nn.ModuleList(build_quantizer(quantizer_cfg.kind, **quantizer_cfg.build_kwargs())
                                        for _ in range(levels))
        # the top level reads h_top; lower levels read [h_l, d_l]
        self.pre_quantize = nn.ModuleList(nn.Conv2d(h if l == levels - 1 else 2 * h, d, 1) for l in range(levels))
        # d_l from [z_q_{l+1}, d_{l+1}] (the top's decoder reads z_q_top alone)
        self.level_decoders = nn.ModuleList(
            nn.Sequential(nn.Conv2d(d if l == levels - 2 else d + h, h, 3, padding=1), nn.ReLU(),
                          nn.ConvTranspose2d(h, h, 4, stride=2, padding=1), nn.ReLU())
            for l in range(levels - 1))
        self.upsample = nn.ModuleList(_upsampler(d, l) for l in range(levels))  # z_q_l → the bottom grid
        k = model_cfg.decoder_input_kernel
        self.post_quantize = nn.Conv2d(levels * d, h, k, padding=k // 2)
        self.decoder = Decoder(model_cfg, model_cfg.in_channels)

    @property
    def downsampling(self) -> tuple[int, ...]:
        """Factor between the image side and each level's side, bottom first (e.g. (4, 8))."""
        return tuple(2 ** (self.model_cfg.num_downsamples + l) for l in range(self.levels))

    @property
    def side_multiple(self) -> int:
        """What image sides must be a multiple of (the top level's downsampling factor)."""
        return self.downsampling[-1]

    @property
    def codebook_size(self) -> int:
        """K of every level's codebook."""
        return self.quantizers[0].codebook_size

    def latent_shape(self, height: int, width: int) -> list[tuple[int, int]]:
        """``(h_l, w_l)`` of every level of one ``height × width`` image, bottom first."""
        return [(height // f, width // f) for f in self.downsampling]

    def _quantize(self, x: torch.Tensor) -> list[QuantizerOutput]:
        f = self.side_multiple
        if x.dim() != 4 or x.shape[1] != self.model_cfg.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"x must have shape [B, {self.model_cfg.in_channels}, H, W] with H and W divisible by {f}, "
                             f"got {tuple(x.shape)}")
        return self._levels(x, lambda l, z_e: self.quantizers[l](z_e))

    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode reconstruction ``[B, C, H, W]`` of ``x`` through every level's nearest codes
        (``forward(x).x_hat`` in eval mode) as one graph that ``torch.export`` traces (the logged MLflow model,
        :mod:`core.export`); inputs are not validated."""
        return self._decode(self._levels(x, lambda l, z_e: self.quantizers[l].nearest_latents(z_e)))

    def _levels(self, x: torch.Tensor, quantize) -> list:
        """Encode ``x`` top level first; ``quantize(l, z_e)`` gives level ``l``'s quantizer output or its ``z_q``
        ``[B, h_l, w_l, D]``; returns what it gave, bottom first."""
        hs = [self.encoder(x - 0.5)]  # h_0 [B, hidden, h_0, w_0]
        for enc in self.level_encoders:
            hs.append(enc(hs[-1]))  # h_l, half the side of h_{l-1}
        outs: list = [None] * self.levels
        above = None  # d_{l+1} decoded to the current level's grid
        for l in reversed(range(self.levels)):
            inp = hs[l] if above is None else torch.cat([hs[l], above], 1)
            z_e = rearrange(self.pre_quantize[l](inp), "b d h w -> b h w d")  # [B, h_l, w_l, D]
            outs[l] = quantize(l, z_e)
            if l > 0:
                z_q = rearrange(outs[l] if isinstance(outs[l], torch.Tensor) else outs[l].z_q, "b h w d -> b d h w")
                dec_in = z_q if above is None else torch.cat([z_q, above], 1)
                above = self.level_decoders[l - 1](dec_in)  # [B, hidden, h_{l-1}, w_{l-1}]
        return outs

    def _decode(self, z_qs: list[torch.Tensor]) -> torch.Tensor:
        """``[B, h_l, w_l, D]`` per level (bottom first) → ``[B, C, H, W]`` in [0, 1] units."""
        ups = [self.upsample[l](rearrange(z, "b h w d -> b d h w")) for l, z in enumerate(z_qs)]
        return self.decoder(self.post_quantize(torch.cat(ups, 1))) + 0.5

    def forward(self, x: torch.Tensor) -> HierarchicalOutput:
        """Encode, quantize every level, decode, and the objective (see the module docstring)."""
        outs = self._quantize(x)
        x_hat = self._decode(self._drop_levels([o.z_q for o in outs]))
        mse = F.mse_loss(x_hat, x)
        loss = mse / self.data_variance + sum(o.loss for o in outs)
        return HierarchicalOutput(x_hat=x_hat, loss=loss, recon_loss=mse, levels=outs)

    def _drop_levels(self, z_qs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Training only: zero the levels below a random top k of a random ``level_dropout`` share of the items."""
        p = self.model_cfg.level_dropout
        if not self.training or p == 0 or self.levels == 1:
            return z_qs
        batch, device = z_qs[0].shape[0], z_qs[0].device
        dropped = torch.rand(batch, device=device) < p  # [B]
        keep = torch.randint(1, self.levels, (batch,), device=device)  # [B] top levels kept
        kept = [~(dropped & (l < self.levels - keep)) for l in range(self.levels)]  # L × [B] bool
        return [z * k[:, None, None, None].to(z.dtype) for z, k in zip(z_qs, kept)]  # [B, h_l, w_l, D] each

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Code indices of every level, bottom first: ``[B, h_l, w_l]``."""
        return [o.indices for o in self._quantize(x)]

    @torch.no_grad()
    def decode(self, indices: list[torch.Tensor], keep: int | None = None) -> torch.Tensor:
        """Reconstruction from the indices of every level (bottom first), using only the top ``keep`` levels.

        A level left out (``keep < levels``: the bottom ``levels − keep`` ones) is filled with zero vectors in the
        code space, so the picture shows what the levels kept carry on their own (the paper's Fig. 3 shows such
        progressive reconstructions).
        """
        keep = self.levels if keep is None else keep
        if not 1 <= keep <= self.levels or len(indices) != self.levels:
            raise ValueError(f"need {self.levels} index maps and 1 <= keep <= {self.levels}, got {len(indices)}, "
                             f"{keep}")
        z_qs = [self.quantizers[l].lookup(i) for l, i in enumerate(indices)]
        z_qs = [torch.zeros_like(z) if l < self.levels - keep else z for l, z in enumerate(z_qs)]
        return self._decode(z_qs)

    @torch.no_grad()
    def progressive(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Reconstructions of ``x: [B, C, H, W]`` from the top level alone, the top two, …, all levels (the
        paper's Fig. 3 order), each ``[B, C, H, W]`` clamped to [0, 1]; missing levels as in :meth:`decode`."""
        return self.decode_progressive(self.encode(x))

    @torch.no_grad()
    def decode_progressive(self, indices: list[torch.Tensor]) -> list[torch.Tensor]:
        """``indices`` (bottom first, ``[B, h_l, w_l]``) decoded from the top level alone, the top two, …, all
        levels, each ``[B, C, H, W]`` clamped to [0, 1]; missing levels as in :meth:`decode`."""
        return [self.decode(indices, keep=k).clamp(0, 1) for k in range(1, self.levels + 1)]

    @torch.no_grad()
    def reconstruction_nll(self, x: torch.Tensor, indices: list[torch.Tensor]) -> torch.Tensor:
        """−log p(x | z) of 8-bit images in nats per image ``[B]``, summed over C·H·W sub-pixels: a Gaussian of
        standard deviation ``exp(pixel_log_sigma)`` around the decoder mean from every level, discretized to the
        256 levels (edge levels take the tails), as :meth:`image.model.ImageVQVAE.reconstruction_nll`."""
        mean = self.decode(indices)
        return discretized_gaussian_nll(to_levels(x), mean, self.pixel_log_sigma.exp()).flatten(1).sum(1)
