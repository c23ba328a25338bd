"""Gaussian stochastic quantizer of SQ-VAE (Takida et al. 2022, "SQ-VAE: Variational Bayes on Discrete
Representation with Self-annealed Stochastic Quantization", sec. 3–4).

Axis legend: N vectors, G codebooks per latent, K codebook size, D code dim.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from core.metrics import perplexity_from_counts
from core.quantize.base import CodebookQuantizer
from core.quantize.output import SQOutput
from core.quantize.stochastic import UniformNoise, stochastic_quantize, stochastic_quantize_autograd

VARIANCES = ("shared", "elementwise")


def gumbel_temperature(step: int, init: float = 1.0, decay: float = 1e-5, minimum: float = 0.0) -> float:
    """Gumbel-softmax temperature at training step ``step``: ``max(init · exp(−decay · step), minimum)``.

    The annealing schedule of the SQ-VAE reference implementation; a pure function of the step.
    """
    return max(init * math.exp(-decay * step), minimum)


class GaussianSQVectorQuantizer(CodebookQuantizer):
    """SQ-VAE's Gaussian stochastic quantization with a learned variance.

    The encoder output ``z`` is quantized stochastically with the posterior (SQ-VAE eq. 7 with a Gaussian
    dequantization p(z | z_q = b_k) = N(b_k, Σ))::

        P̂(z_q = b_k | z) ∝ exp(−‖z − b_k‖²_{Σ⁻¹} / 2),  logits_k = −Σ_d (z_d − b_{k,d})² / (2σ²_d)

    * training: ``z_q = Σ_k y_k b_k`` with ``y = softmax((logits + Gumbel noise) / τ)`` (Gumbel-softmax
      relaxation), τ annealed by :func:`gumbel_temperature`; ``indices`` are the sampled codes;
    * evaluation: ``z_q = b_{argmax logits}`` (the nearest code under Σ), deterministic.

    Loss, the latent part of the Gaussian SQ-VAE objective (eq. 10 with a uniform prior, constants dropped)::

        loss = dequantization_loss − entropy
        dequantization_loss = Σ_d (z_d − z_q,d)² / (2σ²_d)         (the KL between the two Gaussians)
        entropy             = −Σ_k P̂_k log P̂_k                      (H of the quantization posterior)

    both in nats per latent vector (summed over D and the G codebooks, averaged over vectors).
    As σ² → 0 the posterior becomes deterministic and the quantizer equals VQ (self-annealing, sec. 4.2).

    Variance variants (sec. 4.1):
        * ``"shared"`` — variant (I): one learned scalar, σ² = exp(``log_variance``).
        * ``"elementwise"`` — variant (IV): σ² per element from the encoder: pass ``log_var`` of z's shape to
          ``forward``; σ²_d = exp(log_var_d).

    Args:
        codebook_size: K. code_dim: D.
        variance: ``"shared"`` (default) or ``"elementwise"``.
        init_variance: initial σ² of the shared variant (20.0, the reference CIFAR-10 setting for D = 64).
        temperature_init, temperature_decay, temperature_min: the Gumbel-softmax schedule
            (1.0, 1e-5, 0.0 as in the reference implementation); the step counter is a buffer.
        fused: compute the step with the hand-written autograd function of :mod:`core.quantize.stochastic` (one
            ``[N, K]`` tensor kept for the backward instead of about six; Gumbel noise from NumPy on the CPU)
            instead of the formulas under autograd (default). Values and gradients agree to float32 rounding.
        groups, data_init, dead_code_restart, restart_every, restart_threshold: see
            :class:`~core.quantize.base.CodebookQuantizer`.

    Raises:
        ValueError: for an unknown variant, a missing or mis-shaped ``log_var`` in the element-wise variant,
            a non-positive variance or temperature, a wrong last dimension or a non-finite ``z_e``.
    """

    def __init__(self, codebook_size: int, code_dim: int, *, variance: str = "shared", init_variance: float = 20.0,
                 temperature_init: float = 1.0, temperature_decay: float = 1e-5, temperature_min: float = 0.0,
                 groups: int = 1, fused: bool = False, **health):
        super().__init__(codebook_size, code_dim, groups, **health)
        if variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
        if init_variance <= 0 or temperature_init <= 0 or temperature_decay < 0 or temperature_min < 0:
            raise ValueError("init_variance and temperature_init must be > 0; temperature_decay and "
                             "temperature_min must be >= 0")
        self.variance = variance
        self.fused = bool(fused)
        self.temperature_init = float(temperature_init)
        self.temperature_decay = float(temperature_decay)
        self.temperature_min = float(temperature_min)
        self.codebook = nn.Parameter(torch.randn(self._codebook_shape()))  # N(0, 1) as in the reference code
        self.log_variance = nn.Parameter(torch.tensor(math.log(init_variance))) if variance == "shared" else None
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def temperature(self) -> float:
        """Gumbel-softmax temperature at the current step."""
        return gumbel_temperature(int(self.step), self.temperature_init, self.temperature_decay, self.temperature_min)

    @property
    def takes_log_variance(self) -> bool:
        """True for the element-wise variant (IV): σ² per element comes from the encoder as ``log_var``."""
        return self.variance == "elementwise"

    def _precision_weight(self, z_e: torch.Tensor, log_var: torch.Tensor | None) -> torch.Tensor:
        """1 / (2σ²): a scalar (shared) or ``[N, G, D]`` (element-wise)."""
        if self.variance == "shared":
            if log_var is not None:
                raise ValueError("log_var is only used by the element-wise variance; got one with variance='shared'")
            return 0.5 * torch.exp(-self.log_variance.float())
        if log_var is None or log_var.shape != z_e.shape:
            got = None if log_var is None else tuple(log_var.shape)
            raise ValueError(f"variance='elementwise' needs log_var with z_e's shape {tuple(z_e.shape)}, got {got}")
        return 0.5 * torch.exp(-log_var.float()).reshape(-1, self.groups, self.code_dim)

    def forward(self, z_e: torch.Tensor, log_var: torch.Tensor | None = None) -> SQOutput:
        """Stochastically quantize ``z_e: [..., G*D]`` (``log_var``: same shape, element-wise variant only)."""
        flat, lead = self._flatten(z_e)  # [N, G, D]
        weight = self._precision_weight(z_e, log_var)
        self._prepare_codebook(flat.detach())
        tau = self.temperature
        with torch.autocast(device_type=flat.device.type, enabled=False):
            books = self.codebooks().float()  # [G, K, D]
            noise = UniformNoise(flat.device) if self.training and self.fused else None
            parts = []
            for g in range(self.groups):
                w = weight if weight.dim() == 0 else weight[:, g]
                parts.append(stochastic_quantize(flat[:, g], books[g], w, tau, self.training, noise) if self.fused
                             else stochastic_quantize_autograd(flat[:, g], books[g], w, tau, self.training))
            z_q = torch.stack([p[0] for p in parts], dim=1)  # [N, G, D]
            indices = torch.stack([p[1] for p in parts], dim=1)  # [N, G]
            n = max(flat.shape[0], 1)
            entropy = sum(p[2] for p in parts) / n
            dequantization = sum(p[3] for p in parts) / n
        loss = dequantization - entropy
        self._check_finite(loss)
        counts = self._record_usage(indices)
        if self.training:
            self.step += 1
        return SQOutput(
            z_q=z_q.reshape(z_e.shape).to(z_e.dtype),
            indices=indices.reshape(self._index_shape(lead)),
            loss=loss,
            perplexity=perplexity_from_counts(counts),
            dequantization_loss=dequantization,
            entropy=entropy,
            variance=(0.5 / weight).mean().detach(),
            temperature=torch.tensor(tau),
        )

    def _group_scores(self, z: torch.Tensor, group: int, log_var: torch.Tensor | None) -> torch.Tensor:
        """Evaluation-mode logits ``[N, K]`` (precision-weighted distances, up to a per-row constant), formed as the
        configured forward forms them (fused or autograd) so that ``nearest_latents`` picks the same codes."""
        book = self.codebooks()[group].float()  # [K, D]
        w = self._precision_weight(z, None) if log_var is None else 0.5 * torch.exp(-log_var)
        if not self.fused:
            if w.dim() == 0:
                return w * torch.addmm(-book.square().sum(1), z, book.t(), alpha=2.0)
            return 2.0 * (w * z) @ book.t() - w @ book.square().t()
        if w.dim() == 0:
            logits = torch.addmm(-(w * book.square().sum(1)), (2.0 * w) * z, book.t())
        else:
            logits = torch.cat([2.0 * w * z, w], 1) @ torch.cat([book, -book.square()], 1).t()
        return logits - logits.amax(1, keepdim=True)  # as the fused forward shifts them

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, variance={self.variance!r}" + (", fused=True" if self.fused else "")
