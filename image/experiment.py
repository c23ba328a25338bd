"""The image experiment: train the VQ-VAE, evaluate on held-out images, fit the prior, log everything to MLflow.

``python experiments/run.py image [--config FILE] [--stage all|vqvae|prior|sample] [--resume] [key=value ...]``
runs the stages of :data:`SPEC` (through :func:`core.stages.run_domain`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from core.checkpoint import earlier_stage_checkpoint, stage_checkpoint
from core.config import QuantizerConfig, TrackingConfig, TrainConfig, to_dict
from core.data import data_variance
from core.stages import DomainSpec, StageContext
from core.tracking import stage_tracker
from core.trainer import (
    Trainer,
    fit_stage,
    resolve_device,
    seed_everything,
    vqvae_loss_terms,
)
from image.config import ImageConfig, ImageModelConfig
from image.data import (
    build_extra_val_sets,
    build_image_datasets,
    embedded_images,
    to_tensor,
)
from image.hierarchy import HierarchicalOutput, HierarchicalVQVAE, build_image_vqvae
from image.hierarchy_prior import (
    HierarchicalPriorTrainer,
    level_codes,
    load_hierarchical_prior,
    sample_hierarchical,
)
from image.media import labelled_grid, progressive_grid, sample_grid, usage_histogram
from image.photos import debian_photos
from image.prior_stage import (
    ImagePriorTrainer,
    fit_pixel_sigma,
    load_frozen_vqvae,
    load_prior,
    sample_images,
)
from image.reconstruct import (
    image_files,
    reconstruct_files,
    reconstruct_tiled,
    side_by_side,
)
from image.scoring import score_reconstructions
from priors.codes import cached_codes

GRID_IMAGES = 16


class VQVAEStageConfig(Protocol):
    """What :class:`ImageVQVAETrainer` reads of a config: the image job's and the video job's both have it."""

    model: ImageModelConfig
    quantizer: QuantizerConfig
    train: TrainConfig
    tracking: TrackingConfig
    data: Any  # with ``num_workers``


class ImageVQVAETrainer(Trainer):
    """Stage "vqvae": trains the image VQ-VAE (one level or :mod:`image.hierarchy`) and scores it
    (:mod:`image.scoring`: pooled and per-image PSNR, bicubic resampling beside it, codebook health) on the
    held-out split and on ``extra_val_sets``; ``full_images`` (name, ``[3, H, W]``) are pictured whole, reconstructed
    in tiles of ``tile`` pixels."""

    def __init__(self, cfg: VQVAEStageConfig, train_dataset, val_dataset, variance: float,
                 extra_val_sets: dict | None = None, full_images: list | None = None, tile: int = 0):
        self.val_dataset = val_dataset
        self.extra_val_sets = extra_val_sets or {}
        self.full_images = full_images or []
        self.tile = tile
        self.variance = variance
        self.num_workers = cfg.data.num_workers
        seed_everything(cfg.train.seed)  # the initial weights are part of the run's seeded state
        model = build_image_vqvae(cfg.model, cfg.quantizer, data_variance=variance)
        super().__init__(model, train_dataset, cfg.train, cfg.tracking, to_dict(cfg), name="vqvae")

    def extra_params(self) -> dict[str, Any]:
        x, _ = self.val_dataset[0]
        return {"derived.data_variance": self.variance, "derived.image_shape": tuple(x.shape),
                "derived.latent_shape": self.model.latent_shape(x.shape[1], x.shape[2]),
                "derived.train_items": len(self.train_dataset), "derived.val_items": len(self.val_dataset)}

    def compute_loss(self, batch) -> dict[str, torch.Tensor]:
        x, _ = batch
        out = self.model(x)
        return out.loss_terms() if isinstance(out, HierarchicalOutput) else vqvae_loss_terms(out)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Scores of :mod:`image.scoring` on the held-out split (unprefixed) and on each further held-out set
        (prefixed with its name, e.g. ``nature/psnr``)."""
        metrics, self.last_usage = score_reconstructions(self.model, self.val_dataset, self.device, self.variance,
                                                         self.num_workers)
        for name, dataset in self.extra_val_sets.items():
            scores, _ = score_reconstructions(self.model, dataset, self.device, self.variance, self.num_workers)
            metrics.update({f"{name}/{k}": v for k, v in scores.items()})
        return metrics

    @torch.no_grad()
    def log_media(self, step: int) -> None:
        """Enlarged, labelled crops (originals above reconstructions; with several levels, the reconstructions
        from the top level alone, the top two, …, all levels, each labelled with its PSNR on the crops shown) of each
        held-out set, whole held-out photos reconstructed tile by tile (original left), and the last evaluation's
        usage histogram of each level."""
        import matplotlib.pyplot as plt

        self.model.eval()
        for name, dataset in {"held_out": self.val_dataset, **self.extra_val_sets}.items():
            x = torch.stack([dataset[i][0] for i in range(min(GRID_IMAGES, len(dataset)))])
            if hasattr(self.model, "progressive"):
                grid = progressive_grid(name, x, self.model.progressive(x.to(self.device)), self.model.level_names)
            else:
                x_hat = self.model(x.to(self.device)).x_hat.clamp(0, 1).cpu()
                grid = labelled_grid([(f"{name}\noriginal", x), (f"{name}\nreconstruction", x_hat)])
            self.tracker.log_image(grid, f"reconstructions/{name}_step_{step:07d}.png")
        for name, image in self.full_images:
            x_hat = reconstruct_tiled(self.model, image, self.tile)
            self.tracker.log_image(side_by_side(image, x_hat), f"reconstructions/full_{name}_step_{step:07d}.png")
        for prefix, usage in self.last_usage.items():
            fig = usage_histogram(usage)
            self.tracker.log_figure(fig, f"codebook_usage/{prefix.replace('/', '_')}step_{step:07d}.png")
            plt.close(fig)
        self.model.train()


