"""Action-conditional prior over the codes of a video frame (VQ-VAE paper, sec. 4.4):
p(z_t | z_{t−k}, …, z_{t−1}, a_{t−1}).

A :class:`~priors.pixelcnn.GatedPixelCNN` models the code grid of frame t in raster order. Its two conditionings:

* ``spatial``: a map ``[B, S, H, W]`` computed by a small convolutional net from the embedded codes of the k previous
  frames (stacked on the channel axis) and the action embedding broadcast over the grid, so that the map can move
  with the action (a turn shifts the scene sideways, a step forward enlarges it). Dilated residual blocks give it a
  receptive field wide enough for those motions on small grids;
* ``cond``: the action embedding ``[B, A]``, added to every gate of every layer.

Generation (:meth:`ActionConditionalPixelCNN.generate`) rolls out frame after frame in latent space from real context
codes, feeding each generated grid back as context; the frozen VQ-VAE decoder turns codes into frames.

Axis legend: B batch, k context frames, F generated frames, H W code grid, K codebook size, E code embedding,
A action embedding, C channels, S spatial-conditioning channels.
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import out_of_range
from priors.pixelcnn import GatedPixelCNN


class DilatedResidualBlock(nn.Module):
    """``x + conv1×1(ReLU(conv3×3_dilated(ReLU(x))))``, the grid size kept (the first ReLU is not in place)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv1 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv3(F.relu(x))))


class ContextNet(nn.Module):
    """Embedded context codes and an action embedding → the PixelCNN's spatial conditioning map.

    Args:
        context_frames: k.
        embedding_dim: E, channels per context frame.
        action_dim: A.
        channels: width of the net.
        out_channels: S.
        num_blocks: dilated residual blocks (dilations 1, 2, 4, 8, 1, 2, …).
    """

    def __init__(self, context_frames: int, embedding_dim: int, action_dim: int, channels: int, out_channels: int,
                 num_blocks: int):
        super().__init__()
        self.inp = nn.Conv2d(context_frames * embedding_dim + action_dim, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(DilatedResidualBlock(channels, 2 ** (i % 4)) for i in range(num_blocks)))
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, out_channels, 1))

    def forward(self, context_emb: torch.Tensor, action_emb: torch.Tensor) -> torch.Tensor:
        """``context_emb [B, k, E, H, W]``, ``action_emb [B, A]`` → ``[B, S, H, W]``."""
        b, _, _, h, w = context_emb.shape
        x = einops.rearrange(context_emb, "b k e h w -> b (k e) h w")  # [B, k*E, H, W]
        a = action_emb[:, :, None, None].expand(b, -1, h, w)  # [B, A, H, W]
        return self.out(self.blocks(self.inp(torch.cat([x, a], dim=1))))


