"""Metrics of the VQ-VAE papers: perplexity, codebook usage, bits per dimension, PSNR, NMSE.

Axis legend: B batch, N vectors, G codebooks per latent, K codebook size.
"""

from __future__ import annotations

import math

import torch


def code_counts(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """How often each code is used, per codebook.

    Args:
        indices: ``[N, G]`` long code indices (G codebooks per latent vector).
        codebook_size: K.

    Returns:
        ``[G, K]`` float32 counts.
    """
    n, g = indices.shape
    offsets = torch.arange(g, device=indices.device) * codebook_size  # [G]
    flat = (indices + offsets).reshape(-1)  # [N * G]
    counts = torch.bincount(flat, minlength=g * codebook_size)
    return counts.view(g, codebook_size).float()


def perplexity_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Perplexity ``exp(H(p̄))`` of the average code distribution p̄ = counts / Σ counts.

    The VQ-VAE papers' codebook-health number: K when every code is used equally, 1 when a single code is.
    With several codebooks (``counts`` of shape ``[G, K]``) it is the mean of the per-codebook perplexities.
    An empty count (no vectors) gives 0.

    Args:
        counts: ``[K]`` or ``[G, K]`` non-negative counts (or probabilities).

    Returns:
        Scalar float32 tensor.
    """
    counts = counts.float().reshape(-1, counts.shape[-1])  # [G, K]
    total = counts.sum(-1, keepdim=True)  # [G, 1]
    p = counts / total.clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)  # [G], nats
    per_book = torch.where(total.squeeze(-1) > 0, entropy.exp(), torch.zeros_like(entropy))
    return per_book.mean()


def perplexity(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Perplexity of a batch of code indices ``[N]`` (one codebook) or ``[N, G]``; see :func:`perplexity_from_counts`."""
    idx = indices.reshape(-1, 1) if indices.dim() == 1 else indices.reshape(-1, indices.shape[-1])
    return perplexity_from_counts(code_counts(idx, codebook_size))


class CodebookUsage:
    """Code counts accumulated over a whole evaluation pass.

    A code is *dead* when no vector of the pass was assigned to it. Usage over a pass is the honest
    codebook-health number; the per-batch perplexity underestimates it for small batches.

    Args:
        codebook_size: K.
        groups: G, codebooks per latent vector.
    """

    def __init__(self, codebook_size: int, groups: int = 1):
        self.codebook_size = codebook_size
        self.groups = groups
        self.counts = torch.zeros(groups, codebook_size)

    def update(self, indices: torch.Tensor) -> None:
        """Add a batch of indices: ``[...]`` when G = 1, ``[..., G]`` otherwise."""
        idx = indices.detach().reshape(-1, self.groups).cpu()
        self.counts += code_counts(idx, self.codebook_size)

    @property
    def used_codes(self) -> int:
        """Codes used at least once, summed over codebooks."""
        return int((self.counts > 0).sum())

    @property
    def dead_codes(self) -> int:
        """Codes never used in the pass, summed over codebooks."""
        return self.groups * self.codebook_size - self.used_codes

    @property
    def codebook_usage(self) -> float:
        """Fraction of codes used at least once, in [0, 1]."""
        return self.used_codes / (self.groups * self.codebook_size)

    @property
    def perplexity(self) -> float:
        """Perplexity of the pass's code distribution."""
        return float(perplexity_from_counts(self.counts))

    def summary(self) -> dict[str, float]:
        """``{"perplexity", "codebook_usage", "dead_codes"}`` for logging."""
        return {"perplexity": self.perplexity, "codebook_usage": self.codebook_usage, "dead_codes": float(self.dead_codes)}


def nats_to_bits_per_dim(nats: float | torch.Tensor, num_dims: int) -> float | torch.Tensor:
    """Convert a total negative log-likelihood in nats to bits per dimension: ``nats / (num_dims · ln 2)``.

    Args:
        nats: NLL in nats, summed over ``num_dims`` dimensions (e.g. H·W·C sub-pixels of one image).
        num_dims: number of dimensions the NLL covers. Raises ValueError if not positive.
    """
    if num_dims <= 0:
        raise ValueError(f"num_dims must be positive, got {num_dims}")
    return nats / (num_dims * math.log(2.0))


def bits_per_dim_to_nats(bits_per_dim: float | torch.Tensor, num_dims: int) -> float | torch.Tensor:
    """Inverse of :func:`nats_to_bits_per_dim`: total nats over ``num_dims`` dimensions."""
    if num_dims <= 0:
        raise ValueError(f"num_dims must be positive, got {num_dims}")
    return bits_per_dim * num_dims * math.log(2.0)


def psnr_of_mse(mse: float, data_range: float = 1.0) -> float:
    """PSNR in dB of a pooled mean squared error, ``10 log10(range² / MSE)`` (the number tables report when ``mse``
    is pooled over a whole evaluation set)."""
    return 10.0 * math.log10(data_range**2 / max(mse, 1e-20))


def psnr(x: torch.Tensor, x_hat: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(range² / MSE)``, computed per sample then averaged.

    Args:
        x, x_hat: ``[B, ...]`` originals and reconstructions on the same scale.
        data_range: peak-to-peak range of the data (1.0 for images in [0, 1], 2.0 for [-1, 1]).

    Raises:
        ValueError: if the shapes differ.
    """
    if x.shape != x_hat.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    mse = (x.float() - x_hat.float()).square().flatten(1).mean(1)  # [B]
    return (10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))).mean()


def nmse(x: torch.Tensor, x_hat: torch.Tensor, data_variance: float) -> torch.Tensor:
    """Normalised MSE: ``mean((x − x_hat)²) / data_variance`` (the sonnet VQ-VAE example's reconstruction metric).

    Args:
        x, x_hat: tensors of the same shape.
        data_variance: variance of the training data. Raises ValueError if not positive.
    """
    if data_variance <= 0:
        raise ValueError(f"data_variance must be positive, got {data_variance}")
    if x.shape != x_hat.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    return (x.float() - x_hat.float()).square().mean() / data_variance
