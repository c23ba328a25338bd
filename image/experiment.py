"""The image experiment: train the VQ-VAE, evaluate on held-out images, fit the prior, log everything to MLflow.

``python experiments/run.py image [--config FILE] [--stage all|vqvae|prior|sample] [--resume] [key=value ...]``
lands in :func:`main`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from core.config import load_config, to_dict
from core.metrics import CodebookUsage, nmse, psnr, psnr_of_mse
from core.tracking import Tracker
from core.trainer import Trainer, fit_stage, resolve_device, seed_everything, vqvae_loss_terms
from image.config import ImageConfig
from image.data import build_image_datasets, data_variance
from image.media import image_grid, usage_histogram
from image.model import ImageVQVAE
from image.prior_stage import (ImagePriorTrainer, cached_codes, fit_pixel_sigma, load_frozen_vqvae, load_prior,
                               sample_images)

EVAL_BATCH = 256
GRID_IMAGES = 16


class ImageVQVAETrainer(Trainer):
    """Stage "vqvae": trains :class:`ImageVQVAE` and evaluates MSE, NMSE, PSNR and codebook health on the
    held-out split."""

    def __init__(self, cfg: ImageConfig, train_dataset, val_dataset, variance: float):
        self.image_cfg = cfg
        self.val_dataset = val_dataset
        self.variance = variance
        self.num_workers = cfg.data.num_workers
        seed_everything(cfg.train.seed)  # the initial weights are part of the run's seeded state
        model = ImageVQVAE(cfg.model, cfg.quantizer, data_variance=variance)
        super().__init__(model, train_dataset, cfg.train, cfg.tracking, to_dict(cfg), name="vqvae")

    def extra_params(self) -> dict[str, Any]:
        x, _ = self.val_dataset[0]
        return {"derived.data_variance": self.variance, "derived.image_shape": tuple(x.shape),
                "derived.latent_shape": self.model.latent_shape(x.shape[1], x.shape[2]),
                "derived.train_items": len(self.train_dataset), "derived.val_items": len(self.val_dataset)}

    def compute_loss(self, batch) -> dict[str, torch.Tensor]:
        x, _ = batch
        return vqvae_loss_terms(self.model(x))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        usage = CodebookUsage(self.model.quantizer.codebook_size, self.model.quantizer.num_codebooks)
        total_mse = total_nmse = total_psnr = 0.0
        count = 0
        for x, _ in DataLoader(self.val_dataset, batch_size=EVAL_BATCH, num_workers=self.num_workers):
            x = x.to(self.device)
            out = self.model(x)
            x_hat = out.x_hat.clamp(0, 1)
            n = x.shape[0]
            total_mse += float((x_hat - x).square().mean()) * n
            total_nmse += float(nmse(x, x_hat, self.variance)) * n
            total_psnr += float(psnr(x, x_hat)) * n
            usage.update(out.quantizer.indices)
            count += n
        self.last_usage = usage  # reused by the usage histogram
        count = max(count, 1)
        # psnr: of the MSE pooled over every held-out pixel; psnr_per_image: the mean of per-crop PSNRs
        return {"mse": total_mse / count, "nmse": total_nmse / count, "psnr": psnr_of_mse(total_mse / count),
                "psnr_per_image": total_psnr / count, **usage.summary()}

    @torch.no_grad()
    def log_media(self, step: int) -> None:
        """Reconstruction grid (originals above reconstructions) and the last evaluation's usage histogram."""
        import matplotlib.pyplot as plt

        self.model.eval()
        x = torch.stack([self.val_dataset[i][0] for i in range(min(GRID_IMAGES, len(self.val_dataset)))])
        x_hat = self.model(x.to(self.device)).x_hat.cpu()
        self.tracker.log_image(image_grid(torch.cat([x, x_hat]), nrow=len(x)), f"reconstructions/step_{step:07d}.png")
        fig = usage_histogram(self.last_usage)
        self.tracker.log_figure(fig, f"codebook_usage/step_{step:07d}.png")
        plt.close(fig)
        self.model.train()


