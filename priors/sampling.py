"""Sampling helpers shared by the autoregressive priors: Gumbel-max draws and the naive raster-order reference.

All randomness of a draw is taken up front as Gumbel noise, one value per position and code, so that any two
sampling schemes that compute the same logits in the same order pick the same codes: at every position the code is
``argmax(logits / temperature + g)``, which is an exact sample of ``softmax(logits / temperature)`` (Gumbel-max trick).

Axis legend: B batch, S the grid axes of a prior (``H, W`` for images, ``T`` for sequences), K codebook size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch


def gumbel_noise(shape: Sequence[int], generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard Gumbel noise ``g = -log(-log(U))`` with ``U`` uniform, clamped away from 0.

    Args:
        shape: shape of the noise, e.g. ``(B, H, W, K)``.
        generator: random source; the noise is drawn on the generator's device (global RNG of ``device`` if None).
        device: where the returned noise lives.
        dtype: floating dtype of the noise.

    Returns:
        Tensor of ``shape`` on ``device``.
    """
    draw_device = generator.device if generator is not None else device
    u = torch.rand(tuple(shape), generator=generator, device=draw_device, dtype=dtype)
    u = u.clamp_min(torch.finfo(dtype).tiny)  # torch.rand is in [0, 1): only 0 needs guarding
    return (-torch.log(-torch.log(u))).to(device)


def check_temperature(temperature: float) -> None:
    """Raise ``ValueError`` unless ``temperature`` is a finite positive number."""
    if not (0.0 < float(temperature) < float("inf")):
        raise ValueError(f"temperature must be a finite positive number, got {temperature}")


def gumbel_pick(logits: torch.Tensor, noise: torch.Tensor, temperature: float) -> torch.Tensor:
    """Gumbel-max choice ``argmax(logits / temperature + noise)``.

    Args:
        logits: ``[B, K]`` unnormalised log-probabilities at one position.
        noise: ``[B, K]`` Gumbel noise for that position.
        temperature: softmax temperature (> 0).

    Returns:
        ``[B]`` long code indices.
    """
    if temperature != 1.0:  # logits / 1 is logits exactly: skipping the division changes no sample
        logits = logits / temperature
    return (logits + noise).argmax(dim=-1)


def naive_raster_sample(logits_fn: Callable[[torch.Tensor], torch.Tensor], noise: torch.Tensor,
                        temperature: float = 1.0, max_positions: int | None = None) -> torch.Tensor:
    """Reference sampler: recompute the whole prior once per position, in raster order.

    Positions not yet drawn hold code 0; a causal prior never looks at them.

    Args:
        logits_fn: maps indices ``[B, *S]`` (long) to logits ``[B, K, *S]``; the logits at a position must predict
            the code there from the codes strictly before it in raster order.
        noise: ``[B, *S, K]`` Gumbel noise (see :func:`gumbel_noise`).
        temperature: softmax temperature (> 0).
        max_positions: stop after this many positions (the rest stay 0); used to time a prefix of a long draw.

    Returns:
        ``[B, *S]`` long code indices on ``noise``'s device.
    """
    check_temperature(temperature)
    indices = torch.zeros(noise.shape[:-1], dtype=torch.long, device=noise.device)  # [B, *S]
    for step, pos in enumerate(itertools.product(*(range(n) for n in noise.shape[1:-1]))):
        if max_positions is not None and step >= max_positions:
            break
        logits = logits_fn(indices)[(slice(None), slice(None), *pos)]  # [B, K]
        indices[(slice(None), *pos)] = gumbel_pick(logits, noise[(slice(None), *pos)], temperature)
    return indices
