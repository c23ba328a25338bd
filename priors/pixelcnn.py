"""Gated PixelCNN prior over VQ-VAE code indices (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders"; used as the latent prior in VQ-VAE, van den Oord et al. 2017, sec. 3.3).

Two stacks, without the blind spot of masked convolutions, made causal by padding and cropping (no weight masks):

* vertical stack: a ``(k//2 + 1) × k`` convolution padded only at the top, so its output at row ``r`` sees input
  rows ``≤ r`` (every column within reach). It reaches the horizontal stack through a 1×1 convolution of its
  pre-activation shifted down one row, so the horizontal stack at row ``r`` sees only rows ``< r`` from it.
* horizontal stack: ``1 × (k//2 + 1)`` convolutions padded only on the left (columns ``≤ c``). The first layer is
  "type A": its input is the code embedding shifted right one column, so it sees only columns ``< c``, and it has no
  residual connection (the residual would carry the code being predicted).

Each layer gates ``tanh(a) · σ(b)`` in both stacks; conditioning (class label or vector, broadcast over positions,
and an optional spatial map) is projected per layer to 2C channels and added inside both gates. The horizontal
stack's gated output goes through a 1×1 convolution into a residual (layers ≥ 2) and a skip part; the skips are
summed and mapped to logits by ReLU → 1×1 → ReLU → 1×1.

Axis legend: B batch, H W code grid height and width, K codebook size, C channels, L layers,
S spatial-conditioning channels.
"""

from __future__ import annotations

import functools

