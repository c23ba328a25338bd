"""Helpers that make single-process code correct under ``torch.distributed``.

Every function is a no-op when no process group is initialised, so the quantizers call them
unconditionally and stay exact on one process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a default process group is initialised and has more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """True on rank 0 (and always when not distributed): the rank that logs and writes files."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place and return it (identity on one process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s value, in place (identity on one process)."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def world_size() -> int:
    """Number of ranks, 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def init_from_env() -> bool:
    """Start the default process group from ``torchrun``'s environment (``WORLD_SIZE`` > 1, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL when CUDA is available (each process on GPU
    ``LOCAL_RANK``), gloo on the CPU. Returns whether a group was started; a no-op outside ``torchrun``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def shutdown() -> None:
    """Destroy the default process group if one is running."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(parameters) -> None:
    """Average the ``.grad`` of ``parameters`` over all ranks, in place (one flattened all-reduce; identity on one
    process). With equal shards of one global batch this gives the gradient of the global batch's mean loss.

    Robust to ranks whose graphs reached different parameters: a parameter with a gradient on some rank gets the
    average over all ranks with zeros where a rank had none (its ``.grad`` is created there), so every rank applies
    the same update; a parameter no rank reached keeps ``.grad = None``.
    """
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    dist.all_reduce(has, op=dist.ReduceOp.SUM)
    reached = [p for p, n in zip(params, has.tolist()) if n > 0]
    for p in reached:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not reached:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in reached])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p in reached:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Rows ``[N_r, ...]`` of every rank, concatenated in rank order ``[Σ N_r, ...]`` (the ranks may hold different
    numbers of rows); ``tensor`` itself on one process."""
    if not is_distributed():
        return tensor
    counts = torch.tensor([tensor.shape[0]], device=tensor.device)
    all_counts = [torch.zeros_like(counts) for _ in range(dist.get_world_size())]
    dist.all_gather(all_counts, counts)
    sizes = [int(c) for c in all_counts]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def rank_seed(seed: int) -> int:
    """The seed of this rank's random stream: ``seed`` on rank 0 (and on one process), a distinct stream on every
    other rank (``seed + 1_000_003 · rank``), so that stochastic layers (SQ's Gumbel noise, level dropout) draw
    independent noise for each shard of the global batch."""
    return seed + 1_000_003 * rank()


def barrier() -> None:
    """Wait for every rank (no-op on one process), e.g. until rank 0 has written a checkpoint others will read."""
    if is_distributed():
        dist.barrier()


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s parameters and buffers (identity on one process)."""
    if is_distributed():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=src)
