"""Causal self-attention over a prior's positions in raster order, with an exact one-position step for sampling.

PixelSNAIL (Chen et al. 2018), the top-level prior of VQ-VAE-2 (Razavi et al. 2019, sec. 3.2), interleaves causal
self-attention with causal convolutions so that every code sees every earlier code, not only those within the
convolutions' receptive field. :class:`CausalAttentionStack` is our named, simpler form of it: pre-norm transformer
blocks (attention + MLP, GPT-2 style) applied to a gated PixelCNN's summed skip features before the output head.

Causality: the query at position ``i`` comes from the features at ``i`` (which depend on codes ``< i`` only); keys
and values at position ``j`` come from the features at ``j`` together with the embedding of code ``j`` itself, and
query ``i`` reads keys ``j < i`` only, plus one learned "nothing yet" key/value that every query may read (so
position 0 has something to attend to). So every code ``< i`` reaches position ``i`` directly, including those the
convolutions' features at positions ``≤ i`` do not yet see (such as the end of the previous row).

Each position's features also get a learned projection of their coordinates ``(row / H, column / W)``.
:meth:`CausalAttentionStack.step` runs the same arithmetic at one position from cached keys and values, and
:meth:`CausalAttentionStack.commit` adds that position's key and value once its code is drawn, so cached sampling
stays exact.

Axis legend: B batch, C channels, H W grid, N = H·W positions in raster order, A heads, E = C / A per head.
"""

from __future__ import annotations

import math

import einops
import torch
from torch import nn


class AttentionBlock(nn.Module):
    """``x + proj(attn(LN(x) → q; [LN(x), code embedding] → k, v))`` then ``x + MLP(LN(x))``; query ``i`` reads keys
    ``j < i`` and the learned null key (module docstring)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"heads ({heads}) must divide channels ({channels})")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(2 * channels, 2 * channels)
        self.null = nn.Parameter(torch.randn(2 * channels) * 0.02)  # key and value of "nothing yet"
        self.proj = nn.Linear(channels, channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return einops.rearrange(x, "b n (a e) -> b a n e", a=self.heads)  # [B, N, C] → [B, A, N, E]

    def _key_value(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]`` features and code embeddings → ``[B, N, 2C]`` keys and values."""
        return self.key_value(torch.cat([self.norm1(x), emb], -1))

    def _attend(self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Softmax attention of the queries of ``x: [B, Nq, C]`` over ``kv: [B, Nk, 2C]`` (the same expression in
        :meth:`forward` and :meth:`step`), then the residual MLP: ``[B, Nq, C]``."""
        q = self._heads(self.query(self.norm1(x)))  # [B, A, Nq, E]
        k, v = (self._heads(t) for t in kv.chunk(2, dim=-1))  # [B, A, Nk, E]
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, A, Nq, Nk]
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        x = x + self.proj(einops.rearrange(scores.softmax(-1) @ v, "b a n e -> b n (a e)"))
        return x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``x: [B, N, C]`` features, ``emb: [B, N, C]`` code embeddings → ``[B, N, C]``."""
        batch, n, _ = x.shape
        kv = torch.cat([self.null.expand(batch, 1, -1), self._key_value(x, emb)], 1)  # [B, 1 + N, 2C]
        blocked = torch.ones(n, n + 1, dtype=torch.bool, device=x.device).triu(1)  # key slot j + 1 ≥ i + 1
        return self._attend(x, kv, blocked)

    def start(self, batch: int, length: int, like: torch.Tensor) -> torch.Tensor:
        """Key/value cache ``[B, 1 + N, 2C]`` for a pass over ``N`` positions: slot 0 holds the null key/value."""
        cache = like.new_zeros(batch, length + 1, self.null.shape[0])
        cache[:, 0] = self.null
        return cache

    def step(self, x: torch.Tensor, cache: torch.Tensor, t: int) -> torch.Tensor:
        """:meth:`forward` at position ``t`` alone: ``x: [B, C]`` → ``[B, C]``, reading cache slots ``0 … t``
        (the null and positions ``< t``)."""
        return self._attend(x[:, None], cache[:, :t + 1], None)[:, 0]

    def commit(self, x: torch.Tensor, emb: torch.Tensor, cache: torch.Tensor, t: int) -> None:
        """Write position ``t``'s key and value (``x: [B, C]`` its features, ``emb: [B, C]`` its drawn code's
        embedding) into cache slot ``t + 1``."""
        cache[:, t + 1] = self._key_value(x[:, None], emb[:, None])[:, 0]


class CausalAttentionStack(nn.Module):
    """``blocks`` :class:`AttentionBlock` over the positions of a ``[B, C, H, W]`` feature map in raster order.

    Args:
        channels: C.
        blocks: number of blocks (≥ 1).
        heads: A, dividing C.

    Raises:
        ValueError: for ``blocks < 1`` or heads not dividing channels.
    """

    def __init__(self, channels: int, blocks: int, heads: int):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.position = nn.Linear(2, channels)
        self.blocks = nn.ModuleList(AttentionBlock(channels, heads) for _ in range(blocks))

    def _coordinates(self, rows: torch.Tensor, cols: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.position(torch.stack([rows / height, cols / width], -1).to(self.position.weight.dtype))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``x: [B, C, H, W]`` features (position ``i`` depending on codes ``< i``), ``emb: [B, C, H, W]`` code
        embeddings → ``[B, C, H, W]``, the output at ``(r, c)`` depending on codes before ``(r, c)`` only."""
        _, _, height, width = x.shape
        seq = einops.rearrange(x, "b c h w -> b (h w) c") + self._grid_coordinates(height, width, x.device)  # [B, N, C]
        codes = einops.rearrange(emb, "b c h w -> b (h w) c")  # [B, N, C]
        for block in self.blocks:
            seq = block(seq, codes)
        return einops.rearrange(seq, "b (h w) c -> b c h w", h=height)

    def _grid_coordinates(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """The coordinate projection of every position in raster order: ``[H·W, C]``."""
        rows, cols = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                                    indexing="ij")
        return self._coordinates(rows.flatten(), cols.flatten(), height, width)

    def start(self, batch: int, height: int, width: int, like: torch.Tensor) -> dict:
        """Sampling state for one pass over an ``H × W`` grid (``like`` gives device and dtype); the coordinate
        projections are computed here once, not at every step."""
        return {"width": width, "caches": [block.start(batch, height * width, like) for block in self.blocks],
                "coordinates": self._grid_coordinates(height, width, like.device), "inputs": [None] * len(self.blocks)}

    def step(self, x: torch.Tensor, state: dict, r: int, c: int) -> torch.Tensor:
        """:meth:`forward` at position ``(r, c)`` alone: ``x: [B, C]`` → ``[B, C]``; every position before it must
        have been stepped through and committed with the same ``state``."""
        t = r * state["width"] + c
        x = x + state["coordinates"][t]
        for i, (block, cache) in enumerate(zip(self.blocks, state["caches"])):
            state["inputs"][i] = x
            x = block.step(x, cache, t)
        return x

    def commit(self, emb: torch.Tensor, state: dict, r: int, c: int) -> None:
        """After the code at ``(r, c)`` is drawn: its embedding ``emb: [B, C]`` and the features :meth:`step` saw
        become that position's keys and values in every block."""
        t = r * state["width"] + c
        for block, cache, x in zip(self.blocks, state["caches"], state["inputs"]):
            block.commit(x, emb, cache, t)
