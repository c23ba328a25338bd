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
"""

from __future__ import annotations

import torch


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
        diff = e - z  # [M, D]
        n = max(diff.numel(), 1)
        flat = diff.reshape(-1)
        mse = torch.dot(flat, flat) / n if flat.numel() else diff.new_zeros(())
        ctx.save_for_backward(diff, indices)
        ctx.n = n
        ctx.codebook_rows = codebook.shape[0]
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(indices)
        return e, mse, mse.clone()

    @staticmethod
    def backward(ctx, grad_zq, grad_codebook_loss, grad_commitment_loss):
        diff, indices = ctx.saved_tensors
        grad_z = grad_codebook = None
        if ctx.needs_input_grad[0]:
            if grad_commitment_loss is not None:
                coef = grad_commitment_loss * (-2.0 / ctx.n)  # d/dz mean((z − e)²) = −2·diff/n
                grad_z = diff * coef if grad_zq is None else torch.addcmul(grad_zq, diff, coef)
            elif grad_zq is not None:
                grad_z = grad_zq
            else:
                grad_z = torch.zeros_like(diff)
        if ctx.needs_input_grad[1] and grad_codebook_loss is not None:
            summed = diff.new_zeros(ctx.codebook_rows, diff.shape[1]).index_add_(0, indices, diff)  # [K', D]
            grad_codebook = summed * (grad_codebook_loss * (2.0 / ctx.n))  # d/de mean((e − z)²) = 2·diff/n
        return grad_z, grad_codebook, None
