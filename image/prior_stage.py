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
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from core.checkpoint import check_fits, load_frozen
from core.config import from_dict, stage_train_config, to_dict
from core.trainer import Trainer, seed_everything
from image.config import ImageConfig
from image.media import sample_grid
from image.hierarchy import build_image_vqvae
from image.model import ImageVQVAE
from priors.codes import EXTRACT_BATCH, from_prior_grid
from priors.pixelcnn import GatedPixelCNN


def load_frozen_vqvae(path: str | Path, device: torch.device) -> tuple[ImageVQVAE, ImageConfig, str]:
    """The VQ-VAE of a checkpoint (built from the config it stores: an :class:`ImageVQVAE`, or an
    :class:`image.hierarchy.HierarchicalVQVAE` for ``model.levels > 1``), in eval mode with frozen weights.

    Returns ``(model, its config, hash of its weights)``.

    Raises:
        FileNotFoundError / ValueError: for a missing or foreign checkpoint.
    """
    def build(payload: dict) -> ImageVQVAE:
        cfg = from_dict(ImageConfig, payload["config"])
        return build_image_vqvae(cfg.model, cfg.quantizer)

    model, payload, weights_hash = load_frozen(path, build, device)
    return model, from_dict(ImageConfig, payload["config"]), weights_hash


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


class ImagePriorTrainer(Trainer):
    """Stage "prior": fits a :class:`~priors.pixelcnn.GatedPixelCNN` to the frozen VQ-VAE's codes.

    Logs ``train/nll`` and ``val/nll`` in bits per code, and at the end bits/dim on the held-out images.
    """

    def __init__(self, cfg: ImageConfig, vqvae: ImageVQVAE, vqvae_hash: str, train_codes: torch.Tensor,
                 train_labels: torch.Tensor, val_codes: torch.Tensor, val_labels: torch.Tensor, val_dataset):
        pcfg = cfg.prior
        self.image_cfg = cfg
        self.vqvae, self.vqvae_hash = vqvae, vqvae_hash
        self.val_codes, self.val_labels, self.val_dataset = val_codes, val_labels, val_dataset
        self.num_classes = int(train_labels.max()) + 1 if pcfg.class_conditional and train_labels.min() >= 0 else 0
        self.grid = tuple(train_codes.shape[1:])  # (h, w·G)
        k = vqvae.quantizer.codebook_size
        seed_everything(pcfg.train.seed)
        prior = GatedPixelCNN(k, channels=pcfg.channels, num_layers=pcfg.num_layers, kernel_size=pcfg.kernel_size,
                              num_classes=self.num_classes)
        train_cfg = stage_train_config(pcfg.train, cfg.train)
        super().__init__(prior, TensorDataset(train_codes, train_labels), train_cfg, cfg.tracking, to_dict(cfg),
                         name="prior")

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"vqvae_hash": self.vqvae_hash, "codebook_size": self.vqvae.quantizer.codebook_size,
                "grid": self.grid, "num_classes": self.num_classes}

    def extra_params(self) -> dict[str, Any]:
        return {"derived.vqvae_hash": self.vqvae_hash, "derived.prior_grid": self.grid,
                "derived.prior_classes": self.num_classes, "derived.code_items": len(self.train_dataset)}

    def _cond(self, labels: torch.Tensor) -> torch.Tensor | None:
        return labels if self.num_classes else None

    def compute_loss(self, batch) -> dict[str, torch.Tensor]:
        codes, labels = batch
        nll = self.model.loss(codes, self._cond(labels))  # nats per code
        return {"loss": nll, "nll_bits_per_code": nll.detach() / math.log(2)}

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
        return {"nll_bits_per_code": float(nll.mean()) / (math.log(2) * self.val_codes[0].numel())}

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
            codes = from_prior_grid(codes, self.vqvae.quantizer.num_codebooks).to(self.device)
            nll_x.append(self.vqvae.reconstruction_nll(x.to(self.device), codes).cpu())
        dims = self.val_dataset[0][0].numel()
        x_bits = float(torch.cat(nll_x).mean()) / (dims * math.log(2))
        z_bits = float(nll_z.mean()) / (dims * math.log(2))
        return {"bits_per_dim": x_bits + z_bits, "recon_bits_per_dim": x_bits, "prior_bits_per_dim": z_bits}


    @torch.no_grad()
    def log_media(self, step: int) -> None:
        """At the end: a grid of decoded samples."""
        images, _ = sample_images(self.model, self.vqvae, self.grid, self.image_cfg.prior.samples, self.num_classes,
                                  self.image_cfg.prior.temperature, self.cfg.seed, self.device)
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
    codes = from_prior_grid(grid_codes, vqvae.quantizer.num_codebooks)
    images = vqvae.decode(codes).clamp(0, 1)
    return images, (labels if labels is not None else torch.full((count,), -1, device=device))


def load_prior(path: str | Path, vqvae: ImageVQVAE, vqvae_hash: str, device: torch.device):
    """The prior of a checkpoint, refused unless it was fitted to the VQ-VAE it will decode with
    (:func:`core.checkpoint.check_fits`: codebook size and weight hash); loaded by :func:`core.checkpoint.load_frozen`.

    Returns ``(prior in eval mode, its grid (h, w·G), its number of classes)``.
    """
    def build(payload: dict) -> GatedPixelCNN:
        check_fits(payload, {"codebook_size": vqvae.quantizer.codebook_size, "vqvae_hash": vqvae_hash})
        cfg = from_dict(ImageConfig, payload["config"]).prior
        return GatedPixelCNN(payload["codebook_size"], channels=cfg.channels, num_layers=cfg.num_layers,
                             kernel_size=cfg.kernel_size, num_classes=payload["num_classes"])

    prior, payload, _ = load_frozen(path, build, device)
    return prior, tuple(payload["grid"]), payload["num_classes"]


__all__ = ["ImagePriorTrainer", "fit_pixel_sigma", "load_frozen_vqvae", "load_prior", "sample_images"]
