"""Shared machinery of the codebook quantizers: input contract, code groups, and codebook-health options.

Axis legend: N vectors (all leading axes of ``z_e`` flattened), G codebooks per latent, K codebook size,
D code dim of one codebook.

The contract (``CONVENTIONS.md``): ``z_e`` has shape ``[..., G*D]``; the last axis is the code space and every
other axis is flattened. With ``groups = G > 1`` the last axis is split into G slices of D that are
quantized independently, each against its own codebook (the VQ-VAE paper's CIFAR-10 latents are 8×8×10).

Codebook-health options beyond the paper, each off by default:

* ``data_init`` — at the first training call, every code is set to a randomly drawn encoder output of that batch
  (instead of the random initialisation), so that codes start where the data is.
* ``dead_code_restart`` — every ``restart_every`` training calls, each code used fewer than ``restart_threshold``
  times since the last check is moved onto a randomly drawn encoder output of the current batch. Quantizers with
  running statistics (EMA) reset those of the restarted codes too.

Both draw from the encoder outputs of every rank (gathered) on rank 0 and broadcast the draw, so all ranks keep
identical codebooks.
"""

from __future__ import annotations

import torch
from torch import nn

from core import distributed
from core.metrics import code_counts
from core.quantize.distance import augmented_codes


class NonFiniteInputError(ValueError):
    """``z_e`` held NaN or Inf; raised before any quantizer state changes."""


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class CodebookQuantizer(nn.Module):
    """Base class: validates ``z_e``, splits code groups, and runs the codebook-health options.

    Subclasses own a ``codebook`` tensor (parameter or buffer) of shape ``[K, D]`` when G = 1 and ``[G, K, D]``
    otherwise, and implement ``forward``.

    Args:
        codebook_size: K, codes per codebook.
        code_dim: D, dimension of one code.
        groups: G, independent codebooks per latent vector (product quantization; ``groups`` as in the
            field's libraries); ``z_e``'s last axis must be G·D.
        data_init: initialise the codes from the first training batch (off by default; beyond the paper).
        dead_code_restart: move rarely used codes onto encoder outputs (off by default; beyond the paper).
        restart_every: training calls between dead-code checks.
        restart_threshold: a code used fewer times than this since the last check is dead.

    Raises:
        ValueError: for a non-positive size or interval, or a negative threshold.
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        groups: int = 1,
        data_init: bool = False,
        dead_code_restart: bool = False,
        restart_every: int = 100,
        restart_threshold: float = 1.0,
    ):
        super().__init__()
        for name, value in (("codebook_size", codebook_size), ("code_dim", code_dim),
                            ("groups", groups), ("restart_every", restart_every)):
            _check_positive_int(name, value)
        if restart_threshold < 0:
            raise ValueError(f"restart_threshold must be >= 0, got {restart_threshold}")
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.groups = groups
        self.data_init = data_init
        self.dead_code_restart = dead_code_restart
        self.restart_every = restart_every
        self.restart_threshold = float(restart_threshold)
        self.register_buffer("initialized", torch.tensor(not data_init))
        if dead_code_restart:
            self.register_buffer("code_usage", torch.zeros(groups, codebook_size))
            self.register_buffer("calls_since_restart", torch.zeros((), dtype=torch.long))

    # ----------------------------------------------------------------------------------------------- shapes
    @property
    def takes_log_variance(self) -> bool:
        """Whether ``forward`` takes a second input ``log_var`` of ``z_e``'s shape (an encoder head twice as wide)."""
        return False

    @property
    def input_dim(self) -> int:
        """Size of ``z_e``'s last axis: ``groups * code_dim``."""
        return self.groups * self.code_dim

    def _codebook_shape(self) -> tuple[int, ...]:
        k, d, g = self.codebook_size, self.code_dim, self.groups
        return (k, d) if g == 1 else (g, k, d)

    def codebooks(self) -> torch.Tensor:
        """The codebook(s) as ``[G, K, D]`` (a view of ``self.codebook``)."""
        return self.codebook.view(self.groups, self.codebook_size, self.code_dim)

    def _flatten(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        """Validate ``z_e: [..., G*D]`` and return it as float32 ``[N, G, D]`` plus the leading shape."""
        if not isinstance(z_e, torch.Tensor) or not z_e.is_floating_point():
            raise ValueError(f"z_e must be a floating-point tensor, got {type(z_e).__name__}"
                             + (f" of dtype {z_e.dtype}" if isinstance(z_e, torch.Tensor) else ""))
        if z_e.dim() == 0 or z_e.shape[-1] != self.input_dim:
            got = z_e.shape[-1] if z_e.dim() else "a scalar"
            raise ValueError(
                f"z_e must have shape [..., {self.input_dim}] (groups={self.groups} × "
                f"code_dim={self.code_dim}), got last dimension {got} in shape {tuple(z_e.shape)}"
            )
        lead = z_e.shape[:-1]
        flat = z_e.float().reshape(-1, self.groups, self.code_dim)  # [N, G, D]
        return flat, lead

    def _index_shape(self, lead: torch.Size) -> tuple[int, ...]:
        return tuple(lead) if self.groups == 1 else (*lead, self.groups)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``indices``: ``[...]`` (G = 1) or ``[..., G]`` long → ``[..., G*D]`` float.

        Raises:
            ValueError: if an index is outside ``[0, K)`` or the group axis does not match G.
        """
        if indices.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"indices must be an integer tensor, got {indices.dtype}")
        if self.groups > 1 and (indices.dim() == 0 or indices.shape[-1] != self.groups):
            raise ValueError(f"indices must have shape [..., {self.groups}], got {tuple(indices.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"indices must lie in [0, {self.codebook_size}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        g = self.groups
        lead = indices.shape if g == 1 else indices.shape[:-1]
        idx = indices.reshape(-1, g).long()  # [N, G]
        flat_idx = (idx + torch.arange(g, device=idx.device) * self.codebook_size).reshape(-1)  # [N*G]
        books = self.codebooks().reshape(g * self.codebook_size, self.code_dim)  # [G*K, D]
        return books.index_select(0, flat_idx).reshape(*lead, g * self.code_dim)

    def _group_scores(self, z: torch.Tensor, group: int, log_var: torch.Tensor | None) -> torch.Tensor:
        """Evaluation-mode scores ``[N, K]`` of rows ``z: [N, D]`` against codebook ``group`` (the nearest code has
        the largest): ``2 z·e − ‖e‖²``, the product :func:`~core.quantize.distance.nearest_code` forms."""
        return torch.cat([z, torch.ones_like(z[:, :1])], 1) @ augmented_codes(self.codebooks()[group].float())

    def nearest_latents(self, z_e: torch.Tensor, log_var: torch.Tensor | None = None) -> torch.Tensor:
        """``z_q`` of evaluation mode: every slice of ``z_e: [..., G*D]`` replaced by its nearest code (float32).

        The same scores and codes as ``forward`` in eval mode, written as one graph without data-dependent
        branches, blocks or checks, so that ``torch.export`` traces it (the logged MLflow models,
        :mod:`core.export`). ``log_var`` (same shape) only for SQ's element-wise variance. No validation: call
        ``forward`` for checked inputs.
        """
        flat = z_e.float().reshape(-1, self.groups, self.code_dim)  # [N, G, D]
        lv = None if log_var is None else log_var.float().reshape(-1, self.groups, self.code_dim)
        books = self.codebooks().float()  # [G, K, D]
        parts = [books[g].index_select(0, self._group_scores(flat[:, g], g, None if lv is None else lv[:, g])
                                       .max(1).indices) for g in range(self.groups)]
        return torch.stack(parts, 1).reshape(z_e.shape)  # [..., G*D]

    # ------------------------------------------------------------------------------------ codebook health
    def _replace_codes(self, group: int, mask: torch.Tensor, vectors: torch.Tensor) -> None:
        """Overwrite codes ``mask`` ([K] bool) of codebook ``group`` with ``vectors`` ([mask.sum(), D]).

        Subclasses with running statistics extend this to reset them.
        """
        self.codebooks()[group][mask] = vectors.to(self.codebook.dtype)

    @staticmethod
    def _draw(vectors: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` rows drawn at random from the rows ``[N, D]`` of every rank (gathered, in rank order; with
        replacement only if they number fewer than ``count``), drawn on rank 0 and the same on all ranks."""
        pooled = distributed.all_gather_rows(vectors.float().contiguous())
        n = pooled.shape[0]
        rows = torch.randperm(n, device=pooled.device)[:count] if n >= count else \
            torch.randint(n, (count,), device=pooled.device)
        drawn = pooled[rows].contiguous()
        return distributed.broadcast(drawn, src=0)

    @torch.no_grad()
    def _prepare_codebook(self, flat: torch.Tensor) -> None:
        """Run data-dependent initialisation and dead-code restart before the assignment (training only).

        Raises:
            ValueError: if the vectors that would be written into the codebook are not finite.
        """
        if not self.training or flat.shape[0] == 0:
            return
        if not bool(self.initialized):
            if not bool(torch.isfinite(flat).all()):
                raise NonFiniteInputError("z_e contains NaN or Inf values; the codebook was left unchanged")
            for g in range(self.groups):
                full = torch.ones(self.codebook_size, dtype=torch.bool, device=flat.device)
                self._replace_codes(g, full, self._draw(flat[:, g], self.codebook_size))
            self.initialized.fill_(True)
            return
        if self.dead_code_restart and int(self.calls_since_restart) >= self.restart_every:
            dead = self.code_usage < self.restart_threshold  # [G, K], counts of all ranks (_record_usage)
            for g in range(self.groups):
                count = int(dead[g].sum())
                if count:
                    vectors = self._draw(flat[:, g], count)
                    if not bool(torch.isfinite(vectors).all()):
                        raise NonFiniteInputError("z_e contains NaN or Inf values; the codebook was left unchanged")
                    self._replace_codes(g, dead[g], vectors)
            self.code_usage.zero_()
            self.calls_since_restart.zero_()

    @torch.no_grad()
    def _record_usage(self, indices: torch.Tensor) -> torch.Tensor:
        """Code counts ``[G, K]`` of this call's ``indices`` ``[N, G]``; accumulated for dead-code restart."""
        counts = code_counts(indices, self.codebook_size)
        if self.training and self.dead_code_restart:  # summed over ranks: the buffer is the same on every rank
            self.code_usage += distributed.all_reduce_sum(counts.clone())
            self.calls_since_restart += 1
        return counts

    @staticmethod
    def _check_finite(value: torch.Tensor) -> None:
        """Raise ValueError when a loss built from ``z_e`` is not finite (i.e. ``z_e`` held NaN or Inf)."""
        if not bool(torch.isfinite(value)):
            raise NonFiniteInputError("z_e contains NaN or Inf values (the quantization loss is not finite); "
                             "no quantizer state was changed")

    def extra_repr(self) -> str:
        opts = [f"codebook_size={self.codebook_size}", f"code_dim={self.code_dim}"]
        if self.groups > 1:
            opts.append(f"groups={self.groups}")
        if self.data_init:
            opts.append("data_init=True")
        if self.dead_code_restart:
            opts.append(f"dead_code_restart=True, restart_every={self.restart_every}, "
                        f"restart_threshold={self.restart_threshold}")
        return ", ".join(opts)
