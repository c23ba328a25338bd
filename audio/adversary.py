"""A speaker adversary on the quantized latents (a deviation from the paper, off by default).

The codes of a speech VQ-VAE keep some of the source speaker (the decoder's speaker embedding then competes with
them during conversion). The adversary is a small per-frame classifier that reads ``z_q`` through a gradient
reversal layer (Ganin & Lempitsky 2015): it learns to name the speaker of each code frame, while the encoder receives
the negated, ``weight``-scaled gradient and so learns codes from which the speaker cannot be read.

Axis legend: B batch, N code frames, D code dim, S speakers, H hidden channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-weight`` in the backward pass."""
    return _ReverseGradient.apply(x, weight)


class SpeakerAdversary(nn.Module):
    """Per-frame speaker classifier on ``z_q [B, N, D]`` behind a gradient reversal of strength ``weight``.

    Network: Conv1d(D → H, kernel 3, centred) → ReLU → Conv1d(H → H, kernel 3) → ReLU → 1×1 into S logits.

    Args:
        code_dim: D.
        num_speakers: S.
        weight: strength of the reversed gradient reaching the encoder (λ > 0).
        hidden: H.
    """

    def __init__(self, code_dim: int, num_speakers: int, weight: float, hidden: int = 128):
        super().__init__()
        if weight <= 0:
            raise ValueError(f"the adversary's weight must be positive, got {weight}")
        self.weight = weight
        self.net = nn.Sequential(nn.Conv1d(code_dim, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU(), nn.Conv1d(hidden, num_speakers, 1))

    def forward(self, z_q: torch.Tensor, speaker: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy (nats per frame) of the speaker of every frame and the fraction of frames named right.

        Args:
            z_q: ``[B, N, D]`` quantized latents (the gradient reaching them is reversed).
            speaker: ``[B]`` long speaker ids.
        """
        logits = self.net(rearrange(reverse_gradient(z_q, self.weight), "b n d -> b d n"))  # [B, S, N]
        targets = speaker[:, None].expand(-1, logits.shape[2])  # [B, N]
        return F.cross_entropy(logits, targets), (logits.argmax(1) == targets).float().mean().detach()
