"""Code grids for the priors: the encoder's codes of a dataset laid out as the prior's 2-D grid, cached on disk.

Works with any VQ-VAE whose ``encode(x)`` returns ``[B, h, w]`` or ``[B, h, w, G]`` indices (the image model and the
video frame model). Axis legend: N items, h w latent grid, G codebooks per latent position.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from core.files import keyed_cache

EXTRACT_BATCH = 256


def to_prior_grid(codes: torch.Tensor) -> torch.Tensor:
    """``[N, h, w]`` or ``[N, h, w, G]`` code indices → the prior's ``[N, h, w·G]`` grid."""
    return codes if codes.dim() == 3 else codes.flatten(2)  # [N, h, w*G]


def from_prior_grid(grid: torch.Tensor, groups: int) -> torch.Tensor:
    """Inverse of :func:`to_prior_grid`."""
    return grid if groups == 1 else grid.unflatten(2, (-1, groups))  # [N, h, w, G]


@torch.no_grad()
def extract_codes(vqvae, dataset, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and labels of the first ``count`` items of ``dataset`` (all of it if smaller).

    Returns:
        ``codes`` ``[N, h, w·G]`` long (the prior's grid) and ``labels`` ``[N]`` long (−1 where unlabelled).
    """
    n = min(count, len(dataset)) if count > 0 else len(dataset)
    codes, labels = [], []
    for x, y in DataLoader(Subset(dataset, range(n)), batch_size=EXTRACT_BATCH):
        codes.append(to_prior_grid(vqvae.encode(x.to(device))).cpu())
        labels.append(torch.as_tensor(y).long())
    return torch.cat(codes), torch.cat(labels)


def cached_codes(path: Path, vqvae, vqvae_hash: str, dataset, count: int, device: torch.device,
                 data_key: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`extract_codes`, cached in ``path`` and reused only for the same VQ-VAE weights, item count and data
    (``data_key``, e.g. the data config)."""
    key = {"vqvae_hash": vqvae_hash, "count": count, "data": data_key}
    codes, labels = keyed_cache(path, key, lambda: extract_codes(vqvae, dataset, count, device))
    return codes, labels