STAGES = ("all", "vqvae", "prior", "sample")


def run_vqvae(cfg: ImageConfig, train_ds, val_ds, resume: bool) -> dict[str, float]:
    """Stage "vqvae": train and evaluate the VQ-VAE."""
    return fit_stage(ImageVQVAETrainer(cfg, train_ds, val_ds, data_variance(train_ds)), resume,
                     "held-out metrics (vqvae)")


def _vqvae_checkpoint(cfg: ImageConfig) -> Path:
    return Path(cfg.prior.vqvae_checkpoint or Path(cfg.train.output_dir) / "vqvae" / "checkpoints" / "latest.pt")


def run_prior(cfg: ImageConfig, train_ds, val_ds, resume: bool) -> dict[str, float]:
    """Stage "prior": codes of the frozen VQ-VAE (cached on disk), the PixelCNN fit, bits/dim and samples."""
    device = resolve_device(cfg.train.device)
    vqvae, _, vqvae_hash = load_frozen_vqvae(_vqvae_checkpoint(cfg), device)
    cache = Path(cfg.train.output_dir) / "prior" / "codes"
    data_key = repr((cfg.data, cfg.train.seed))
    train_codes, train_labels = cached_codes(cache / "train.pt", vqvae, vqvae_hash, train_ds, cfg.prior.code_items,
                                             device, data_key)
    val_codes, val_labels = cached_codes(cache / "val.pt", vqvae, vqvae_hash, val_ds, len(val_ds), device, data_key)
    if not vqvae.categorical:
        fit_pixel_sigma(vqvae, train_ds, 4096, device)
    trainer = ImagePriorTrainer(cfg, vqvae, vqvae_hash, train_codes, train_labels, val_codes, val_labels, val_ds)
    return fit_stage(trainer, resume, "held-out metrics (prior)")


def run_sample(cfg: ImageConfig) -> dict[str, float]:
    """Stage "sample": decode a grid of prior samples and log it as its own MLflow run."""
    device = resolve_device(cfg.train.device)
    vqvae, _, vqvae_hash = load_frozen_vqvae(_vqvae_checkpoint(cfg), device)
    prior_path = Path(cfg.train.output_dir) / "prior" / "checkpoints" / "latest.pt"
    prior, grid, num_classes = load_prior(prior_path, vqvae, vqvae_hash, device)
    images, _ = sample_images(prior, vqvae, grid, cfg.prior.samples, num_classes, cfg.prior.temperature,
                              cfg.train.seed, device)
    tracker = Tracker(dataclasses.replace(cfg.tracking, run_name=cfg.tracking.run_name or "sample"))
    tracker.log_params({"stage": "sample", "derived.vqvae_hash": vqvae_hash, "prior.temperature": cfg.prior.temperature,
                        "prior.samples": cfg.prior.samples, "prior_checkpoint": str(prior_path)})
    tracker.log_image(image_grid(images, nrow=8), "samples/samples.png")
    tracker.end()
    print(f"\nsampled {len(images)} images; MLflow UI: {tracker.ui_command()}")
    return {"samples": float(len(images))}


def main(config_path: str | Path, overrides: list[str], resume: bool = False, stage: str = "all") -> dict[str, float]:
    """Run the image experiment's stages (``all`` = vqvae → prior, whose end logs samples and bits/dim).

    Returns the metrics of the last stage run.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known stages: {', '.join(STAGES)}")
    cfg = load_config(ImageConfig, config_path, overrides)
    if stage == "sample":
        return run_sample(cfg)
    train_ds, val_ds = build_image_datasets(cfg.data, cfg.train.seed)
    metrics: dict[str, float] = {}
    if stage in ("all", "vqvae"):
        metrics = run_vqvae(cfg, train_ds, val_ds, resume)
    if stage in ("all", "prior"):
        metrics = {**metrics, **run_prior(cfg, train_ds, val_ds, resume)}
    return metrics
