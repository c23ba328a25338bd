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
    process). With equal shards of one global batch this gives the gradient of the global batch's mean loss."""
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    """Wait for every rank (no-op on one process), e.g. until rank 0 has written a checkpoint others will read."""
    if is_distributed():
        dist.barrier()


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s parameters and buffers (identity on one process)."""
    if is_distributed():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=src)
