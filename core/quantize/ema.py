"""Exponential-moving-average vector quantizer (VQ-VAE paper, appendix A.1).

Axis legend: N vectors, G codebooks per latent, K codebook size, D code dim.
"""

from __future__ import annotations

import torch

from core import distributed
from core.metrics import perplexity_from_counts
from core.quantize.base import CodebookQuantizer
from core.quantize.output import VQOutput
from core.quantize.vq import quantize_straight_through


class EMAVectorQuantizer(CodebookQuantizer):
    """VQ-VAE quantizer whose codebook follows exponential moving averages instead of a loss (appendix A.1).

    After the assignment of a training batch (with the codebook *before* the update), with ``n_i`` vectors
    ``z_{i,j}`` assigned to code i:

        N_i ← γ N_i + (1 − γ) n_i
        m_i ← γ m_i + (1 − γ) Σ_j z_{i,j}
        e_i ← m_i / Ñ_i,   Ñ_i = (N_i + ε) / (Σ_k N_k + K ε) · Σ_k N_k   (Laplace-smoothed counts)

    ``N`` (``cluster_size``) and ``m`` (``embed_avg``) are buffers, saved in the state dict, summed over ranks
    under ``torch.distributed``, and computed in float32. Nothing changes in ``eval()`` mode. The appendix leaves
    the initial statistics open; we start each code as if it had been assigned once at its initial position
    (N_i = 1, m_i = e_i), so that a code no batch has used keeps its place instead of jumping to the origin.
    Only the commitment term trains the encoder: ``loss = beta * commitment_loss``.

    Args:
        codebook_size: K (paper: 512).
        code_dim: D.
        beta: commitment weight β, required (paper: 0.25).
        decay: γ (paper: 0.99).
        epsilon: ε of the Laplace smoothing (1e-5).
        groups, data_init, dead_code_restart, restart_every, restart_threshold: see
            :class:`~core.quantize.base.CodebookQuantizer`; a restarted code gets N_i = 1, m_i = e_i.

    Raises:
        ValueError: for γ outside [0, 1), a negative β or ε, a wrong last dimension of ``z_e``, or a non-finite
            ``z_e`` (the statistics are left unchanged then).
    """

    def __init__(self, codebook_size: int, code_dim: int, *, beta: float, decay: float = 0.99,
                 epsilon: float = 1e-5, groups: int = 1, **health):
        super().__init__(codebook_size, code_dim, groups, **health)
        if beta < 0 or epsilon < 0 or not 0.0 <= decay < 1.0:
            raise ValueError(f"need beta >= 0, epsilon >= 0 and 0 <= decay < 1, got {beta}, {epsilon}, {decay}")
        self.beta = float(beta)
        self.decay = float(decay)
        self.epsilon = float(epsilon)
        codebook = torch.randn(self._codebook_shape())
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.ones(self._codebook_shape()[:-1]))  # N: [K] or [G, K]
        self.register_buffer("embed_avg", codebook.clone())  # m: [K, D] or [G, K, D]

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        g, k, d = self.groups, self.codebook_size, self.code_dim
        return self.cluster_size.view(g, k), self.embed_avg.view(g, k, d)

    def _replace_codes(self, group: int, mask: torch.Tensor, vectors: torch.Tensor) -> None:
        super()._replace_codes(group, mask, vectors)
        cluster_size, embed_avg = self._stats()
        cluster_size[group][mask] = 1.0
        embed_avg[group][mask] = vectors.to(embed_avg.dtype)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        """Apply the appendix A.1 update for ``flat`` [N, G, D] assigned to ``indices`` [N, G] (counts [G, K])."""
        g, k, d = self.groups, self.codebook_size, self.code_dim
        with torch.autocast(device_type=flat.device.type, enabled=False):
            stacked = (indices + torch.arange(g, device=indices.device) * k).reshape(-1)  # [N*G]
            sums = flat.new_zeros(g * k, d).index_add_(0, stacked, flat.reshape(-1, d).float())  # [G*K, D]
            counts = distributed.all_reduce_sum(counts.clone())
            sums = distributed.all_reduce_sum(sums).view(g, k, d)
            cluster_size, embed_avg = self._stats()
            cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
            embed_avg.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
            total = cluster_size.sum(-1, keepdim=True)  # [G, 1]
            smoothed = (cluster_size + self.epsilon) / (total + k * self.epsilon) * total  # [G, K]
            self.codebooks().copy_(embed_avg / smoothed.unsqueeze(-1))

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        """Quantize ``z_e: [..., G*D]`` with the current codebook, then (training only) update the averages."""
        a = quantize_straight_through(self, z_e)
        counts = self._record_usage(a.indices)
        if self.training and a.flat.shape[0] > 0:
            self._ema_update(a.flat.detach(), a.indices, counts)
        return VQOutput(
            z_q=a.z_q,
            indices=a.indices.reshape(self._index_shape(a.lead)),
            loss=self.beta * a.commitment_loss,
            perplexity=perplexity_from_counts(counts),
            codebook_loss=torch.zeros_like(a.codebook_loss),
            commitment_loss=a.commitment_loss,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}, decay={self.decay}, epsilon={self.epsilon}"