class ActionConditionalPixelCNN(nn.Module):
    """p(z_t | z_{t−k..t−1}, a_{t−1}): a gated PixelCNN over frame t's codes, conditioned on the codes of the k
    previous frames (through :class:`ContextNet`) and on the action.

    Logits at position ``(r, c)`` of frame t predict code ``(r, c)`` of frame t from the codes of frame t strictly
    before it in raster order, all codes of the k context frames, and the action.

    Args:
        num_codes: K (the frame VQ-VAE's codebook size).
        num_actions: number of discrete actions.
        context_frames: k ≥ 1.
        channels, num_layers, kernel_size: the gated PixelCNN's width, depth and (odd) kernel.
        context_channels: width of the context net; its output has as many channels.
        context_blocks: dilated residual blocks of the context net.
        code_embedding_dim: E, embedding of each context code.
        action_embedding_dim: A.

    Shapes:
        ``forward(indices [B, H, W], context [B, k, H, W], actions [B]) -> logits [B, K, H, W]``;
        ``sample(context, actions) -> [B, H, W]``; ``generate(context [B, ≥k, H, W], actions [B, F]) -> [B, F, H, W]``.
    """

    def __init__(self, num_codes: int, num_actions: int, context_frames: int, channels: int = 128,
                 num_layers: int = 15, kernel_size: int = 5, context_channels: int = 128, context_blocks: int = 4,
                 code_embedding_dim: int = 32, action_embedding_dim: int = 32):
        super().__init__()
        if num_actions < 1 or context_frames < 1 or code_embedding_dim < 1 or action_embedding_dim < 1:
            raise ValueError("num_actions, context_frames and the embedding sizes must be positive")
        self.num_codes, self.num_actions, self.context_frames = num_codes, num_actions, context_frames
        self.code_embedding = nn.Embedding(num_codes, code_embedding_dim)
        self.action_embedding = nn.Embedding(num_actions, action_embedding_dim)
        self.context_net = ContextNet(context_frames, code_embedding_dim, action_embedding_dim, context_channels,
                                      context_channels, context_blocks)
        self.pixelcnn = GatedPixelCNN(num_codes, channels, num_layers, kernel_size, cond_dim=action_embedding_dim,
                                      spatial_channels=context_channels)

    # ------------------------------------------------------------------------------------------ validation
    def _check(self, context: torch.Tensor, actions: torch.Tensor, grid: tuple[int, ...] | None = None) -> None:
        if context.dim() != 4 or context.dtype != torch.long or context.shape[1] != self.context_frames:
            raise ValueError(f"context must be a long tensor [B, {self.context_frames}, H, W], got "
                             f"{context.dtype} {tuple(context.shape)}")
        if grid is not None and tuple(context.shape[2:]) != grid:
            raise ValueError(f"context grid {tuple(context.shape[2:])} differs from the frame's grid {grid}")
        if out_of_range(context, self.num_codes):
            raise ValueError(f"context codes must lie in [0, {self.num_codes})")
        if actions.shape != (context.shape[0],) or actions.dtype != torch.long:
            raise ValueError(f"actions must be a long tensor [{context.shape[0]}], got {actions.dtype} "
                             f"{tuple(actions.shape)}")
        if out_of_range(actions, self.num_actions):
            raise ValueError(f"actions must lie in [0, {self.num_actions})")

    # ----------------------------------------------------------------------------------------- conditioning
    def conditioning(self, context: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The PixelCNN's ``(cond [B, A], spatial [B, S, H, W])`` for context codes ``[B, k, H, W]`` and actions
        ``[B]`` (validated)."""
        self._check(context, actions)
        return self._conditioning_embedded(self.code_embedding(context).movedim(-1, 2), actions)

    def _conditioning_embedded(self, context_emb: torch.Tensor,
                               actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`conditioning` from embedded context ``[B, k, E, H, W]`` (differentiable w.r.t. it)."""
        action_emb = self.action_embedding(actions)  # [B, A]
        return action_emb, self.context_net(context_emb, action_emb)

    def _forward_embedded(self, emb: torch.Tensor, context_emb: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Logits from the embedded current frame ``[B, C, H, W]`` (the PixelCNN's embedding) and embedded context
        ``[B, k, E, H, W]``; no validation (used to check causality by gradients)."""
        cond, spatial = self._conditioning_embedded(context_emb, actions)
        return self.pixelcnn._forward_embedded(emb, cond, spatial)

    # ---------------------------------------------------------------------------------------------- forward
    def forward(self, indices: torch.Tensor, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Logits of every code of frame t.

        Args:
            indices: ``[B, H, W]`` long codes of frame t in ``[0, K)``.
            context: ``[B, k, H, W]`` long codes of frames ``t − k .. t − 1`` (oldest first).
            actions: ``[B]`` long action ``a_{t−1}`` (the one that led from frame t − 1 to frame t).

        Returns:
            ``[B, K, H, W]`` logits; those at ``(r, c)`` predict code ``(r, c)`` of frame t from its codes before
            ``(r, c)`` in raster order, every context code and the action.

        Raises:
            ValueError: wrong shapes or dtypes, codes outside ``[0, K)``, actions outside ``[0, num_actions)``.
        """
        self._check(context, actions, tuple(indices.shape[1:]) if indices.dim() == 3 else None)
        cond, spatial = self.conditioning(context, actions)
        return self.pixelcnn(indices, cond=cond, spatial=spatial)

    def loss(self, indices: torch.Tensor, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of frame t's codes, in nats per code (scalar)."""
        return F.cross_entropy(self(indices, context, actions), indices)

    # --------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, context: torch.Tensor, actions: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None, method: str = "cached") -> torch.Tensor:
        """Draw the codes of frame t given the context codes and the action.

        ``method="cached"`` uses the gated PixelCNN's row-cached sampler, ``"naive"`` recomputes the network per
        position; both use the same Gumbel noise and give the same codes (see :meth:`GatedPixelCNN.sample`).

        Args:
            context: ``[B, k, H, W]`` long codes.
            actions: ``[B]`` long actions.
            temperature: > 0, divides the logits.
            generator: source of the sampling noise.
            method: ``"cached"`` or ``"naive"``.

        Returns:
            ``[B, H, W]`` long codes.
        """
        was_training = self.training
        self.eval()
        try:
            cond, spatial = self.conditioning(context, actions)
            batch, _, height, width = context.shape
            return self.pixelcnn.sample((batch, height, width), cond=cond, spatial=spatial, temperature=temperature,
                                        generator=generator, method=method)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def generate(self, context: torch.Tensor, actions: torch.Tensor, temperature: float = 1.0,
                 generator: torch.Generator | None = None, method: str = "cached") -> torch.Tensor:
        """Roll out frames in latent space: each new grid is sampled from the last k grids (real, then generated)
        and the next action, then appended to the context.

        Args:
            context: ``[B, G, H, W]`` long codes of G ≥ k given frames (oldest first).
            actions: ``[B, F]`` long actions; ``actions[:, i]`` leads from frame ``G − 1 + i`` to frame ``G + i``.
            temperature, generator, method: as in :meth:`sample`.

        Returns:
            ``[B, F, H, W]`` long codes of the F generated frames.

        Raises:
            ValueError: fewer than k given frames, or mismatched batch sizes.
        """
        if context.dim() != 4 or context.shape[1] < self.context_frames:
            raise ValueError(f"context must be [B, G, H, W] with G ≥ {self.context_frames}, got {tuple(context.shape)}")
        if actions.dim() != 2 or actions.shape[0] != context.shape[0]:
            raise ValueError(f"actions must be [{context.shape[0]}, F], got {tuple(actions.shape)}")
        frames = list(context.unbind(1))  # G × [B, H, W]
        out = []
        for i in range(actions.shape[1]):
            window = torch.stack(frames[-self.context_frames:], dim=1)  # [B, k, H, W]
            codes = self.sample(window, actions[:, i], temperature, generator, method)  # [B, H, W]
            frames.append(codes)
            out.append(codes)
        if not out:
            return context.new_zeros((context.shape[0], 0, *context.shape[2:]))
        return torch.stack(out, dim=1)  # [B, F, H, W]
