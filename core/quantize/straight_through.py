"""The VQ-VAE quantization step as one autograd function: lookup, straight-through gradient, both loss terms.

Axis legend: M quantized vectors (N vectors × G codebooks), D code dim, K' stacked codes (G × K).

Paper eq. 3 (van den Oord et al. 2017): ``L = log p(x|z_q) + ‖sg[z_e] − e‖² + β‖z_e − sg[e]‖²``, with the
decoder gradient copied from ``z_q`` to ``z_e`` (straight-through estimator ``z_q = z_e + sg[e − z_e]``).

Written as one function so that the forward value of ``z_q`` is *exactly* the code vector (``z_e + (e − z_e)``
is not, in floating point) and forward + backward touch each [M, D] tensor as few times as possible:

* ``z_q``: value ``e``; gradient passed to ``z_e`` unchanged, nothing to the codebook.
* ``codebook_loss = mean(‖sg[z_e] − e‖²)``: gradient ``2(e − z_e)/n`` to the selected codes only.
* ``commitment_loss = mean(‖z_e − sg[e]‖²)``: gradient ``2(z_e − e)/n`` to ``z_e`` only.

n is the number of elements (M·D), so both losses are mean squared errors, as in sonnet's ``VectorQuantizer``.

The difference ``e − z`` is never stored: forward and backward recompute it in row blocks of a reused buffer that
stays in the CPU cache (one fresh ``[M, D]`` tensor less per call, whose first write costs as much as the arithmetic
on this kind of machine); on accelerators the block is the whole input.
"""

from __future__ import annotations

import torch

_CPU_BLOCK_ELEMENTS = 1 << 18  # 1 MiB of float32 per block buffer


def _blocks(z: torch.Tensor):
    """Row ranges ``(start, stop)`` covering ``z`` [M, D], and a reusable ``[rows, D]`` buffer."""
    m, d = z.shape
    rows = max(1, _CPU_BLOCK_ELEMENTS // max(d, 1)) if z.device.type == "cpu" else max(m, 1)
    buffer = z.new_empty(min(rows, m), d)
    return [(s, min(s + rows, m)) for s in range(0, m, rows)], buffer


class StraightThroughQuantize(torch.autograd.Function):
    """``apply(z, codebook, indices) -> (z_q, codebook_loss, commitment_loss)``.

    Args (of ``apply``):
        z: ``[M, D]`` float32 encoder outputs.
        codebook: ``[K', D]`` float32 codes (parameter or buffer).
        indices: ``[M]`` long, the chosen code of every row (into the stacked codebook).

    Returns:
        ``z_q`` ``[M, D]`` (the chosen codes), and two float32 scalars that are equal in value but route their
        gradients differently (see the module docstring).
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, codebook: torch.Tensor, indices: torch.Tensor):
        e = codebook.index_select(0, indices)  # [M, D]
        n = max(e.numel(), 1)
        blocks, diff = _blocks(z)
        mse = z.new_zeros(())
        for start, stop in blocks:
            d = torch.sub(e[start:stop], z[start:stop], out=diff[: stop - start]).view(-1)  # e − z
            mse += torch.dot(d, d)
        mse /= n
        ctx.save_for_backward(z, e, indices)
        ctx.n = n
        ctx.codebook_rows = codebook.shape[0]
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(indices)
        return e, mse, mse.clone()

    @staticmethod
    def backward(ctx, grad_zq, grad_codebook_loss, grad_commitment_loss):
        z, e, indices = ctx.saved_tensors
        commit = ctx.needs_input_grad[0] and grad_commitment_loss is not None
        book = ctx.needs_input_grad[1] and grad_codebook_loss is not None
        grad_z = grad_codebook = None
        if ctx.needs_input_grad[0] and not commit:
            grad_z = grad_zq if grad_zq is not None else torch.zeros_like(z)
        if commit or book:
            if commit:
                coef = grad_commitment_loss * (2.0 / ctx.n)  # d/dz mean((z − e)²) = 2·(z − e)/n
                grad_z = torch.empty_like(z)
            summed = z.new_zeros(ctx.codebook_rows, z.shape[1]) if book else None  # Σ (z − e) per code  [K', D]
            blocks, diff = _blocks(z)
            for start, stop in blocks:
                d = torch.sub(z[start:stop], e[start:stop], out=diff[: stop - start])  # z − e
                if commit:
                    if grad_zq is None:
                        torch.mul(d, coef, out=grad_z[start:stop])
                    else:
                        torch.addcmul(grad_zq[start:stop], d, coef, out=grad_z[start:stop])
                if book:
                    summed.index_add_(0, indices[start:stop], d)
            if book:
                grad_codebook = summed * (grad_codebook_loss * (-2.0 / ctx.n))  # d/de mean((e − z)²) = 2·(e − z)/n
        return grad_z, grad_codebook, None
