"""Held-out reconstruction scores of the image VQ-VAE, with bicubic resampling scored on the same crops.

Definitions (every number the image job logs for a held-out set):

* ``mse``: mean squared error pooled over every sub-pixel of the set, [0, 1] units, reconstructions clamped to [0, 1];
* ``psnr``: ``10·log10(1 / mse)`` of that pooled MSE, dB (the number tables report);
* ``psnr_per_image``: mean over items of each item's own PSNR, dB (higher than ``psnr``: flat items count alike);
* ``nmse``: ``mse / data_variance`` (training-pixel variance);
* ``bicubic_psnr``: ``psnr`` of bicubic down-sampling by the model's factor f (antialiased) and bicubic up-sampling
  back, clamped to [0, 1]. Its 8-bit low-resolution image holds ``8·C / f²`` bits per pixel: 1,536 bits for a 32×32
  RGB crop and f = 4, against ``h·w·G·log2(K)`` bits of codes (1,280 for the default's 8×8×2 codes, K = 1,024);
* ``perplexity``, ``codebook_usage``…: of the codes the set was encoded to (:class:`core.metrics.CodebookUsage`).

With several latent levels (:class:`image.hierarchy.HierarchicalVQVAE`), ``psnr`` decodes from every level and
``bicubic_psnr`` resamples by the bottom level's factor; each level ``<name>`` (``bottom``, ``middle``, ``top``) adds
its codebook health as ``<name>/perplexity``, ``<name>/dead_codes``…, and above the bottom ``<name>/bicubic_psnr``
(bicubic by that level's factor) and ``<name>/psnr``: pooled PSNR decoding from that level and the levels above it
alone (lower levels filled with zero vectors, :meth:`~image.hierarchy.HierarchicalVQVAE.decode`). What the top codes
carry that the lower ones do not: ``top/swap_psnr``, pooled PSNR decoding from every level after each item's top codes
are replaced by those of another item (the evaluation batch rolled by half its size; lower codes kept), and
``top/swap_psnr_drop`` = ``psnr − top/swap_psnr`` in dB (0 when the decoder ignores the top level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from core.metrics import CodebookUsage, psnr, psnr_of_mse
from image.hierarchy import HierarchicalVQVAE

EVAL_BATCH = 256


def bicubic_resample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``x: [B, C, H, W]`` in [0, 1] down-sampled by ``factor`` (bicubic, antialiased) and up-sampled back
    (bicubic), clamped to [0, 1]; same shape.

    Raises:
        ValueError: if H or W is not divisible by ``factor``.
    """
    if x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"image sides {tuple(x.shape[-2:])} must be divisible by the factor {factor}")
    small = F.interpolate(x, scale_factor=1.0 / factor, mode="bicubic", antialias=True, align_corners=False)
    return F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)


class _Pooled:
    """Running pooled and per-item PSNR of reconstructions."""

    def __init__(self) -> None:
        self.sq_sum = self.psnr_sum = 0.0
        self.count = 0

    def update(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        self.sq_sum += float((x_hat - x).square().flatten(1).mean(1).sum())
        self.psnr_sum += float(psnr(x, x_hat)) * x.shape[0]
        self.count += x.shape[0]

    def mse(self) -> float:
        return self.sq_sum / max(self.count, 1)


@torch.no_grad()
def score_reconstructions(model, dataset: Dataset, device: torch.device, data_variance: float,
                          num_workers: int = 0) -> tuple[dict[str, float], dict[str, CodebookUsage]]:
    """The scores of the module docstring for ``model`` (an :class:`image.model.ImageVQVAE` or
    :class:`image.hierarchy.HierarchicalVQVAE` in eval mode) on every item of ``dataset``.

    Returns:
        ``(scores, usage)``: ``usage`` maps each level's metric prefix (``""`` for the one-level model,
        ``"bottom/"``, ``"top/"``… otherwise) to its :class:`core.metrics.CodebookUsage` (for the histograms).

    Raises:
        ValueError: if ``dataset`` is empty.
    """
    if len(dataset) == 0:
        raise ValueError("cannot score an empty held-out set")
    hierarchical = isinstance(model, HierarchicalVQVAE)
    if hierarchical:
        prefixes = [f"{name}/" for name in model.level_names]
        factors, quantizers = model.downsampling, list(model.quantizers)
    else:
        prefixes, factors, quantizers = [""], (model.downsampling,), [model.quantizer]
    usage = {p: CodebookUsage(q.codebook_size, q.groups) for p, q in zip(prefixes, quantizers)}
    ours, bicubic = _Pooled(), [_Pooled() for _ in factors]
    upper = [_Pooled() for _ in factors[1:]]  # from level l upward, l ≥ 1 (hierarchical)
    swapped = _Pooled()  # every level, the top codes of another item (hierarchical)
    for x, _ in DataLoader(dataset, batch_size=EVAL_BATCH, num_workers=num_workers):
        x = x.to(device)
        out = model(x)
        ours.update(x, out.x_hat.clamp(0, 1))
        for pooled, factor in zip(bicubic, factors):
            pooled.update(x, bicubic_resample(x, factor))
        levels = out.levels if hierarchical else [out.quantizer]
        for p, level in zip(prefixes, levels):
            usage[p].update(level.indices)
        indices = [level.indices for level in levels]
        for keep, pooled in enumerate(reversed(upper), start=1):  # top alone, top two, …
            pooled.update(x, model.decode(indices, keep=keep).clamp(0, 1))
        if hierarchical:
            other = indices[:-1] + [indices[-1].roll(max(1, x.shape[0] // 2), dims=0)]
            swapped.update(x, model.decode(other).clamp(0, 1))
    mse = ours.mse()
    scores = {"mse": mse, "nmse": mse / data_variance, "psnr": psnr_of_mse(mse),
              "psnr_per_image": ours.psnr_sum / ours.count, "bicubic_psnr": psnr_of_mse(bicubic[0].mse())}
    for i, p in enumerate(prefixes):
        scores.update({p + k: v for k, v in usage[p].summary().items()})
        if i:  # above the bottom (whose bicubic is ``bicubic_psnr`` and whose reconstruction is ``psnr``)
            scores[f"{p}bicubic_psnr"] = psnr_of_mse(bicubic[i].mse())
            scores[f"{p}psnr"] = psnr_of_mse(upper[i - 1].mse())
    if hierarchical:
        scores["top/swap_psnr"] = psnr_of_mse(swapped.mse())
        scores["top/swap_psnr_drop"] = scores["psnr"] - scores["top/swap_psnr"]
    return scores, usage