# held-out photos shown whole, reconstructed tile by tile, in the vqvae stage's pictures (embedded source)
FULL_IMAGES = {"val": ("chelsea",), "nature": ("GreenMeadow", "YellowFlower")}


def full_held_out_images(data_cfg) -> list[tuple[str, torch.Tensor]]:
    """``(name, [3, H, W] in [0, 1])`` of the ``FULL_IMAGES`` (embedded source; other sources: none)."""
    if data_cfg.source != "embedded":
        return []
    photos = dict(embedded_images("val")) | dict(debian_photos("nature", data_cfg.photo_root))
    names = [name for group in FULL_IMAGES.values() for name in group]
    return [(name, to_tensor(photos[name])) for name in names]


def run_vqvae(cfg: ImageConfig, train_ds, val_ds, resume: bool) -> dict[str, float]:
    """Stage "vqvae": train and evaluate the VQ-VAE."""
    trainer = ImageVQVAETrainer(cfg, train_ds, val_ds, data_variance(train_ds), build_extra_val_sets(cfg.data),
                                full_held_out_images(cfg.data), cfg.data.crop_size)
    return fit_stage(trainer, resume, "held-out metrics (vqvae)")


def _vqvae_checkpoint(cfg: ImageConfig) -> Path:
    return earlier_stage_checkpoint(cfg.prior.vqvae_checkpoint, cfg.train.output_dir)


