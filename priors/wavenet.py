"""WaveNet over categorical sequences (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio") with
exact fast generation (Fast WaveNet, Paine et al. 2016).

Used twice by the audio job (VQ-VAE paper sec. 4.3): as the decoder over 256-way μ-law samples, conditioned on the
latents (local) and the speaker (global), and as the prior over the code sequence, conditioned on the speaker.

Network: the previous symbol's embedding (position 0 sees a dedicated start symbol, index K) → L residual layers,
layer ``i`` of a cycle a causal convolution of kernel k and dilation ``2**i`` (zero-padded on the left only) whose
``[a, b]`` output, plus the layer's conditioning, is gated ``tanh(a) · σ(b)`` → a 1×1 convolution into a residual
part (added to the layer input) and a skip part (the last layer has only the skip part) → the sum of the skips
through ReLU → 1×1 → ReLU → 1×1 into K logits.

Conditioning, added inside every gate: a local map ``[B, C, N]`` through one 1×1 convolution per layer (all layers in
one map), given at ``1 / local_hop`` of the output rate, each frame's projection held for ``local_hop`` steps (exactly
nearest-neighbour upsampling followed by the 1×1 convolution, at ``1 / local_hop`` of the cost); and a global id
``[B]`` embedded (``global_dim``) and projected per layer (``global_dim = 0``: embedded straight to the per-layer
terms, i.e. a one-hot projection).

Alignment: ``forward(x)[:, :, t]`` are the logits of ``x[:, t]`` given ``x[:, :t]`` (and ``local`` at frame
``t // local_hop``, the global id). They see exactly ``x[:, t - receptive_field : t]``.

Axis legend: B batch, T steps (samples or codes), K classes, R residual channels, S skip channels, L layers,
C local channels, N local frames (``T / local_hop``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import out_of_range
from priors.gated_layer import gate
from priors.graphs import use_graphs
from priors.sampling import (
    check_temperature,
    gumbel_noise,
    gumbel_pick,
    naive_raster_sample,
)
from priors.wavenet_static import generate_static

NOISE_BLOCK = 64  # steps of Gumbel noise drawn at a time when none is given: bounded memory, cache-sized blocks
METHODS = ("incremental", "naive")


class ResidualLayer(nn.Module):
    """One dilated layer: causal convolution ``R → 2R`` (no padding of its own: callers pad on the left), gate,
    and a 1×1 convolution into ``R`` residual + ``S`` skip channels (skip only when ``last``)."""

    def __init__(self, residual_channels: int, skip_channels: int, kernel_size: int, dilation: int, last: bool):
        super().__init__()
        self.dilation, self.last, self.padding = dilation, last, (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(residual_channels, 2 * residual_channels, kernel_size, dilation=dilation)
        self.out = nn.Conv1d(residual_channels, skip_channels + (0 if last else residual_channels), 1)


class WaveNet(nn.Module):
    """Autoregressive categorical WaveNet with optional local and global conditioning.

    Args:
        num_classes: K, symbols per step (256 μ-law levels for the decoder, the codebook size for the prior).
        residual_channels: R.
        skip_channels: S (also the hidden width of the output head).
        dilation_layers: layers per cycle; dilations ``1, 2, …, 2**(dilation_layers - 1)``.
        dilation_cycles: repeats of the dilation cycle (L = layers × cycles).
        kernel_size: k ≥ 2 taps of each dilated convolution.
        local_channels: C of the local conditioning map; None for none.
        global_classes: number of global ids (speakers); None for none.
        global_dim: size of the global embedding (0: embed straight to the per-layer terms).
        local_hop: output steps per local frame (the decoder passes z_q at the code rate with hop 64).

    Raises:
        ValueError: for non-positive sizes or ``kernel_size < 2``.
    """

    def __init__(self, num_classes: int, residual_channels: int, skip_channels: int, dilation_layers: int,
                 dilation_cycles: int, kernel_size: int = 2, local_channels: int | None = None,
                 global_classes: int | None = None, global_dim: int = 0, local_hop: int = 1):
        super().__init__()
        sizes = dict(num_classes=num_classes, residual_channels=residual_channels, skip_channels=skip_channels,
                     dilation_layers=dilation_layers, dilation_cycles=dilation_cycles, local_hop=local_hop)
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if kernel_size < 2:
            raise ValueError(f"kernel_size must be >= 2, got {kernel_size}")
        if (local_channels is not None and local_channels < 1) or (global_classes is not None and global_classes < 1):
            raise ValueError("local_channels and global_classes must be positive or None")
        if global_dim < 0:
            raise ValueError(f"global_dim must be >= 0, got {global_dim}")
        self.num_classes, self.residual_channels, self.skip_channels = num_classes, residual_channels, skip_channels
        self.kernel_size, self.local_channels, self.global_classes = kernel_size, local_channels, global_classes
        self.local_hop = local_hop
        dilations = [2 ** i for _ in range(dilation_cycles) for i in range(dilation_layers)]
        self.num_layers = len(dilations)
        self.embedding = nn.Embedding(num_classes + 1, residual_channels)  # index K: the start symbol
        self.layers = nn.ModuleList(
            ResidualLayer(residual_channels, skip_channels, kernel_size, d, last=i == self.num_layers - 1)
            for i, d in enumerate(dilations))
        cond_out = self.num_layers * 2 * residual_channels  # every layer's gate term in one map
        self.local_proj = nn.Conv1d(local_channels, cond_out, 1, bias=False) if local_channels else None
        if global_classes is None:
            self.global_embedding = self.global_proj = None
        else:
            self.global_embedding = nn.Embedding(global_classes, global_dim or cond_out)
            self.global_proj = nn.Linear(global_dim, cond_out, bias=False) if global_dim else None
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip_channels, skip_channels, 1), nn.ReLU(),
                                  nn.Conv1d(skip_channels, num_classes, 1))

    @property
    def receptive_field(self) -> int:
        """Past symbols the logits at t see (``x[t − rf : t]``): ``rf = (k − 1)·Σ dilations + 1``."""
        return sum(layer.padding for layer in self.layers) + 1  # + 1: the input is shifted right by one step

    # ----------------------------------------------------------------------------------------------- validation
    def _check_cond(self, local: torch.Tensor | None, global_ids: torch.Tensor | None, batch: int,
                    length: int) -> None:
        if self.local_proj is None:
            if local is not None:
                raise ValueError("local conditioning given but the model has local_channels=None")
        elif local is None:
            raise ValueError("the model is locally conditioned: local is required")
        elif (local.dim() != 3 or not local.is_floating_point() or local.shape[:2] != (batch, self.local_channels)
              or local.shape[2] * self.local_hop != length):
            raise ValueError(f"local must be a float tensor [{batch}, {self.local_channels}, {length} / "
                             f"local_hop={self.local_hop}], got {local.dtype} {tuple(local.shape)}")
        if self.global_embedding is None:
            if global_ids is not None:
                raise ValueError("global_ids given but the model has global_classes=None")
        elif global_ids is None:
            raise ValueError("the model is globally conditioned: global_ids is required")
        elif global_ids.shape != (batch,) or global_ids.dtype != torch.long:
            raise ValueError(f"global_ids must be a long tensor [{batch}], got {global_ids.dtype} "
                             f"{tuple(global_ids.shape)}")
        elif out_of_range(global_ids, self.global_classes):
            raise ValueError(f"global_ids must lie in [0, {self.global_classes}), got range "
                             f"[{int(global_ids.min())}, {int(global_ids.max())}]")

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.dtype != torch.long or x.shape[1] == 0:
            raise ValueError(f"x must be a long tensor [B, T] with T >= 1, got {x.dtype} {tuple(x.shape)}")
        if out_of_range(x, self.num_classes):
            raise ValueError(f"x must lie in [0, {self.num_classes}), got range [{int(x.min())}, {int(x.max())}]")

    # --------------------------------------------------------------------------------------------- forward
    def _global_term(self, global_ids: torch.Tensor | None) -> torch.Tensor | None:
        """``[B, L·2R]`` gate terms of the global ids, or None."""
        if global_ids is None:
            return None
        emb = self.global_embedding(global_ids)
        return emb if self.global_proj is None else self.global_proj(emb)

    def _conditioning(self, local: torch.Tensor | None, global_ids: torch.Tensor | None) -> torch.Tensor | None:
        """Every layer's gate term at the local rate: ``[B, L·2R, N]`` (``N = 1`` when only global), or None."""
        term = None if local is None else self.local_proj(local.to(self.embedding.weight.dtype))  # [B, L·2R, N]
        glob = self._global_term(global_ids)
        if glob is not None:
            term = glob[..., None] if term is None else term + glob[..., None]
        return term

    def forward_embedded(self, emb: torch.Tensor, local: torch.Tensor | None = None,
                         global_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from the embeddings of ``x`` (no validation; differentiable w.r.t. ``emb`` for causality checks).

        Args:
            emb: ``[B, R, T]``, ``emb[:, :, t]`` the embedding of ``x[:, t]``.
            local: ``[B, C, T / local_hop]`` or None.
            global_ids: ``[B]`` long or None.

        Returns:
            ``[B, K, T]`` logits; position t depends on ``emb`` only at positions ``t − receptive_field … t − 1``.
        """
        start = self.embedding.weight[self.num_classes].view(1, -1, 1).expand(emb.shape[0], -1, 1)
        h = torch.cat([start, emb[..., :-1]], dim=-1)  # [B, R, T] shifted right: position t sees x[< t]
        cond = self._conditioning(local, global_ids)  # [B, L·2R, N] or None
        r, skips = self.residual_channels, 0.0
        for i, layer in enumerate(self.layers):
            pre = layer.conv(F.pad(h, (layer.padding, 0)))  # [B, 2R, T], causal
            if cond is not None:  # hold each frame's term for T / N steps
                term = cond[:, 2 * r * i:2 * r * (i + 1)]  # [B, 2R, N]
                pre = (pre.unflatten(-1, (term.shape[-1], -1)) + term[..., None]).flatten(-2)
            out = layer.out(gate(pre))  # [B, R + S, T] ([B, S, T] for the last layer)
            if layer.last:
                skips = skips + out
            else:
                h, skips = h + out[:, :r], skips + out[:, r:]
        return self.head(skips)  # [B, K, T]

    def forward(self, x: torch.Tensor, local: torch.Tensor | None = None,
                global_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits.

        Args:
            x: ``[B, T]`` long symbols in ``[0, K)``.
            local: ``[B, C, T / local_hop]`` float, if the model has local conditioning.
            global_ids: ``[B]`` long ids in ``[0, global_classes)``, if the model has global conditioning.

        Returns:
            ``[B, K, T]`` logits; those at position t predict ``x[:, t]`` from ``x[:, :t]`` (and local, global).

        Raises:
            ValueError: for symbols out of range, or conditioning that is missing, unexpected or misshapen.
        """
        self._check_input(x)
        self._check_cond(local, global_ids, x.shape[0], x.shape[1])
        return self.forward_embedded(self.embedding(x).transpose(1, 2), local, global_ids)

    def loss(self, x: torch.Tensor, local: torch.Tensor | None = None,
             global_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy of ``x`` under the model, in nats per symbol (scalar)."""
        return F.cross_entropy(self(x, local, global_ids), x)

    # -------------------------------------------------------------------------------------------- sampling
    def sample(self, shape: tuple[int, int], cond: torch.Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None, method: str = "incremental",
               graphs: bool | None = None) -> torch.Tensor:
        """The priors' common interface: ``shape = (B, T)``, ``cond`` the global ids; see :meth:`generate`."""
        return self.generate(shape[1], global_ids=cond, batch=shape[0], temperature=temperature,
                             generator=generator, method=method, graphs=graphs)

    def generate(self, length: int, local: torch.Tensor | None = None, global_ids: torch.Tensor | None = None,
                 batch: int | None = None, temperature: float = 1.0, generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None, method: str = "incremental",
                 graphs: bool | None = None) -> torch.Tensor:
        """Draw ``[B, length]`` symbols left to right with the Gumbel-max trick (see ``priors.sampling``).

        ``method="naive"`` recomputes the full forward once per step; ``method="incremental"`` (Fast WaveNet) keeps,
        per layer, a ring buffer of the contributions its past inputs make to the next ``(k − 1)·dilation`` steps,
        so each step runs every layer on one position: O(L) per sample instead of O(T). Both use the same noise and
        compute the same logits, so they return identical samples (exactly so in float64). On CUDA the incremental
        steps run on static buffers captured as CUDA graphs (``priors.wavenet_static``), one launch per 16 steps.

        Args:
            length: T, steps to draw (must equal ``N · local_hop`` with local conditioning).
            local: ``[B, C, N]`` float, if the model has local conditioning.
            global_ids: ``[B]`` long, if the model has global conditioning.
            batch: B when neither conditioning nor noise gives it (default 1).
            temperature: divides the logits (> 0, as :func:`priors.sampling.check_temperature` requires).
            generator: source of the Gumbel noise, drawn in consecutive ``[B, ≤ NOISE_BLOCK, K]`` blocks so that a
                long batched draw never holds all of its noise (ignored when ``noise`` is given).
            noise: ``[B, length, K]`` Gumbel noise to use instead.
            method: ``"incremental"`` or ``"naive"``.
            graphs: for ``"incremental"``: None = CUDA graphs on CUDA and the eager loop elsewhere; True = the
                static-buffer steps (captured on CUDA, run eagerly elsewhere); False = the eager loop.

        Returns:
            ``[B, length]`` long symbols on the model's device. The model's training mode is left unchanged.

        Raises:
            ValueError: bad ``length``, ``batch``, ``temperature``, ``method``, ``noise`` or conditioning.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        check_temperature(temperature)
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        given = {name: t.shape[0] for name, t in (("local", local), ("global_ids", global_ids), ("noise", noise))
                 if t is not None}
        if batch is not None:
            given["batch"] = batch
        if len(set(given.values())) > 1:
            raise ValueError(f"batch sizes disagree: {given}")
        batch = next(iter(given.values()), 1)
        self._check_cond(local, global_ids, batch, length)
        static = use_graphs(self.embedding.weight.device, graphs)
        weight = self.embedding.weight
        if noise is not None and noise.shape != (batch, length, self.num_classes):
            raise ValueError(f"noise must have shape {(batch, length, self.num_classes)}, got {tuple(noise.shape)}")
        blocks = (iter([noise.to(weight)]) if noise is not None else  # drawn lazily, one block at a time
                  (gumbel_noise((batch, min(NOISE_BLOCK, length - s), self.num_classes), generator, weight.device,
                                weight.dtype) for s in range(0, length, NOISE_BLOCK)))
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                if method == "naive":
                    out = naive_raster_sample(lambda x: self(x, local, global_ids), torch.cat(list(blocks), 1),
                                              temperature)
                elif static:
                    out = generate_static(self, blocks, batch, length, local, global_ids, temperature, capture=True)
                else:
                    out = self._generate_incremental(blocks, batch, length, local, global_ids, temperature)
        finally:
            self.train(was_training)
        return out.clone()  # a normal tensor, usable outside inference mode

    def _step_weights(self) -> list[tuple]:
        """Per layer: ``(taps [R, k·2R], dilation, residual weight [R, R] or None, residual bias)``; chunk j of
        ``h @ taps`` is what input h at step s adds to the convolution's output at step ``s + j·dilation``."""
        k, r = self.kernel_size, self.residual_channels
        weights = []
        for layer in self.layers:
            w = layer.conv.weight  # [2R, R, k]; tap m reads x[t − (k − 1 − m)·d]
            taps = torch.cat([w[:, :, k - 1 - j].t() for j in range(k)], dim=1)  # [R, k·2R]
            res = None if layer.last else layer.out.weight[:r, :, 0].t().contiguous()  # [R, R]
            weights.append((taps, layer.dilation, res, None if layer.last else layer.out.bias[:r]))
        return weights

    def _step_constants(self, global_ids: torch.Tensor | None, batch: int) -> dict[str, torch.Tensor]:
        """What every generation step reuses: ``base`` ``[B, L·2R]`` (the convolutions' biases plus the global term)
        and the skip and head weights as matrices (see :meth:`_head_step`)."""
        bias = torch.cat([layer.conv.bias for layer in self.layers])  # [L·2R]
        glob = self._global_term(global_ids)
        hidden, final = self.head[1], self.head[3]
        return {"base": (bias.expand(batch, -1) if glob is None else glob + bias).contiguous(),
                "skip_w": torch.cat([layer.out.weight[-self.skip_channels:, :, 0] for layer in self.layers], 1).t(),
                "skip_b": sum(layer.out.bias[-self.skip_channels:] for layer in self.layers),  # [S]
                "hid_w": hidden.weight[:, :, 0].t(), "hid_b": hidden.bias,  # [S, S], [S]
                "fin_w": final.weight[:, :, 0].t(), "fin_b": final.bias}  # [S, K], [K]

    @staticmethod
    def _head_step(gates: torch.Tensor, const: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``[B, K]`` of one step from every layer's gate output ``gates`` ``[B, L·R]``: the skips summed by one
        matrix product, then ReLU → 1×1 → ReLU → 1×1 (the same weights as ``self.head``)."""
        skips = torch.addmm(const["skip_b"], gates, const["skip_w"]).relu_()  # [B, S]
        return torch.addmm(const["fin_b"], torch.addmm(const["hid_b"], skips, const["hid_w"]).relu_(), const["fin_w"])

    def _generate_incremental(self, blocks: Iterator[torch.Tensor], batch: int, length: int,
                              local: torch.Tensor | None, global_ids: torch.Tensor | None,
                              temperature: float) -> torch.Tensor:
        """Fast WaveNet (Paine et al. 2016): the same arithmetic as :meth:`forward_embedded`, one position per step.

        Exact because layer i's convolution output at step t is ``Σ_j taps_j · h_i[t − j·d]``: when ``h_i[s]`` is
        computed its products for steps ``s + j·d`` (j ≥ 1) go into a ring buffer of ``(k − 1)·d`` slots, read
        (and refilled) at those steps; the buffers start at zero like the forward's left padding. The conditioning of a
        local frame (projection + global term + convolution biases) is computed once per frame, and the skips are
        summed by one matrix product over all layers' gates.
        """
        k, r, n_layers = self.kernel_size, self.residual_channels, self.num_layers
        dev, dtype = self.embedding.weight.device, self.embedding.weight.dtype
        steps = self._step_weights()
        rings = [torch.zeros((k - 1) * d, batch, 2 * r, device=dev, dtype=dtype) for _, d, _, _ in steps]
        const = self._step_constants(global_ids, batch)
        base = const["base"]  # [B, L·2R]
        local_w = None if local is None else self.local_proj.weight[:, :, 0].t()  # [C, L·2R]
        hop = self.local_hop
        gates = torch.empty(batch, n_layers * r, device=dev, dtype=dtype)  # [B, L·R]
        gate_out = gates.split(r, dim=1)  # L × [B, R] views
        # per-step work buffers and their views, made once: each op of a step writes into one (fewer dispatches)
        y_all = [torch.empty(batch, k * 2 * r, device=dev, dtype=dtype) for _ in steps]  # L × [B, k·2R]
        y_now = [y[:, :2 * r] for y in y_all]  # what h contributes to this step
        y_later = [[y[:, 2 * r * j:2 * r * (j + 1)] for j in range(1, k)] for y in y_all]  # … to step t + j·d
        pre = torch.empty(batch, 2 * r, device=dev, dtype=dtype)
        pre_a, pre_b = pre[:, :r], pre[:, r:]
        tanh_a, sigmoid_b = torch.empty_like(pre_a), torch.empty_like(pre_b)
        x = torch.empty(batch, r, device=dev, dtype=dtype)  # the residual stream through the layers
        codes = []
        h = self.embedding.weight[self.num_classes].expand(batch, r)  # [B, R] the start symbol
        frames = base.view(batch, n_layers, 2 * r).unbind(1)  # L × [B, 2R]
        t = 0
        for block in blocks:
            for noise_t in block.unbind(1):  # [B, K]
                if local_w is not None and t % hop == 0:
                    frames = torch.addmm(base, local[:, :, t // hop].to(dtype), local_w).view(
                        batch, n_layers, 2 * r).unbind(1)
                x.copy_(h)
                for i, (taps, d, res_w, res_b) in enumerate(steps):
                    torch.mm(x, taps, out=y_all[i])  # [B, k·2R]
                    ring = rings[i]
                    cell = ring[t % ring.shape[0]]  # [B, 2R]: what earlier steps added to this step
                    torch.add(y_now[i], cell, out=pre).add_(frames[i])  # [B, 2R]
                    cell.copy_(y_later[i][-1])  # for step t + (k − 1)·d, the slot just read
                    for j in range(1, k - 1):
                        ring[(t + j * d) % ring.shape[0]].add_(y_later[i][j - 1])
                    torch.mul(torch.tanh(pre_a, out=tanh_a), torch.sigmoid(pre_b, out=sigmoid_b), out=gate_out[i])
                    if res_w is not None:
                        x.addmm_(gate_out[i], res_w).add_(res_b)  # next layer's input
                code = gumbel_pick(self._head_step(gates, const), noise_t, temperature)  # [B]
                codes.append(code)
                h = F.embedding(code, self.embedding.weight)  # [B, R]: the next step's input
                t += 1
        return torch.stack(codes, 1)


def build_code_prior(codebook_size: int, num_speakers: int, residual_channels: int, skip_channels: int,
                     dilation_layers: int, dilation_cycles: int, kernel_size: int = 2, global_dim: int = 0) -> WaveNet:
    """The audio job's prior over VQ-VAE codes: a speaker-conditional WaveNet with ``K = codebook_size`` classes and no
    local conditioning (takes plain sizes, e.g. the fields of ``AudioPriorConfig``, so priors need not import audio)."""
    return WaveNet(codebook_size, residual_channels, skip_channels, dilation_layers, dilation_cycles, kernel_size,
                   local_channels=None, global_classes=num_speakers, global_dim=global_dim)
