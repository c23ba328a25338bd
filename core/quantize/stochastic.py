"""SQ-VAE's stochastic quantization step: the formulas under autograd (the quantizer's default,
:func:`stochastic_quantize_autograd`) and one hand-written autograd function over row blocks (``fused=True``,
:func:`stochastic_quantize`).

Axis legend: N vectors, K codebook size, D code dim, A = D or 2D, R rows of one block.

Paper: Takida et al. 2022, sec. 3–4. With precision weight w = 1/(2σ²) the logits of the quantization posterior
P̂(z_q = b_k | z) are ``l_k = −Σ_d w_d (z_d − b_{k,d})²`` up to a per-row constant, which changes neither the
softmax nor the entropy. They are one matrix product ``l = a @ bᵀ − c`` with

* shared σ²:       ``a = 2w·z`` ``[N, D]``, ``b = codebook`` ``[K, D]``, ``c = w‖codebook‖²`` ``[K]``;
* element-wise σ²: ``a = [2w⊙z, w]`` ``[N, 2D]``, ``b = [codebook, −codebook²]`` ``[K, 2D]``, no c,

built by :func:`stochastic_quantize` with ordinary autograd ops. :class:`StochasticQuantize` computes, block by block
of rows:

* ``entropy`` = Σ_rows H(softmax(l)), with ``∂H/∂l_j = −p_j (l_j − Σ_k p_k l_k)``;
* training: Gumbel-max index ``argmax(l + g)`` and the relaxed sample ``y = softmax((l + g)/τ)``,
  ``z_q = y @ codebook``, g = −log(−log U) with U uniform (see :class:`UniformNoise`);
* evaluation: ``argmax(l)`` and ``z_q = codebook[index]``.

Why by hand: the autograd graph of the same formulas keeps about six ``[N, K]`` tensors and makes about 40 passes
over them per call. Here the forward keeps one ``[N, K]`` tensor for the backward (y), works in place in three
``[R, K]`` block buffers, and accumulates the entropy's gradients with respect to a, b and c while ∂H/∂l is in the
cache (they are linear in the entropy's output gradient, which the backward multiplies in). Values and gradients
equal those of the formulas under plain autograd (tested in float64).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.quantize.distance import block_rows

# Rows per block on the CPU: [R, K] float32 buffers of a few MiB stay in the cache and per-op overhead stays small.
_CPU_BLOCK_ROWS = 1024
_ACCELERATOR_BLOCK_ELEMENTS = 1 << 26


def _logit_grads(dl: torch.Tensor, a_rows: torch.Tensor, b: torch.Tensor, grad_a_rows: torch.Tensor | None,
                 grad_b: torch.Tensor | None, grad_c: torch.Tensor | None) -> None:
    """Pass ``dl`` = ∂/∂l ``[m, K]`` of a block of ``l = a @ bᵀ − c`` on: write ``grad_a_rows`` ``[m, A]``, add to
    ``grad_b`` ``[K, A]`` and ``grad_c`` ``[K]`` (each skipped when None)."""
    if grad_a_rows is not None:
        torch.mm(dl, b, out=grad_a_rows)
    if grad_b is not None:
        grad_b.addmm_(dl.t(), a_rows)
    if grad_c is not None:
        grad_c.sub_(dl.sum(0))


class UniformNoise:
    """Uniform [0, 1) float32 noise for the Gumbel perturbation, reproducible from torch's global seed.

    On the CPU the numbers come from NumPy's PCG64 generator seeded by one draw from torch's default generator
    (torch's CPU sampler is serial and about 1.7× slower); on other devices from torch's own generator there.
    Blocks filled in order equal one fill of the whole ``[N, K]`` array, whatever the block size.
    A draw of exactly 0 (probability 2⁻²⁴) gives that code the Gumbel value −∞, i.e. weight 0 for that vector.
    """

    def __init__(self, device: torch.device):
        self._rng = None
        if device.type == "cpu":
            seed = int(torch.randint(0, 2**62, (), dtype=torch.long))
            self._rng = np.random.default_rng(seed)

    def fill_(self, out: torch.Tensor) -> torch.Tensor:
        """Fill the contiguous float32 (or float64) tensor ``out`` in place and return it."""
        if self._rng is None:
            return out.uniform_()
        self._rng.random(out=out.numpy(), dtype=np.float64 if out.dtype == torch.float64 else np.float32)
        return out


# Logits more than this many nats below their row's maximum are raised to it before exponentiating: probabilities
# under e⁻⁴⁰ ≈ 4e-18 are invisible in float32 beside the leading code's, and would otherwise become subnormal floats,
# which x86 CPUs process about 100× slower (they appear as soon as σ² anneals towards 0).
_LOGIT_FLOOR = -40.0


def _softmax_rows_(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = softmax(x, dim=1)`` for ``x`` whose row maxima are 0; clamps ``x`` at ``_LOGIT_FLOOR`` in place.

    Returns the row sums ``Σ_k exp(x_k)`` ``[R, 1]`` (at least 1, since each row holds a 0).
    """
    torch.exp(x.clamp_min_(_LOGIT_FLOOR), out=out)
    sums = out.sum(1, keepdim=True)
    out.mul_(sums.reciprocal())
    return sums


class StochasticQuantize(torch.autograd.Function):
    """``apply(a, b, c, codebook, tau, training, noise) -> (z_q, indices, entropy_sum)``.

    Args (of ``apply``):
        a: ``[N, A]`` rows and b: ``[K, A]`` codes of the logits ``l = a @ bᵀ − c`` (module docstring).
        c: ``[K]`` per-code offset, or None for 0.
        codebook: ``[K, D]``. tau: Gumbel-softmax temperature τ > 0 (training only).
        training: relaxed Gumbel-softmax sample (True) or deterministic nearest code (False).
        noise: a :class:`UniformNoise` (used in training only).

    Returns:
        ``z_q`` ``[N, D]``; ``indices`` ``[N]`` long (sampled in training, argmax in evaluation);
        ``entropy_sum`` ``[]``: Σ over rows of H(P̂(z_q | z)) in nats.
    """

    @staticmethod
    def forward(ctx, a, b, c, codebook, tau: float, training: bool, noise: UniformNoise | None):
        n, k = a.shape[0], b.shape[0]
        grad_a, grad_b, grad_c = ctx.needs_input_grad[:3]
        z_q = a.new_empty(n, codebook.shape[1])
        indices = torch.empty(n, dtype=torch.long, device=a.device)
        entropy = a.new_zeros(())
        keep_y = training and any(ctx.needs_input_grad[:4])
        y_all = a.new_empty(n, k) if keep_y else None  # relaxed samples, the one [N, K] kept for the backward
        # −∂H/∂a, −∂H/∂b, −∂H/∂c, accumulated here: they are linear in the entropy's output gradient
        neg_dh_a = torch.zeros_like(a) if grad_a else None
        neg_dh_b = torch.zeros_like(b) if grad_b else None
        neg_dh_c = a.new_zeros(k) if grad_c else None  # False when c is None
        rows = block_rows(n, k, a.device, _CPU_BLOCK_ROWS, _ACCELERATOR_BLOCK_ELEMENTS)
        logits, work, neg_dh = (a.new_empty(min(rows, n), k) for _ in range(3))
        neg_c = None if c is None else -c
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            m = stop - start
            l, p = logits[:m], work[:m]
            if neg_c is None:
                torch.mm(a[start:stop], b.t(), out=l)
            else:
                torch.addmm(neg_c, a[start:stop], b.t(), out=l)
            l.sub_(l.amax(1, keepdim=True))  # row maxima 0: exp cannot overflow
            sums = _softmax_rows_(l, p)  # p = P̂(z_q | z)
            pl = torch.mul(p, l, out=neg_dh[:m]).sum(1, keepdim=True)  # Σ_k p_k l_k  [m, 1]
            entropy += (sums.log_() - pl).sum()  # H = log Σ exp(l) − Σ p l  (rows with max l = 0)
            if grad_a or grad_b or grad_c:
                dh = neg_dh[:m].addcmul_(p, pl, value=-1.0)  # p ⊙ l − p Σ p l = −∂H/∂l
                _logit_grads(dh, a[start:stop], b, None if neg_dh_a is None else neg_dh_a[start:stop], neg_dh_b,
                             neg_dh_c)
            if training:
                g = noise.fill_(p).log_().neg_().log_()  # log(−log U) = −Gumbel noise
                l.sub_(g)  # l + Gumbel
                best, idx = l.max(1, keepdim=True)
                indices[start:stop] = idx.squeeze(1)
                l.sub_(best)
                if tau != 1.0:
                    l.div_(tau)
                y = y_all[start:stop] if keep_y else p  # without a backward, y overwrites the spent noise
                _softmax_rows_(l, y)
                torch.mm(y, codebook, out=z_q[start:stop])
            else:
                indices[start:stop] = l.max(1).indices
        if not training:
            torch.index_select(codebook, 0, indices, out=z_q)
        ctx.save_for_backward(a, b, codebook, indices, y_all, neg_dh_a, neg_dh_b, neg_dh_c)
        ctx.tau, ctx.training, ctx.rows = tau, training, rows
        ctx.mark_non_differentiable(indices)
        ctx.set_materialize_grads(False)
        return z_q, indices, entropy

    @staticmethod
    def backward(ctx, grad_zq, _grad_indices, grad_entropy):
        a, b, codebook, indices, y_all, neg_dh_a, neg_dh_b, neg_dh_c = ctx.saved_tensors
        n, k = a.shape[0], b.shape[0]
        grad_a = torch.zeros_like(a) if ctx.needs_input_grad[0] else None
        grad_b = torch.zeros_like(b) if ctx.needs_input_grad[1] else None
        grad_c = a.new_zeros(k) if neg_dh_c is not None else None
        grad_book = torch.zeros_like(codebook) if ctx.needs_input_grad[3] else None
        if grad_zq is not None and ctx.training:  # z_q = y @ codebook, y = softmax((l + g) / τ)
            rows = ctx.rows
            gl = a.new_empty(min(rows, n), k)  # ∂loss/∂l of one block  [m, K]
            for start in range(0, n, rows):
                stop = min(start + rows, n)
                gz, y, g = grad_zq[start:stop], y_all[start:stop], gl[: stop - start]
                if grad_book is not None:
                    grad_book.addmm_(y.t(), gz)
                torch.mm(gz, codebook.t(), out=g).mul_(y)  # y ⊙ ∂/∂y
                # softmax backward y ⊙ (g − ⟨y, g⟩), with ⟨y, g⟩ summed from these products: for a one-hot y it
                # is then exactly g at the hot code, and the gradient exactly 0 (⟨g_zq, z_q⟩ equals it only in exact
                # arithmetic; its rounding error would leak into every logit's gradient as σ² anneals)
                g.addcmul_(y, g.sum(1, keepdim=True), value=-1.0)
                if ctx.tau != 1.0:
                    g.div_(ctx.tau)
                _logit_grads(g, a[start:stop], b, None if grad_a is None else grad_a[start:stop], grad_b, grad_c)
        elif grad_zq is not None and grad_book is not None:  # z_q = codebook[index]
            grad_book.index_add_(0, indices, grad_zq)
        if grad_entropy is not None:
            for grad, neg_dh in ((grad_a, neg_dh_a), (grad_b, neg_dh_b), (grad_c, neg_dh_c)):
                if grad is not None:
                    grad.addcmul_(neg_dh, grad_entropy, value=-1.0)
        return grad_a, grad_b, grad_c, grad_book, None, None, None


def stochastic_quantize(z: torch.Tensor, book: torch.Tensor, weight: torch.Tensor, tau: float, training: bool,
                        noise: UniformNoise | None):
    """Quantize ``z`` [N, D] against ``book`` [K, D] with precision weight w = 1/(2σ²) (scalar or [N, D]).

    Returns ``(z_q [N, D], indices [N], Σ entropy, Σ dequantization)`` with the sums over the N vectors, in nats:
    entropy of P̂(z_q | z) and ``Σ_d w_d (z_d − z_q,d)²`` (SQ-VAE eq. 10's latent terms). Any float dtype; ``noise``
    is needed in training only. The logits are one product of augmented rows (module docstring).
    """
    if weight.dim() == 0:
        a, b, c = (2.0 * weight) * z, book, weight * book.square().sum(1)  # [N, D], [K, D], [K]
    else:
        a, b, c = torch.cat([2.0 * weight * z, weight], 1), torch.cat([book, -book.square()], 1), None  # [N|K, 2D]
    z_q, indices, entropy = StochasticQuantize.apply(a, b, c, book, tau, training, noise)
    dequantization = (weight * (z - z_q).square()).sum()
    return z_q, indices, entropy, dequantization


# Rows per block of the autograd formulation: bounds the [rows, K] temporaries autograd keeps.
_AUTOGRAD_BLOCK_ROWS = 2048


def stochastic_quantize_autograd(z: torch.Tensor, book: torch.Tensor, weight: torch.Tensor, tau: float,
                                 training: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`stochastic_quantize` written as the formulas under autograd (the default of the quantizer).

    Same arguments and returns; the Gumbel noise comes from ``torch.rand_like`` block by block (U clamped at 1e-20).
    Keeps about six ``[rows, K]`` tensors per block for the backward.
    """
    z_q_parts, index_parts = [], []
    entropy = dequantization = z.new_zeros(())
    book_sq = book.square().sum(1)  # [K]
    # split (not slicing) so that backward concatenates block gradients once instead of padding each to [N, D]
    z_blocks = z.split(_AUTOGRAD_BLOCK_ROWS)
    w_blocks = [weight] * len(z_blocks) if weight.dim() == 0 else weight.split(_AUTOGRAD_BLOCK_ROWS)
    for zb, wb in zip(z_blocks, w_blocks):  # [n, D], scalar or [n, D]
        if weight.dim() == 0:
            logits = weight * torch.addmm(-book_sq, zb, book.t(), alpha=2.0)  # [n, K]
        else:
            logits = 2.0 * (wb * zb) @ book.t() - wb @ book.square().t()  # [n, K]
        log_p = F.log_softmax(logits, dim=-1)
        entropy = entropy - (log_p.exp() * log_p).sum()
        if training:
            uniform = torch.rand_like(logits).clamp_(min=1e-20)
            perturbed = logits - uniform.log_().neg_().log_()  # + Gumbel noise
            idx = perturbed.argmax(-1)
            zq = F.softmax(perturbed / tau, dim=-1) @ book  # [n, D]
        else:
            idx = logits.argmax(-1)
            zq = book.index_select(0, idx)
        dequantization = dequantization + (wb * (zb - zq).square()).sum()
        z_q_parts.append(zq)
        index_parts.append(idx)
    if not z_q_parts:
        return z.new_zeros(0, book.shape[1]), torch.zeros(0, dtype=torch.long, device=z.device), entropy, dequantization
    return torch.cat(z_q_parts), torch.cat(index_parts), entropy, dequantization
