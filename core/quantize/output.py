"""Typed outputs of the quantizers: one dataclass per family, never a tuple.

Axis legend: ... any leading axes of ``z_e``, G codebooks per latent, D code dim.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch


@dataclass
class QuantizerOutput:
    """What every quantizer returns.

    Scalar loss terms are float32 tensors averaged as each field says; ``loss`` is the one term a model adds
    to its objective (already weighted).
    """

    # how ``loss`` is averaged: "element" (a mean over the elements of z_e, on the scale of an MSE) or "vector"
    # (nats per latent vector: a model multiplies it by its latent vectors per data element to add it to a
    # reconstruction NLL per element, and then needs a likelihood, not an MSE, as its reconstruction term)
    loss_per: ClassVar[str] = "element"

    z_q: torch.Tensor  # [..., G*D] quantized latents, same shape and dtype as z_e
    indices: torch.Tensor  # [...] long when G == 1, [..., G] otherwise
    loss: torch.Tensor  # [] the quantizer's weighted term of the training objective
    perplexity: torch.Tensor  # [] exp(H(p̄)) of this batch's code distribution (mean over codebooks)

    def terms(self) -> dict[str, torch.Tensor]:
        """Every scalar field by name (``loss``, ``perplexity`` and the family's named terms), for logging."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name).dim() == 0}


@dataclass
class VQOutput(QuantizerOutput):
    """Output of :class:`VectorQuantizer` and :class:`EMAVectorQuantizer` (VQ-VAE paper eq. 3).

    ``loss = codebook_loss + beta * commitment_loss`` for the loss-based quantizer and
    ``loss = beta * commitment_loss`` for the EMA one, whose ``codebook_loss`` is 0 because no gradient
    trains its codebook.
    """

    codebook_loss: torch.Tensor  # [] mean ‖sg[z_e] − e‖² over elements: its gradient reaches only the codebook
    commitment_loss: torch.Tensor  # [] mean ‖z_e − sg[e]‖² over elements, unweighted: its gradient reaches only z_e


@dataclass
class SQOutput(QuantizerOutput):
    """Output of :class:`GaussianSQVectorQuantizer` (SQ-VAE, Takida et al. 2022, sec. 3–4).

    ``loss = dequantization_loss − entropy``: the latent part of the SQ-VAE objective, in nats per latent
    vector (summed over D and codebooks, averaged over vectors). Multiply by the number of latent vectors
    per example to put it on the scale of a per-example reconstruction NLL.
    """

    loss_per: ClassVar[str] = "vector"

    dequantization_loss: torch.Tensor  # [] Σ_d (z − z_q)² / (2σ²_d) per vector, nats
    entropy: torch.Tensor  # [] H(P̂(z_q | z)) of the quantization posterior per vector, nats
    variance: torch.Tensor  # [] mean σ² of the stochastic (de)quantization
    temperature: torch.Tensor  # [] Gumbel-softmax temperature used for this call
