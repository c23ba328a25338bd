"""Batches as a pure function of the step, so that a resumed run sees exactly the data it would have seen.

For step s the batch holds items ``s·B … s·B + B − 1`` of an endless stream made of one seeded permutation
of the dataset per epoch. Under ``torch.distributed`` each rank takes its own slice of every batch.

Also :func:`data_variance`, the pixel variance of a dataset's first items (the normaliser of the NMSE), used by
the image and video jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from core import distributed


@lru_cache(maxsize=4)
def _epoch_permutation(num_items: int, seed: int, epoch: int) -> list[int]:
    """The seeded order of the items in one epoch (cached: consecutive steps share it)."""
    return torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def step_batch_indices(num_items: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Dataset indices of the batch of training step ``step`` (0-based).

    Raises:
        ValueError: for an empty dataset or a non-positive batch size.
    """
    if num_items <= 0 or batch_size <= 0:
        raise ValueError(f"need a non-empty dataset and a positive batch size, got {num_items} items, "
                         f"batch size {batch_size}")
    out: list[int] = []
    position = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, num_items)
        perm = _epoch_permutation(num_items, seed, epoch)
        take = min(batch_size - len(out), num_items - offset)
        out.extend(perm[offset:offset + take])
        position += take
    return out


class StepBatchSampler(Sampler[list[int]]):
    """Yields the batches of steps ``start_step … end_step − 1`` (see :func:`step_batch_indices`).

    With several ranks each yields its slice ``batch[rank::world]``
    (the batch size is the global one).
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: int, end_step: int):
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.start_step, self.end_step = start_step, end_step

    def __len__(self) -> int:
        return max(self.end_step - self.start_step, 0)

    def __iter__(self) -> Iterator[list[int]]:
        rank = distributed.rank()
        world = torch.distributed.get_world_size() if distributed.is_distributed() else 1
        for step in range(self.start_step, self.end_step):
            yield step_batch_indices(self.num_items, self.batch_size, self.seed, step)[rank::world]


def step_loader(dataset: Dataset, batch_size: int, seed: int, start_step: int, end_step: int,
                num_workers: int = 0) -> DataLoader:
    """A DataLoader over the batches of steps ``start_step … end_step − 1``."""
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start_step, end_step)
    # an own generator: creating the iterator must not draw from the global RNG (a resumed run restores it)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, persistent_workers=False,
                      pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(seed))


def data_variance(dataset: Dataset, max_items: int = 4096) -> float:
    """Variance of all pixel values of the first ``max_items`` items (the normaliser of the NMSE).

    Per-item statistics are merged with Chan et al.'s pairwise formula, in float64, so memory stays one item.

    Returns:
        The population variance (``ddof=0``) over every value of every ``x`` of ``dataset[0:max_items]``.

    Raises:
        ValueError: If no item is read.
    """
    count, mean, m2 = 0, 0.0, 0.0
    for i in range(min(len(dataset), max_items)):
        x: Any = dataset[i][0]
        x = torch.as_tensor(x, dtype=torch.float64).flatten()
        n_b = x.numel()
        if n_b == 0:
            continue
        mean_b = x.mean().item()
        m2_b = ((x - mean_b) ** 2).sum().item()
        total = count + n_b
        delta = mean_b - mean
        mean += delta * n_b / total
        m2 += m2_b + delta**2 * count * n_b / total
        count = total
    if count == 0:
        raise ValueError("data_variance needs at least one item")
    return m2 / count
