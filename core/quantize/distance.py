"""Nearest-code search and squared distances, shared by every quantizer.

Axis legend: N vectors, D code dim, K codebook size.

The search uses ‖z − e‖² = ‖z‖² − (2 z·e − ‖e‖²): the ‖z‖² term is the same for every code, so the nearest
code is the argmax of ``2 z·eᵀ − ‖e‖²``, one matrix product per block of rows, with ``−‖e‖²`` folded into the
product as one more input column (``[z, 1] @ [2e, −‖e‖²]ᵀ``; adding it as a bias would rewrite every score block
once more). Blocks are sized so the [rows, K] score block stays in the CPU cache instead of materialising the
full [N, K] distance matrix. All arithmetic is float32 regardless of autocast.
"""

from __future__ import annotations

import torch

# Rows per block: a [1024, 512] float32 score block is 2 MiB, which keeps the CPU's caches warm.
# On accelerators kernel-launch overhead dominates instead, so blocks are much larger there.
_CPU_BLOCK_ROWS = 1024
_ACCELERATOR_BLOCK_ELEMENTS = 1 << 27


def block_rows(n: int, k: int, device: torch.device, cpu_rows: int = _CPU_BLOCK_ROWS,
               accelerator_elements: int = _ACCELERATOR_BLOCK_ELEMENTS) -> int:
    """Rows per block when ``n`` rows meet ``k`` codes on ``device``: ``cpu_rows`` on the CPU (cache-sized blocks),
    else as many as fit ``accelerator_elements`` ``[rows, K]`` entries (launches, not caches, cost there)."""
    if device.type == "cpu":
        return cpu_rows
    return max(1, min(n, accelerator_elements // max(k, 1)))


def augmented_codes(codebook: torch.Tensor) -> torch.Tensor:
    """``[2e; −‖e‖²]`` as ``[D+1, K]`` for a codebook ``[K, D]``: ``[z, 1] @ it`` = ``2 z·e − ‖e‖²``, largest at the
    nearest code (L2)."""
    return torch.cat([(2.0 * codebook).t(), -codebook.square().sum(1, keepdim=True).t()])


@torch.no_grad()
def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (L2) for every row of ``z``.

    Args:
        z: ``[N, D]`` vectors (any float dtype; computed in float32).
        codebook: ``[K, D]`` code vectors.

    Returns:
        ``[N]`` long tensor of indices in ``[0, K)``. Ties go to the lowest index, as ``argmin`` does.
        Non-finite rows give an arbitrary index; callers detect them through their loss value.

    Raises:
        ValueError: if the last dimensions of ``z`` and ``codebook`` differ.
    """
    if z.shape[-1] != codebook.shape[-1]:
        raise ValueError(f"z has dimension {z.shape[-1]} but the codebook has dimension {codebook.shape[-1]}")
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        codebook = codebook.float()
        n, k = z.shape[0], codebook.shape[0]
        out = torch.empty(n, dtype=torch.long, device=z.device)
        if n == 0:
            return out
        d = z.shape[1]
        codes = augmented_codes(codebook)  # [D+1, K]
        rows = block_rows(n, k, z.device)
        rows_1 = torch.ones(min(rows, n), d + 1, device=z.device)  # [rows, D+1]: a block of z and a column of ones
        scores = torch.empty(min(rows, n), k, device=z.device)  # [rows, K]
        best = torch.empty(min(rows, n), device=z.device)
        for start in range(0, n, rows):
            m = min(start + rows, n) - start
            rows_1[:m, :d] = z[start:start + m]
            torch.mm(rows_1[:m], codes, out=scores[:m])
            torch.max(scores[:m], 1, out=(best[:m], out[start:start + m]))
        return out


def squared_distances(z: torch.Tensor, codebook: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """All squared (optionally weighted) distances ``Σ_d w_d (z_d − e_d)²``, differentiable.

    Args:
        z: ``[N, D]`` vectors.
        codebook: ``[K, D]`` code vectors.
        weight: ``None`` (unweighted), a scalar tensor, or ``[N, D]`` per-element weights (e.g. precisions).

    Returns:
        ``[N, K]`` float32 distances, clamped at 0 against rounding.
    """
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        codebook = codebook.float()
        if weight is None or weight.dim() == 0:
            d = z.square().sum(1, keepdim=True) - 2.0 * z @ codebook.t() + codebook.square().sum(1)  # [N, K]
            d = d.clamp_min(0.0)
            return d if weight is None else d * weight.float()
        w = weight.float()  # [N, D]
        d = (w * z.square()).sum(1, keepdim=True) - 2.0 * (w * z) @ codebook.t() + w @ codebook.square().t()
        return d.clamp_min(0.0)  # [N, K]
