"""Fast WaveNet generation on static buffers, for CUDA graphs (see ``priors.graphs``).

The arithmetic of :meth:`priors.wavenet.WaveNet._generate_incremental`, step for step, rewritten so that a step
touches only tensors allocated before the loop: the step index lives on the device (``t``), each layer's ring slots
are computed from it (``(t + j·d) mod (k − 1)·d``), the local frame is picked by ``t // hop``, the noise of the
current block is copied into one buffer, and the drawn symbol is written into the output and the next input by
index. ``UNROLL`` consecutive steps form one graph. On the CPU the same steps run eagerly (that is what the tests
compare with the naive sampler); on CUDA each is captured once per call and replayed.

Axis legend: B batch, T steps, K classes, R residual channels, L layers, C local channels.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from priors.graphs import StepGraphs
from priors.sampling import gumbel_pick

UNROLL = 16  # steps per captured graph; the steps of a noise block beyond a multiple of it replay a one-step graph


@torch.inference_mode()
def generate_static(net, blocks: Iterator[torch.Tensor], batch: int, length: int, local: torch.Tensor | None,
                    global_ids: torch.Tensor | None, temperature: float, capture: bool) -> torch.Tensor:
    """Draw ``[B, length]`` symbols from ``net`` (a :class:`~priors.wavenet.WaveNet` in eval mode).

    Args:
        net: the model. blocks: consecutive ``[B, n, K]`` Gumbel noise blocks covering ``length`` steps.
        batch: B. length: T. local: ``[B, C, T / hop]`` or None. global_ids: ``[B]`` or None (validated).
        temperature: > 0. capture: record CUDA graphs (on CUDA; elsewhere the steps run eagerly).

    Returns:
        ``[B, length]`` long symbols, identical to the incremental and naive samplers' for the same noise.
    """
    k, r, n_layers = net.kernel_size, net.residual_channels, net.num_layers
    weight = net.embedding.weight
    dev, dtype = weight.device, weight.dtype
    steps = net._step_weights()
    rings = [torch.zeros((k - 1) * d, batch, 2 * r, device=dev, dtype=dtype) for _, d, _, _ in steps]
    offsets = torch.tensor([[j * d for j in range(k - 1)] for _, d, _, _ in steps], device=dev)  # [L, k−1]
    sizes = torch.tensor([[(k - 1) * d] for _, d, _, _ in steps], device=dev)  # [L, 1]
    slots = torch.zeros_like(offsets)  # [L, k−1]: the ring slot of step t + j·d, per layer
    t = torch.zeros(1, dtype=torch.long, device=dev)  # the step being drawn
    t_block = torch.zeros(1, dtype=torch.long, device=dev)  # its index in the current noise block
    const = net._step_constants(global_ids, batch)
    base = const["base"]  # [B, L·2R]
    local_w = None if local is None else net.local_proj.weight[:, :, 0].t()  # [C, L·2R]
    local = None if local is None else local.to(dtype).contiguous()
    gates = torch.zeros(batch, n_layers * r, device=dev, dtype=dtype)  # [B, L·R]
    gate_out = gates.split(r, dim=1)  # L × [B, R] views
    out = torch.zeros(batch, length, dtype=torch.long, device=dev)
    start = weight[net.num_classes].expand(batch, r)  # the start symbol
    h = start.clone()  # [B, R] the current step's input
    blocks = iter(blocks)
    first = next(blocks)
    noise = torch.zeros_like(first)  # [B, n, K] the current block

    def step() -> None:
        torch.remainder(offsets + t, sizes, out=slots)
        frames = base
        if local is not None:
            frame = local.index_select(2, torch.div(t, net.local_hop, rounding_mode="floor"))[:, :, 0]  # [B, C]
            frames = torch.addmm(base, frame, local_w)
        frames = frames.view(batch, n_layers, 2 * r).unbind(1)  # L × [B, 2R]
        x = h
        for i, (taps, _, res_w, res_b) in enumerate(steps):
            y = torch.mm(x, taps)  # [B, k·2R]
            ring, slot = rings[i], slots[i, :1]
            pre = torch.add(y[:, :2 * r], ring.index_select(0, slot)[0]).add_(frames[i])  # [B, 2R]
            ring.index_copy_(0, slot, y[:, 2 * r * (k - 1):].unsqueeze(0))  # for step t + (k − 1)·d
            for j in range(1, k - 1):
                ring.index_add_(0, slots[i, j:j + 1], y[:, 2 * r * j:2 * r * (j + 1)].unsqueeze(0))
            torch.mul(torch.tanh(pre[:, :r]), torch.sigmoid(pre[:, r:]), out=gate_out[i])
            if res_w is not None:
                x = torch.addmm(x, gate_out[i], res_w).add_(res_b)
        noise_t = noise.index_select(1, t_block)[:, 0]  # [B, K]
        code = gumbel_pick(net._head_step(gates, const), noise_t, temperature)  # [B]
        out.index_copy_(1, t, code.unsqueeze(1))
        h.copy_(F.embedding(code, weight))
        t.add_(1)
        t_block.add_(1)

    def steps_of(count: int):
        def run() -> None:
            for _ in range(count):
                step()
        return run

    def reset() -> None:
        for ring in rings:
            ring.zero_()
        t.zero_()
        t_block.zero_()
        h.copy_(start)

    unroll = min(UNROLL, noise.shape[1], length)
    runs = {count: steps_of(count) for count in sorted({1, unroll})}
    graphs = StepGraphs(dev, capture)
    for count, run in runs.items():
        reset()
        graphs.prepare(count, run)
    reset()
    block = first
    while block is not None:
        n = block.shape[1]
        noise[:, :n].copy_(block)
        t_block.zero_()
        for _ in range(n // unroll):
            graphs.run(unroll, runs[unroll])
        for _ in range(n % unroll):
            graphs.run(1, runs[1])
        block = next(blocks, None)
    return out
