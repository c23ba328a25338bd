"""Second and third stages of the image experiment (paper sec. 4.1): a gated PixelCNN prior fitted to the codes of
the frozen VQ-VAE, samples decoded to images, and bits/dim on the held-out split.

Axis legend: N items, B batch, C image channels, H W image size, h w latent grid, G codebooks per latent,
K codebook size.

With several codebooks per latent (``[N, h, w, G]`` codes) the prior sees the grid ``[N, h, w·G]``: the G codes of
a latent position side by side, so raster order predicts code g of a position from every earlier position and the
codes < g of its own.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from core.checkpoint import FrozenVQVAE
from core.checkpoint import load_frozen_vqvae as load_frozen_checkpoint
from core.config import from_dict
from core.pipeline import LN2, PriorTrainer
from core.pipeline import load_prior as load_pipeline_prior
from image.config import ImageConfig
from image.media import sample_grid
from image.hierarchy import build_image_vqvae
from image.model import ImageVQVAE
from priors.codes import EXTRACT_BATCH, from_prior_grid
from priors.pixelcnn import GatedPixelCNN


def read_image_config(stored: dict) -> ImageConfig:
    """The image experiment's config as a checkpoint stores it."""
    return from_dict(ImageConfig, stored)


def load_frozen_vqvae(path: str | Path, device: torch.device) -> FrozenVQVAE:
    """The VQ-VAE of a checkpoint (built from the config it stores: an :class:`ImageVQVAE`, or an
    :class:`image.hierarchy.HierarchicalVQVAE` for ``model.levels > 1``), in eval mode with frozen weights.

    Raises:
        FileNotFoundError / ValueError: for a missing or foreign checkpoint.
    """
    return load_frozen_checkpoint(path, read_image_config, lambda cfg, _: build_image_vqvae(cfg.model, cfg.quantizer),
                                  device)


@torch.no_grad()
def fit_pixel_sigma(vqvae: ImageVQVAE, dataset, count: int, device: torch.device) -> float:
    """Maximum-likelihood σ of the Gaussian decoder, ``sqrt(MSE)`` on ``count`` *training* items; stored in the
    model (``pixel_log_sigma``) for the discretized-Gaussian bits/dim."""
    total, n = 0.0, 0
    for x, _ in DataLoader(Subset(dataset, range(min(count, len(dataset)))), batch_size=EXTRACT_BATCH):
        x = x.to(device)
        total += float((vqvae(x).x_hat - x).square().sum())
        n += x.numel()
    sigma = math.sqrt(max(total / max(n, 1), 1e-12))
    vqvae.pixel_log_sigma.fill_(math.log(sigma))
    return sigma


