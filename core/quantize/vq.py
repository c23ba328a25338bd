"""Loss-based vector quantizer of VQ-VAE (van den Oord et al. 2017, sec. 3.1–3.2, eq. 3).

Axis legend: N vectors, G codebooks per latent, K codebook size, D code dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.metrics import perplexity_from_counts
from core.quantize.base import CodebookQuantizer
from core.quantize.distance import nearest_code
from core.quantize.output import VQOutput
from core.quantize.straight_through import StraightThroughQuantize


def assign_codes(flat: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Nearest code of every slice: ``flat`` ``[N, G, D]`` against ``codebooks`` ``[G, K, D]`` → ``[N, G]`` long."""
    return torch.stack([nearest_code(flat[:, g], codebooks[g]) for g in range(codebooks.shape[0])], dim=1)


@dataclass(frozen=True)
class Assignment:
    """What the shared forward of the deterministic quantizers computes, before each family's loss and update."""

    flat: torch.Tensor  # [N, G, D] float32 view of z_e (all leading axes flattened)
    lead: torch.Size  # the leading shape of z_e
    indices: torch.Tensor  # [N, G] long, nearest code per slice
    z_q: torch.Tensor  # like z_e: straight-through quantized latents
    codebook_loss: torch.Tensor  # [] mean ‖sg[z_e] − e‖²
    commitment_loss: torch.Tensor  # [] mean ‖z_e − sg[e]‖²


def quantize_straight_through(quantizer: CodebookQuantizer, z_e: torch.Tensor) -> Assignment:
    """Shared forward of the deterministic quantizers: validate, prepare the codebook (data init, restarts),
    assign the nearest codes and apply the straight-through estimator (paper eq. 1–3)."""
    flat, lead = quantizer._flatten(z_e)  # [N, G, D]
    quantizer._prepare_codebook(flat)
    with torch.autocast(device_type=flat.device.type, enabled=False):
        books = quantizer.codebooks()  # [G, K, D]
        indices = assign_codes(flat.detach(), books.detach())  # [N, G]
        g, k, d = books.shape
        stacked = (indices + torch.arange(g, device=indices.device) * k).reshape(-1)  # [N*G]
        z_q, codebook_loss, commitment_loss = StraightThroughQuantize.apply(
            flat.reshape(-1, d), books.reshape(g * k, d).float(), stacked)
    quantizer._check_finite(commitment_loss)
    z_q = z_q.reshape(z_e.shape).to(z_e.dtype)  # [..., G*D]
    return Assignment(flat, lead, indices, z_q, codebook_loss, commitment_loss)


class VectorQuantizer(CodebookQuantizer):
    """VQ-VAE's quantizer: nearest code by L2 distance, codebook trained by its own loss term.

    ``loss = codebook_loss + beta * commitment_loss`` with ``codebook_loss = ‖sg[z_e] − e‖²`` and
    ``commitment_loss = ‖z_e − sg[e]‖²`` (paper eq. 3, both as mean squared errors), and the straight-through
    estimator ``z_q = z_e + sg[e − z_e]`` for the decoder's gradient.

    Args:
        codebook_size: K (paper: 512).
        code_dim: D (paper: 64 for images).
        beta: commitment weight β, required (paper: 0.25).
        codebook_lr_scale: the codebook's learning rate as a multiple of the model's (1.0, the paper's setting,
            by default). Beyond the paper: Adam moves a code by at most about its learning rate per step, while
            the encoder's outputs, sums over many weights, can move by far more; a larger scale lets the codes
            follow (the trainer reads ``lr_scales``, see :func:`core.optim.parameter_groups`).
        groups, data_init, dead_code_restart, restart_every, restart_threshold: see
            :class:`~core.quantize.base.CodebookQuantizer` (all off by default).

    Shapes:
        ``forward(z_e: [..., G*D]) -> VQOutput`` with ``z_q: [..., G*D]``, ``indices: [...]`` (G = 1) or ``[..., G]``.

    Raises:
        ValueError: if ``z_e``'s last dimension is not G·D, or ``z_e`` is not finite (nothing is changed then).
    """

    def __init__(self, codebook_size: int, code_dim: int, *, beta: float, groups: int = 1,
                 codebook_lr_scale: float = 1.0, **health):
        super().__init__(codebook_size, code_dim, groups, **health)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not codebook_lr_scale > 0:
            raise ValueError(f"codebook_lr_scale must be > 0, got {codebook_lr_scale}")
        self.beta = float(beta)
        self.lr_scales = {"codebook": float(codebook_lr_scale)}  # parameter name → learning-rate multiple
        # Uniform init in ±1/K, as in the reference implementations of the paper.
        self.codebook = nn.Parameter(torch.empty(self._codebook_shape()).uniform_(-1.0 / codebook_size,
                                                                                  1.0 / codebook_size))

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        """Quantize ``z_e: [..., G*D]`` (paper eq. 1–3); see the class docstring."""
        a = quantize_straight_through(self, z_e)
        counts = self._record_usage(a.indices)
        return VQOutput(
            z_q=a.z_q,
            indices=a.indices.reshape(self._index_shape(a.lead)),
            loss=a.codebook_loss + self.beta * a.commitment_loss,
            perplexity=perplexity_from_counts(counts),
            codebook_loss=a.codebook_loss,
            commitment_loss=a.commitment_loss,
        )

    def extra_repr(self) -> str:
        scale = self.lr_scales["codebook"]
        return f"{super().extra_repr()}, beta={self.beta}" + (f", codebook_lr_scale={scale}" if scale != 1.0 else "")