import einops
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import out_of_range
from priors.attention import CausalAttentionStack
from priors.gated_layer import GatedLayer, gate
from priors.graphs import StepGraphs, use_graphs
from priors.sampling import (
    check_temperature,
    gumbel_noise,
    gumbel_pick,
    naive_raster_sample,
)


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN prior over a grid of code indices, optionally conditioned.

    Logits at position ``(r, c)`` predict code ``(r, c)`` from the codes strictly before it in raster order
    (rows ``< r``, and columns ``< c`` of row ``r``), plus the conditioning.

    Args:
        num_codes: K, the VQ-VAE codebook size (paper: 512).
        channels: C, width of both stacks.
        num_layers: L gated layers (the first is type A).
        kernel_size: odd k.
        num_classes: > 0 for a class-label condition (``cond`` long ``[B]``).
        cond_dim: > 0 for a conditioning vector (``cond`` float ``[B, cond_dim]``); exclusive with ``num_classes``.
        spatial_channels: S > 0 for a spatial conditioning map (``spatial`` ``[B, S, H, W]``).
        out_hidden: hidden width of the output head (default C).
        attention_blocks: > 0 for causal self-attention blocks on the summed skips before the head
            (:mod:`priors.attention`, PixelSNAIL-style; a deviation from the gated PixelCNN, off by default).
        attention_heads: heads of those blocks (dividing C).

    Shapes:
        ``forward(indices: [B, H, W], cond, spatial) -> logits [B, K, H, W]``;
        ``sample((B, H, W), cond, spatial) -> [B, H, W]``.
    """

    def __init__(self, num_codes: int, channels: int = 128, num_layers: int = 15, kernel_size: int = 5,
                 num_classes: int = 0, cond_dim: int = 0, spatial_channels: int = 0, out_hidden: int | None = None,
                 attention_blocks: int = 0, attention_heads: int = 4):
        super().__init__()
        if num_codes < 1 or channels < 1 or num_layers < 1:
            raise ValueError("num_codes, channels and num_layers must be positive")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if num_classes > 0 and cond_dim > 0:
            raise ValueError("give either num_classes (class label) or cond_dim (vector), not both")
        self.num_codes, self.channels, self.num_layers = num_codes, channels, num_layers
        self.half = kernel_size // 2
        self.num_classes, self.cond_dim, self.spatial_channels = num_classes, cond_dim, spatial_channels
        self.embedding = nn.Embedding(num_codes, channels)
        self.layers = nn.ModuleList(GatedLayer(channels, kernel_size, first=i == 0) for i in range(num_layers))
        cond_out = num_layers * 2 * channels  # one 2C projection per layer, computed in one map
        self.cond_proj = (nn.Embedding(num_classes, cond_out) if num_classes > 0
                          else nn.Linear(cond_dim, cond_out) if cond_dim > 0 else None)
        self.spatial_proj = nn.Conv2d(spatial_channels, cond_out, 1) if spatial_channels > 0 else None
        self.attention = (CausalAttentionStack(channels, attention_blocks, attention_heads) if attention_blocks > 0
                          else None)
        hidden = out_hidden or channels
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, num_codes, 1))

    # ----------------------------------------------------------------------------------------------- validation
    def _check_indices(self, indices: torch.Tensor) -> None:
        if indices.dim() != 3 or indices.dtype != torch.long:
            raise ValueError(f"indices must be a long tensor [B, H, W], got {indices.dtype} {tuple(indices.shape)}")
        if out_of_range(indices, self.num_codes):
            raise ValueError(f"indices must lie in [0, {self.num_codes}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}]")

    def _check_cond(self, cond: torch.Tensor | None, spatial: torch.Tensor | None, batch: int, grid: tuple) -> None:
        if self.cond_proj is None:
            if cond is not None:
                raise ValueError("cond given but the model is unconditional (num_classes = cond_dim = 0)")
        elif cond is None:
            raise ValueError("the model is conditional: cond is required")
        elif self.num_classes > 0:
            if cond.shape != (batch,) or cond.dtype != torch.long:
                raise ValueError(f"class cond must be a long tensor [{batch}], got {cond.dtype} {tuple(cond.shape)}")
            if out_of_range(cond, self.num_classes):
                raise ValueError(f"class labels must lie in [0, {self.num_classes})")
        elif cond.shape != (batch, self.cond_dim) or not cond.is_floating_point():
            raise ValueError(f"cond must be a float tensor [{batch}, {self.cond_dim}], got {tuple(cond.shape)}")
        if self.spatial_proj is None:
            if spatial is not None:
                raise ValueError("spatial map given but the model has spatial_channels = 0")
        elif spatial is None:
            raise ValueError("the model has spatial conditioning: spatial is required")
        elif spatial.shape != (batch, self.spatial_channels, *grid):
            raise ValueError(f"spatial must have shape {(batch, self.spatial_channels, *grid)}, "
                             f"got {tuple(spatial.shape)}")

    # ------------------------------------------------------------------------------------------ conditioning
    def _conditioning(self, cond: torch.Tensor | None, spatial: torch.Tensor | None) -> list[torch.Tensor | float]:
        """Per-layer conditioning terms: L tensors broadcastable to ``[B, 2C, H, W]`` (0 where unconditional)."""
        terms: list[torch.Tensor | float] = [0.0] * self.num_layers
        if self.cond_proj is not None:
            if cond.is_floating_point():
                cond = cond.to(self.embedding.weight.dtype)
            per_layer = einops.rearrange(self.cond_proj(cond), "b (l c) -> l b c 1 1", l=self.num_layers)
            terms = [t + p for t, p in zip(terms, per_layer)]  # each [B, 2C, 1, 1]
        if self.spatial_proj is not None:
            maps = self.spatial_proj(spatial.to(self.embedding.weight.dtype)).chunk(self.num_layers, dim=1)
            terms = [t + m for t, m in zip(terms, maps)]  # each [B, 2C, H, W]
        return terms

    # --------------------------------------------------------------------------------------------- forward
    def _forward_embedded(self, emb: torch.Tensor, cond: torch.Tensor | None = None,
                          spatial: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from embedded codes (no validation; differentiable w.r.t. ``emb`` for causality checks).

        Args:
            emb: ``[B, C, H, W]`` code embeddings.
            cond: class labels ``[B]`` or vectors ``[B, cond_dim]``, or None.
            spatial: ``[B, S, H, W]`` or None.

        Returns:
            ``[B, K, H, W]`` logits; position ``(r, c)`` depends on ``emb`` only at positions before it in raster order.
        """
        p, height = self.half, emb.shape[2]
        extras = self._conditioning(cond, spatial)
        v = emb  # [B, C, H, W]
        h = F.pad(emb, (1, 0))[..., :-1]  # [B, C, H, W] shifted right: the type-A layer sees columns < c
        skips = 0.0
        for layer, extra in zip(self.layers, extras):
            v_pre = layer.vertical(F.pad(v, (p, p, p, 0)), extra)  # [B, 2C, H, W], rows ≤ r
            link = F.pad(layer.v_to_h(v_pre), (0, 0, 1, 0))[:, :, :height]  # [B, 2C, H, W], rows < r
            h, skip = layer.horizontal(F.pad(h, (p, 0)), h, link, extra)
            v = gate(v_pre)
            skips = skips + skip
        if self.attention is not None:
            skips = self.attention(skips, emb)  # [B, C, H, W], still causal
        return self.head(skips)  # [B, K, H, W]

    def forward(self, indices: torch.Tensor, cond: torch.Tensor | None = None,
                spatial: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of every code given the codes before it.

        Args:
            indices: ``[B, H, W]`` long codes in ``[0, K)``.
            cond: class labels ``[B]`` (long) or vectors ``[B, cond_dim]``, as the model was built; else None.
            spatial: ``[B, S, H, W]`` conditioning map, or None.

        Returns:
            ``[B, K, H, W]`` logits. Logits at position ``(r, c)`` predict code ``(r, c)`` from the codes strictly
            before it in raster order (and the conditioning).

        Raises:
            ValueError: indices out of ``[0, K)`` or not ``[B, H, W]`` long; ``cond`` given to an unconditional model
                or missing from a conditional one; ``spatial`` of the wrong shape or unexpected/missing.
        """
        self._check_indices(indices)
        self._check_cond(cond, spatial, indices.shape[0], tuple(indices.shape[1:]))
        emb = einops.rearrange(self.embedding(indices), "b h w c -> b c h w")  # [B, C, H, W]
        return self._forward_embedded(emb, cond, spatial)

    def loss(self, indices: torch.Tensor, cond: torch.Tensor | None = None,
             spatial: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy of the codes under the prior, in nats per code (scalar)."""
        return F.cross_entropy(self(indices, cond, spatial), indices)

    # -------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, shape: tuple[int, int, int], cond: torch.Tensor | None = None,
               spatial: torch.Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None, method: str = "cached",
               graphs: bool | None = None) -> torch.Tensor:
        """Draw codes in raster order with the Gumbel-max trick; all noise is drawn up front.

        ``method="naive"`` recomputes the full network once per position; ``method="cached"`` computes each
        vertical row once and then only the horizontal stack at one position per step (see :meth:`_sample_cached`).
        Both see identical noise and compute the same logits, so they return identical samples for the same
        ``generator`` state (up to float rounding; exactly in float64 in practice).

        Args:
            shape: ``(B, H, W)``.
            cond: as in :meth:`forward`, with batch B.
            spatial: ``[B, S, H, W]`` or None.
            temperature: divides the logits (> 0); lower is greedier.
            generator: source of the ``[B, H, W, K]`` Gumbel noise (drawn on its device).
            method: ``"cached"`` or ``"naive"``.
            graphs: for ``"cached"``: capture each column's step as a CUDA graph (None: on CUDA; False: never).

        Returns:
            ``[B, H, W]`` long codes on the model's device.

        Raises:
            ValueError: bad ``shape``, ``temperature``, ``method`` or conditioning.
        """
        if len(shape) != 3 or min(shape) < 0 or min(shape[1:]) < 1:
            raise ValueError(f"shape must be (B, H, W) with H, W ≥ 1, got {shape}")
        if method not in ("cached", "naive"):
            raise ValueError(f"method must be 'cached' or 'naive', got {method!r}")
        check_temperature(temperature)
        batch, height, width = (int(n) for n in shape)
        self._check_cond(cond, spatial, batch, (height, width))
        weight = self.embedding.weight
        capture = use_graphs(weight.device, graphs)
        noise = gumbel_noise((batch, height, width, self.num_codes), generator, weight.device, weight.dtype)
        was_training = self.training
        self.eval()
        try:
            if method == "naive":
                return naive_raster_sample(lambda idx: self(idx, cond, spatial), noise, temperature)
            return self._sample_cached(noise, cond, spatial, temperature, capture=capture)
        finally:
            self.train(was_training)

    def _sample_cached(self, noise: torch.Tensor, cond: torch.Tensor | None, spatial: torch.Tensor | None,
                       temperature: float, logits_out: torch.Tensor | None = None,
                       capture: bool = False) -> torch.Tensor:
        """Row-cached exact sampler.

        Why it is exact: the horizontal stack at ``(r, c)`` reads the vertical stack only at row ``r − 1`` (the link
        is shifted down), and the vertical stack at row ``r − 1`` depends only on codes in rows ``≤ r − 1``, all known
        once row ``r − 1`` is drawn. So each vertical row is computed once, right after its codes are drawn, into
        zero-padded per-layer buffers (the zeros stand for the forward's padding). Within a row, each layer's
        horizontal output at column ``c`` needs only columns ``c − k//2 .. c`` of that layer's input on the same row,
        which earlier steps have filled, so one step runs every layer on a single position. The arithmetic is
        :class:`GatedLayer`'s, applied to windows of the same zero-padded inputs as the full forward. Work: one
        vertical row per layer per row and one position per layer per step, O(H·W) in all against the naive
        O((H·W)²).

        Args:
            noise: ``[B, H, W, K]`` Gumbel noise.
            cond, spatial: validated conditioning.
            temperature: > 0.
            logits_out: optional ``[B, K, H, W]`` tensor that receives the logits of every step; they equal
                ``self(codes, cond, spatial)`` for the returned codes (what the tests check).
            capture: on CUDA, capture each column's step once as a CUDA graph and replay it on every row (the step
                reads and writes only the per-row buffers, see ``priors.graphs``); ignored with attention or
                ``logits_out``, whose steps depend on the row.

        Returns:
            ``[B, H, W]`` long codes.
        """
        batch, height, width, _ = noise.shape
        p, chans, dev, dtype = self.half, self.channels, noise.device, self.embedding.weight.dtype
        extras = self._conditioning(cond, spatial)  # L × ([B, 2C, 1, 1] or [B, 2C, H, W] or 0)
        # per-position view of each layer's conditioning: [B, H, W, 2C] (broadcast dims expanded, no copy)
        cells = [einops.rearrange(e, "b c h w -> b h w c").expand(batch, height, width, -1) if torch.is_tensor(e)
                 else e for e in extras]
        zeros = functools.partial(torch.zeros, device=dev, dtype=dtype)
        # vertical inputs per layer, zero-padded like the forward: p rows on top, p columns each side
        v_in = [zeros(batch, chans, height + p, width + 2 * p) for _ in self.layers]
        # horizontal inputs per layer on the current row, p zero columns on the left; layer 0 holds the
        # embedding shifted right one column (type A). Written column by column before being read.
        h_in = [zeros(batch, chans, width + p) for _ in self.layers]  # [B, C, W+p]
        links = [zeros(batch, width, 2 * chans) for _ in self.layers]  # [B, W, 2C] vertical part of the row (row 0: 0)
        # the current row's inputs and outputs, at fixed addresses: what a captured column step reads and writes
        offsets = [zeros(batch, width, 2 * chans) for _ in self.layers]  # [B, W, 2C] bias + link + conditioning
        noise_row = torch.zeros_like(noise[:, 0])  # [B, W, K]
        code_row = torch.zeros(batch, width, dtype=torch.long, device=dev)
        emb_row = zeros(batch, chans, width)
        out = torch.zeros(batch, height, width, dtype=torch.long, device=dev)
        attention = self.attention.start(batch, height, width, noise) if self.attention is not None else None
        position = [0]  # the row being drawn, for the steps that cannot be captured (attention, logits_out)

        def column_step(c: int) -> None:
            skips = 0.0
            for i, layer in enumerate(self.layers):
                h, skip = layer.horizontal_step(h_in[i][..., c:c + p + 1], h_in[i][..., c + p], offsets[i][:, c])
                if i + 1 < self.num_layers:
                    h_in[i + 1][..., c + p] = h  # [B, C]
                skips = skips + skip
            if attention is not None:
                skips = self.attention.step(skips, attention, position[0], c)  # [B, C]
            logits = self._head_step(skips)  # [B, K]
            if logits_out is not None:
                logits_out[:, :, position[0], c] = logits
            code = gumbel_pick(logits, noise_row[:, c], temperature)  # [B]
            code_row[:, c] = code
            emb = self.embedding(code)  # [B, C]
            if attention is not None:
                self.attention.commit(emb, attention, position[0], c)
            emb_row[:, :, c] = emb
            if c + 1 < width:
                h_in[0][..., c + 1 + p] = emb

        steps = [functools.partial(column_step, c) for c in range(width)]
        graphs = StepGraphs(dev, capture and attention is None and logits_out is None)
        for c, step in enumerate(steps):
            graphs.prepare(c, step)
        for buffer in h_in + [emb_row]:  # undo the warm-ups of the capture
            buffer.zero_()
        for r in range(height):
            position[0] = r
            noise_row.copy_(noise[:, r])
            for link, layer, cell, offset in zip(links, self.layers, cells, offsets):
                torch.add(link, layer.h_conv.bias, out=offset)
                if torch.is_tensor(cell):
                    offset.add_(cell[:, r])
            for c, step in enumerate(steps):
                graphs.run(c, step)
            out[:, r] = code_row
            v_in[0][:, :, r + p, p:p + width] = emb_row
            if r + 1 < height:  # row r is complete: its vertical features feed row r + 1
                for i, layer in enumerate(self.layers):
                    extra = einops.rearrange(cells[i][:, r], "b w c -> b c 1 w") if torch.is_tensor(cells[i]) else 0.0
                    v_pre = layer.vertical(v_in[i][:, :, r:r + p + 1], extra)  # [B, 2C, 1, W]
                    links[i] = einops.rearrange(layer.v_to_h(v_pre), "b c 1 w -> b w c")  # [B, W, 2C]
                    if i + 1 < self.num_layers:
                        v_in[i + 1][:, :, r + p:r + p + 1, p:p + width] = gate(v_pre)
        return out

    def _head_step(self, skips: torch.Tensor) -> torch.Tensor:
        """The output head at one position: ``[B, C] -> [B, K]`` logits (same weights as ``self.head``)."""
        hidden, logits = self.head[1], self.head[3]
        x = F.linear(F.relu(skips), hidden.weight[:, :, 0, 0], hidden.bias)
        return F.linear(F.relu(x), logits.weight[:, :, 0, 0], logits.bias)
