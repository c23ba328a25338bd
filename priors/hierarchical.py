"""Priors over the latent maps of a hierarchical VQ-VAE (VQ-VAE-2, Razavi et al. 2019, sec. 3.2 and Alg. 2).

``p(z_top, …, z_bottom) = p(z_top) · Π_l p(z_l | z_{>l})``: one gated PixelCNN per level. The top level's prior sees
its own earlier codes (and the class label where there is one; optionally causal self-attention,
:mod:`priors.attention`). Every lower level's prior is a gated PixelCNN over that level's codes whose spatial
conditioning map (:class:`AboveLevels`) is computed from the codes of every level above it: each is embedded,
repeated up to the level's grid (nearest neighbour, 2× per level) and mixed by 3×3 convolutions. That map is not
causal, and need not be: the levels above are known in full before a level is drawn (top → bottom).

Negative log-likelihoods are in nats; the parameters of the levels are disjoint, so training the sum of the levels'
losses is training each prior on its own (as the paper does) in one loop.

Axis legend: B batch, L levels (index 0 = bottom), h_l w_l grid of level l (2× the side of level l + 1),
K codebook size, C channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from priors.pixelcnn import GatedPixelCNN


class AboveLevels(nn.Module):
    """Spatial conditioning of level ``l``'s prior from the codes of the ``above`` levels over it.

    ``forward(codes)`` with ``codes[j]: [B, h_l / 2^(j+1), w_l / 2^(j+1)]`` (the level right above first) →
    ``[B, C, h_l, w_l]``.
    """

    def __init__(self, num_codes: int, above: int, channels: int):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(num_codes, channels) for _ in range(above))
        self.net = nn.Sequential(nn.Conv2d(above * channels, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, channels, 1))

    def forward(self, codes: list[torch.Tensor]) -> torch.Tensor:
        maps = []
        for j, (emb, c) in enumerate(zip(self.embeddings, codes)):
            m = rearrange(emb(c), "b h w c -> b c h w")  # [B, C, h_{l+j+1}, w_{l+j+1}]
            maps.append(m.repeat_interleave(2 ** (j + 1), -1).repeat_interleave(2 ** (j + 1), -2))  # [B, C, h_l, w_l]
        return self.net(torch.cat(maps, 1))


class HierarchicalPrior(nn.Module):
    """One gated PixelCNN per level, each lower level conditioned on the levels above (module docstring).

    Args:
        num_codes: K of every level's codebook.
        levels: L ≥ 1.
        channels, num_layers, kernel_size: of every level's :class:`~priors.pixelcnn.GatedPixelCNN` (and C of the
            conditioning maps).
        num_classes: > 0 to condition every level on a class label ``[B]``.
        top_attention_blocks, attention_heads: causal self-attention in the top level's prior (0: none).

    Shapes:
        ``forward(codes)`` with ``codes`` a list of ``[B, h_l, w_l]`` long tensors, bottom first → list of
        ``[B, K, h_l, w_l]`` logits (bottom first); logits at ``(r, c)`` of level ``l`` predict code ``(r, c)`` of
        level ``l`` from the codes before it in raster order on that level and every code of the levels above.
    """

    def __init__(self, num_codes: int, levels: int, channels: int = 64, num_layers: int = 8, kernel_size: int = 5,
                 num_classes: int = 0, top_attention_blocks: int = 0, attention_heads: int = 4):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels, self.num_codes, self.num_classes = levels, num_codes, num_classes
        top = levels - 1
        self.priors = nn.ModuleList(
            GatedPixelCNN(num_codes, channels, num_layers, kernel_size, num_classes=num_classes,
                          spatial_channels=0 if l == top else channels,
                          attention_blocks=top_attention_blocks if l == top else 0, attention_heads=attention_heads)
            for l in range(levels))
        self.conditioners = nn.ModuleList(AboveLevels(num_codes, top - l, channels) for l in range(top))

    def _check(self, codes: list[torch.Tensor]) -> None:
        if len(codes) != self.levels:
            raise ValueError(f"need the codes of {self.levels} levels, got {len(codes)}")
        for l in range(self.levels - 1):
            if codes[l].shape[1:] != tuple(2 * n for n in codes[l + 1].shape[1:]):
                raise ValueError(f"level {l} must have twice the sides of level {l + 1}, got "
                                 f"{tuple(codes[l].shape[1:])} and {tuple(codes[l + 1].shape[1:])}")

    def spatial(self, level: int, codes: list[torch.Tensor]) -> torch.Tensor | None:
        """The conditioning map of ``level``'s prior from ``codes`` (bottom first; only levels above ``level`` are
        read): ``[B, C, h_l, w_l]``, or None for the top level."""
        if level == self.levels - 1:
            return None
        return self.conditioners[level](codes[level + 1:])

    def forward(self, codes: list[torch.Tensor], cond: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Logits of every level (see the class docstring). Raises ``ValueError`` for mismatched levels."""
        self._check(codes)
        return [self.priors[l](codes[l], cond, self.spatial(l, codes)) for l in range(self.levels)]

    def nll(self, codes: list[torch.Tensor], cond: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``−log p(z_l | z_{>l})`` of every level in nats per item ``[B]``, bottom first."""
        return [F.cross_entropy(logits, c, reduction="none").flatten(1).sum(1)
                for logits, c in zip(self(codes, cond), codes)]

    @torch.no_grad()
    def sample(self, batch: int, grids: list[tuple[int, int]], cond: torch.Tensor | None = None,
               temperature: float = 1.0, generator: torch.Generator | None = None,
               method: str = "cached") -> list[torch.Tensor]:
        """Draw every level top → bottom (VQ-VAE-2 Alg. 2), each with its prior's ``sample`` (``method``:
        ``"cached"`` or ``"naive"``, identical draws for the same generator state).

        Args:
            batch: B.
            grids: ``(h_l, w_l)`` of every level, bottom first.
            cond: class labels ``[B]`` or None.
            temperature, generator: as :meth:`priors.pixelcnn.GatedPixelCNN.sample` (the noise of the top level is
                drawn first).

        Returns:
            ``[B, h_l, w_l]`` long codes per level, bottom first.
        """
        if len(grids) != self.levels:
            raise ValueError(f"need the grids of {self.levels} levels, got {len(grids)}")
        codes: list[torch.Tensor | None] = [None] * self.levels
        for l in reversed(range(self.levels)):
            codes[l] = self.priors[l].sample((batch, *grids[l]), cond, self.spatial(l, codes), temperature,
                                             generator, method)
        return codes
