"""The gated activation shared by the priors and the decoders, and the gated PixelCNN layer built on it.

``gate`` is WaveNet's and the gated PixelCNN's unit (van den Oord et al. 2016, both papers): ``tanh(a) · σ(b)``.
:class:`GatedLayer` is one layer of :class:`~priors.pixelcnn.GatedPixelCNN`'s vertical and horizontal stacks (see
that module's docstring for the architecture).

Axis legend: B batch, C channels, h w rows and columns of the slice a call sees.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gate(x: torch.Tensor) -> torch.Tensor:
    """Gated activation ``tanh(a) · σ(b)`` of ``x = [a, b]`` split on axis 1: ``[B, 2C, ...] -> [B, C, ...]``
    (C is R, the residual channels, in WaveNet)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer of both stacks. Callers pad (or cut windows from zero-padded buffers); the convolutions
    here use no padding of their own, so the full forward and the cached sampler run the same weights on the same
    zero-padded inputs (the cached sampler's per-position step writes the horizontal convolution as a matrix product).

    Args:
        channels: C.
        kernel_size: k (odd); the vertical kernel is ``(k//2 + 1) × k``, the horizontal one ``1 × (k//2 + 1)``.
        first: the type-A layer (no residual connection).
    """

    def __init__(self, channels: int, kernel_size: int, first: bool):
        super().__init__()
        half = kernel_size // 2
        self.first = first
        self.v_conv = nn.Conv2d(channels, 2 * channels, (half + 1, kernel_size))
        self.h_conv = nn.Conv2d(channels, 2 * channels, (1, half + 1))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, 2 * channels, 1)  # residual and skip parts

    def vertical(self, v_padded: torch.Tensor, extra: torch.Tensor | float) -> torch.Tensor:
        """Vertical pre-activation.

        Args:
            v_padded: ``[B, C, h + k//2, w + 2·(k//2)]`` vertical input, zero-padded at the top, left and right.
            extra: conditioning term broadcastable to ``[B, 2C, h, w]`` (or 0).

        Returns:
            ``[B, 2C, h, w]``.
        """
        return self.v_conv(v_padded) + extra

    def horizontal(self, h_padded: torch.Tensor, h_in: torch.Tensor, link: torch.Tensor,
                   extra: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """Horizontal gated step.

        Args:
            h_padded: ``[B, C, h, w + k//2]`` horizontal input, zero-padded on the left.
            h_in: ``[B, C, h, w]`` the same input unpadded (residual path; unused by the first layer).
            link: ``[B, 2C, h, w]`` the vertical contribution, already shifted down one row.
            extra: conditioning term broadcastable to ``[B, 2C, h, w]`` (or 0).

        Returns:
            ``(h_next [B, C, h, w], skip [B, C, h, w])``.
        """
        pre = self.h_conv(h_padded) + link + extra
        residual, skip = self.h_out(gate(pre)).chunk(2, dim=1)
        return (residual if self.first else h_in + residual), skip

    def horizontal_step(self, window: torch.Tensor, h_in: torch.Tensor,
                        offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`horizontal` at one position, as matrix products (small convolutions are slow on CPU).

        Args:
            window: ``[B, C, k//2 + 1]`` horizontal input at columns ``c − k//2 .. c`` (zeros left of the grid).
            h_in: ``[B, C]`` horizontal input at column ``c`` (residual path; unused by the first layer).
            offset: ``[B, 2C]`` what :meth:`horizontal` adds to the convolution: its bias + link + extra.

        Returns:
            ``(h_next [B, C], skip [B, C])``.
        """
        pre = torch.addmm(offset, window.flatten(1), self.h_conv.weight.flatten(1).t())  # [B, 2C]
        residual, skip = F.linear(gate(pre), self.h_out.weight[:, :, 0, 0], self.h_out.bias).chunk(2, dim=1)
        return (residual if self.first else h_in + residual), skip