class ImagePriorTrainer(PriorTrainer):
    """Stage "prior": fits a :class:`~priors.pixelcnn.GatedPixelCNN` to the frozen VQ-VAE's codes.

    Logs ``train/nll_bits_per_code`` and ``val/nll_bits_per_code``, and at the end bits/dim on the held-out images.
    """

    def __init__(self, cfg: ImageConfig, frozen: FrozenVQVAE, train_codes: torch.Tensor, train_labels: torch.Tensor,
                 val_codes: torch.Tensor, val_labels: torch.Tensor, val_dataset):
        pcfg = cfg.prior
        self.val_codes, self.val_labels, self.val_dataset = val_codes, val_labels, val_dataset
        self.num_classes = int(train_labels.max()) + 1 if pcfg.class_conditional and train_labels.min() >= 0 else 0
        self.grid = tuple(train_codes.shape[1:])  # (h, w·G)
        k = frozen.model.quantizer.codebook_size
        super().__init__(cfg, frozen, lambda: build_prior(cfg, k, self.num_classes),
                         TensorDataset(train_codes, train_labels),
                         fits={"codebook_size": k, "grid": self.grid, "num_classes": self.num_classes},
                         derived={"prior_grid": self.grid, "prior_classes": self.num_classes,
                                  "code_items": len(train_codes)})

    def _cond(self, labels: torch.Tensor) -> torch.Tensor | None:
        return labels if self.num_classes else None

    def batch_nll(self, batch) -> torch.Tensor:
        codes, labels = batch
        return self.model.loss(codes, self._cond(labels))  # nats per code

    def logits_call(self, batch):
        codes, labels = batch  # logits [B, K, h, w·G] of codes [B, h, w·G] (and class labels [B])
        return (lambda m, *i: m(*i)), {"codes": codes, **({} if self._cond(labels) is None else {"label": labels})}

    @torch.no_grad()
    def code_nll(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """−log p(z) in nats per image ``[N]`` under the prior."""
        out = []
        for start in range(0, len(codes), EXTRACT_BATCH):
            c = codes[start:start + EXTRACT_BATCH].to(self.device)
            logits = self.model(c, self._cond(labels[start:start + EXTRACT_BATCH].to(self.device)))
            out.append(torch.nn.functional.cross_entropy(logits, c, reduction="none").flatten(1).sum(1).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        nll = self.code_nll(self.val_codes, self.val_labels)
        return {"nll_bits_per_code": float(nll.mean()) / (LN2 * self.val_codes[0].numel())}

    @torch.no_grad()
    def final_metrics(self) -> dict[str, float]:
        """Bits/dim on the held-out split at the end of the fit (logged as ``val/bits_per_dim`` …)."""
        return self.bits_per_dim()

    @torch.no_grad()
    def bits_per_dim(self) -> dict[str, float]:
        """(−log p(x|z_q) − log p(z)) / (C·H·W·ln 2) on the held-out images, with its two parts."""
        self.model.eval()
        nll_z = self.code_nll(self.val_codes, self.val_labels)
        nll_x = []
        images = DataLoader(Subset(self.val_dataset, range(len(self.val_codes))), batch_size=EXTRACT_BATCH)
        for (x, _), codes in zip(images, self.val_codes.split(EXTRACT_BATCH)):  # same order as the extraction
            codes = from_prior_grid(codes, self.vqvae.quantizer.groups).to(self.device)
            nll_x.append(self.vqvae.reconstruction_nll(x.to(self.device), codes).cpu())
        dims = self.val_dataset[0][0].numel()
        x_bits = float(torch.cat(nll_x).mean()) / (dims * LN2)
        z_bits = float(nll_z.mean()) / (dims * LN2)
        return {"bits_per_dim": x_bits + z_bits, "recon_bits_per_dim": x_bits, "prior_bits_per_dim": z_bits}


    @torch.no_grad()
    def log_media(self, step: int) -> None:
        """At the end: a grid of decoded samples."""
        images, _ = sample_images(self.model, self.vqvae, self.grid, self.cfg.prior.samples, self.num_classes,
                                  self.cfg.prior.temperature, self.train_cfg.seed, self.device)
        self.tracker.log_image(sample_grid(images), f"samples/step_{step:07d}.png")
        self.model.train()


@torch.no_grad()
def sample_images(prior: GatedPixelCNN, vqvae: ImageVQVAE, grid: tuple[int, int], count: int, num_classes: int,
                  temperature: float, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``count`` code grids (cycling through the classes when conditional) and decode them.

    Returns ``(images [count, C, H, W] in [0, 1], labels [count])``.
    """
    labels = torch.arange(count, device=device) % num_classes if num_classes else None
    generator = torch.Generator(device=device).manual_seed(seed)
    grid_codes = prior.sample((count, *grid), cond=labels, temperature=temperature, generator=generator)
    codes = from_prior_grid(grid_codes, vqvae.quantizer.groups)
    images = vqvae.decode(codes).clamp(0, 1)
    return images, (labels if labels is not None else torch.full((count,), -1, device=device))


def build_prior(cfg: ImageConfig, codebook_size: int, num_classes: int) -> GatedPixelCNN:
    """The :class:`GatedPixelCNN` of ``cfg.prior``'s sizes."""
    p = cfg.prior
    return GatedPixelCNN(codebook_size, channels=p.channels, num_layers=p.num_layers, kernel_size=p.kernel_size,
                         num_classes=num_classes)


def load_prior(path: str | Path, frozen: FrozenVQVAE, device: torch.device):
    """The prior of a checkpoint, refused unless it was fitted to the VQ-VAE it will decode with (codebook size and
    weight hash, :func:`core.pipeline.load_prior`).

    Returns ``(prior in eval mode, its grid (h, w·G), its number of classes)``.
    """
    prior, payload = load_pipeline_prior(
        path, frozen, {"codebook_size": frozen.model.quantizer.codebook_size},
        lambda p: build_prior(read_image_config(p["config"]), p["codebook_size"], p["num_classes"]), device)
    return prior, tuple(payload["grid"]), payload["num_classes"]


__all__ = ["ImagePriorTrainer", "build_prior", "fit_pixel_sigma", "load_frozen_vqvae", "load_prior", "read_image_config",
           "sample_images"]