def run_prior(cfg: ImageConfig, train_ds, val_ds, resume: bool) -> dict[str, float]:
    """Stage "prior": codes of the frozen VQ-VAE (cached on disk), the PixelCNN fit (one per level for a
    hierarchical VQ-VAE), bits/dim and samples."""
    device = resolve_device(cfg.train.device)
    vqvae, _, vqvae_hash = load_frozen_vqvae(_vqvae_checkpoint(cfg), device)
    cache = Path(cfg.train.output_dir) / "prior" / "codes"
    data_key = repr((cfg.data, cfg.train.seed))
    if isinstance(vqvae, HierarchicalVQVAE):
        train_codes, train_labels = level_codes(cache / "train_levels.pt", vqvae, vqvae_hash, train_ds,
                                                cfg.prior.code_items, device, data_key)
        val_codes, val_labels = level_codes(cache / "val_levels.pt", vqvae, vqvae_hash, val_ds, len(val_ds), device,
                                            data_key)
        fit_pixel_sigma(vqvae, train_ds, 4096, device)
        trainer = HierarchicalPriorTrainer(cfg, vqvae, vqvae_hash, train_codes, train_labels, val_codes, val_labels,
                                           val_ds)
        return fit_stage(trainer, resume, "held-out metrics (prior)")
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
    prior_path = stage_checkpoint(cfg.train.output_dir, "prior")
    if isinstance(vqvae, HierarchicalVQVAE):
        prior, grids, num_classes = load_hierarchical_prior(prior_path, vqvae, vqvae_hash, device)
        images = sample_hierarchical(prior, vqvae, grids, cfg.prior.samples, num_classes, cfg.prior.temperature,
                                     cfg.train.seed, device)
    else:
        prior, grid, num_classes = load_prior(prior_path, vqvae, vqvae_hash, device)
        images, _ = sample_images(prior, vqvae, grid, cfg.prior.samples, num_classes, cfg.prior.temperature,
                                  cfg.train.seed, device)
    tracker = stage_tracker(cfg.tracking, "sample", cfg, {"derived.vqvae_hash": vqvae_hash,
                                                          "derived.prior_checkpoint": str(prior_path)})
    tracker.log_image(sample_grid(images), "samples/samples.png")
    tracker.end()
    print(f"\nsampled {len(images)} images; MLflow UI: {tracker.ui_command()}")
    return {"samples": float(len(images))}


def run_reconstruct(cfg: ImageConfig, input_path: str) -> dict[str, float]:
    """Stage "reconstruct": ``decode(encode(x))`` of the user's images at ``input_path`` with the run's VQ-VAE,
    tile by tile (tiles of ``data.crop_size``); side-by-side PNGs in ``<output_dir>/reconstruct``.

    Returns ``{"psnr/<file name>": dB, …, "psnr_mean": mean over images}``.

    Raises:
        FileNotFoundError: no image at ``input_path``, or no trained VQ-VAE checkpoint.
        ValueError: an unreadable image file (named).
    """
    image_files(input_path)  # a wrong path fails before the model is loaded
    device = resolve_device(cfg.train.device)
    vqvae, _, _ = load_frozen_vqvae(_vqvae_checkpoint(cfg), device)
    scores = reconstruct_files(vqvae, input_path, Path(cfg.train.output_dir) / "reconstruct", cfg.data.crop_size)
    return {**{f"psnr/{name}": v for name, v in scores.items()}, "psnr_mean": sum(scores.values()) / len(scores)}


def _datasets(ctx: StageContext):
    return ctx.shared("datasets", lambda: build_image_datasets(ctx.cfg.data, ctx.cfg.train.seed))


def _check_input(requested: list[str], ctx: StageContext) -> None:
    if ("reconstruct" in requested) != (ctx.options.get("input") is not None):
        raise ValueError("--input PATH_OR_FOLDER goes with --stage reconstruct, and that stage needs it")


# ``all`` = vqvae → prior (whose end logs samples and bits/dim); ``reconstruct`` needs the ``input`` option.
def _needs_vqvae(cfg: ImageConfig) -> dict[str, Path]:
    return {"vqvae": _vqvae_checkpoint(cfg)}


SPEC = DomainSpec(
    name="image", config_class=ImageConfig, all_stages=("vqvae", "prior"), validate=_check_input,
    summary_metrics=("psnr", "bicubic_psnr", "nature/psnr", "nature/bicubic_psnr", "top/psnr", "perplexity",
                     "dead_codes", "nll_bits_per_code", "bits_per_dim"),
    requires={"prior": _needs_vqvae, "reconstruct": _needs_vqvae,
              "sample": lambda cfg: {**_needs_vqvae(cfg), "prior": stage_checkpoint(cfg.train.output_dir, "prior")}},
    stages={"vqvae": lambda ctx: run_vqvae(ctx.cfg, *_datasets(ctx), ctx.resume),
            "prior": lambda ctx: run_prior(ctx.cfg, *_datasets(ctx), ctx.resume),
            "sample": lambda ctx: run_sample(ctx.cfg),
            "reconstruct": lambda ctx: run_reconstruct(ctx.cfg, ctx.options["input"])})
STAGES = SPEC.known()
