"""The image experiment: train the VQ-VAE, evaluate on held-out images, fit the prior, log everything to MLflow.

``python experiments/run.py image [--config FILE] [--stage all|vqvae|prior|sample|reconstruct] [--resume] …``
runs the stages of :data:`SPEC` (through :func:`core.stages.run_domain`): the core pipeline
(:mod:`core.pipeline`) through :class:`ImageAdapter`, and the image's own ``reconstruct`` stage.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.checkpoint import FrozenVQVAE
from core.data import data_variance
from core.pipeline import (
    PipelineAdapter,
    code_cache,
    needs_vqvae,
    pipeline_requires,
    pipeline_stages,
    vqvae_checkpoint,
)
from core.stages import CliOption, DomainSpec, StageContext
from core.tracking import Tracker
from image.config import ImageConfig
from image.data import build_extra_val_sets, build_image_datasets
from image.hierarchical_prior_stage import (
    HierarchicalPriorTrainer,
    level_codes,
    load_hierarchical_prior,
    levels_picture,
    sample_hierarchical_codes,
)
from image.hierarchy import HierarchicalVQVAE
from image.media import sample_grid
from image.prior_stage import ImagePriorTrainer, fit_pixel_sigma, load_frozen_vqvae, load_prior, sample_images
from image.reconstruct import image_files, reconstruct_files
from image.vqvae_stage import ImageVQVAETrainer, full_held_out_images
from priors.codes import cached_codes

SIGMA_ITEMS = 4096  # training items of the decoder's σ fit (Gaussian likelihood), before the prior stage


def _datasets(ctx: StageContext):
    return ctx.shared("datasets", lambda: build_image_datasets(ctx.cfg.data, ctx.cfg.train.seed))


class ImageAdapter(PipelineAdapter):
    """The image domain in the core pipeline: a one-level VQ-VAE with a gated PixelCNN prior, or a hierarchical
    VQ-VAE (``model.levels > 1``) with one prior per level."""

    def vqvae_trainer(self, ctx: StageContext) -> ImageVQVAETrainer:
        cfg = ctx.cfg
        train_ds, val_ds = _datasets(ctx)
        return ImageVQVAETrainer(cfg, train_ds, val_ds, data_variance(train_ds), build_extra_val_sets(cfg.data),
                                 full_held_out_images(cfg.data), cfg.data.crop_size)

    def load_vqvae(self, ctx: StageContext, path: Path) -> FrozenVQVAE:
        return load_frozen_vqvae(path, ctx.device)

    def prior_trainer(self, ctx: StageContext, frozen: FrozenVQVAE):
        cfg, device, vqvae = ctx.cfg, ctx.device, frozen.model
        train_ds, val_ds = _datasets(ctx)
        data_key = repr((cfg.data, cfg.train.seed))
        if isinstance(vqvae, HierarchicalVQVAE):
            train = level_codes(code_cache(cfg, "train_levels"), vqvae, frozen.vqvae_hash, train_ds,
                                cfg.prior.code_items, device, data_key)
            val = level_codes(code_cache(cfg, "val_levels"), vqvae, frozen.vqvae_hash, val_ds, len(val_ds), device,
                              data_key)
            fit_pixel_sigma(vqvae, train_ds, SIGMA_ITEMS, device)
            return HierarchicalPriorTrainer(cfg, frozen, *train, *val, val_ds)
        train = cached_codes(code_cache(cfg, "train"), vqvae, frozen.vqvae_hash, train_ds, cfg.prior.code_items,
                             device, data_key)
        val = cached_codes(code_cache(cfg, "val"), vqvae, frozen.vqvae_hash, val_ds, len(val_ds), device, data_key)
        if not vqvae.categorical:
            fit_pixel_sigma(vqvae, train_ds, SIGMA_ITEMS, device)
        return ImagePriorTrainer(cfg, frozen, *train, *val, val_ds)

    def load_prior(self, ctx: StageContext, frozen: FrozenVQVAE, path: Path):
        if isinstance(frozen.model, HierarchicalVQVAE):
            prior, grids, num_classes = load_hierarchical_prior(path, frozen, ctx.device)
            return prior, {"grids": grids, "num_classes": num_classes}
        prior, grid, num_classes = load_prior(path, frozen, ctx.device)
        return prior, {"grid": grid, "num_classes": num_classes}

    def sample(self, ctx: StageContext, frozen: FrozenVQVAE, prior: torch.nn.Module, payload: dict,
               tracker: Tracker) -> dict[str, float]:
        p, seed = ctx.cfg.prior, ctx.cfg.train.seed
        if "grids" in payload:
            codes = sample_hierarchical_codes(prior, payload["grids"], p.samples, payload["num_classes"],
                                              p.temperature, seed, ctx.device)
            images = frozen.model.decode(codes).clamp(0, 1)
            tracker.log_image(levels_picture(frozen.model, codes), "samples/levels.png")
        else:
            images, _ = sample_images(prior, frozen.model, payload["grid"], p.samples, payload["num_classes"],
                                      p.temperature, seed, ctx.device)
        tracker.log_image(sample_grid(images), "samples/samples.png")
        return {"images": float(len(images))}


def run_reconstruct(ctx: StageContext) -> dict[str, float]:
    """Stage "reconstruct": ``decode(encode(x))`` of the user's images at ``--input`` with the run's VQ-VAE,
    from blended half-shifted tilings of ``data.crop_size`` tiles (:func:`image.reconstruct.reconstruct_whole`: no
    tile grid); side-by-side PNGs in ``<output_dir>/reconstruct``.

    Returns ``{"psnr/<file name>": dB, …, "psnr_mean": mean over images}``.

    Raises:
        FileNotFoundError: no image at ``input_path``, or no trained VQ-VAE checkpoint.
        ValueError: an unreadable image file (named).
    """
    cfg, input_path = ctx.cfg, ctx.options["input"]
    image_files(input_path)  # a wrong path fails before the model is loaded
    vqvae = load_frozen_vqvae(vqvae_checkpoint(cfg), ctx.device).model
    scores = reconstruct_files(vqvae, input_path, Path(cfg.train.output_dir) / "reconstruct", cfg.data.crop_size)
    return {**{f"psnr/{name}": v for name, v in scores.items()}, "psnr_mean": sum(scores.values()) / len(scores)}


def _check_input(requested: list[str], ctx: StageContext) -> None:
    if ("reconstruct" in requested) != (ctx.options.get("input") is not None):
        raise ValueError("--input PATH_OR_FOLDER goes with --stage reconstruct, and that stage needs it")


# ``all`` = vqvae → prior (whose end logs samples and bits/dim); ``reconstruct`` needs the ``input`` option.
SPEC = DomainSpec(
    name="image", config_class=ImageConfig, all_stages=("vqvae", "prior"), validate=_check_input,
    summary_metrics=("psnr", "bicubic_psnr", "nature/psnr", "nature/bicubic_psnr", "top/psnr", "perplexity",
                     "dead_codes", "nll_bits_per_code", "bits_per_dim"),
    requires={**pipeline_requires(), "reconstruct": needs_vqvae},
    stages={**pipeline_stages(ImageAdapter()), "reconstruct": run_reconstruct},
    options=(CliOption("input", "--stage reconstruct: an image file or a folder of images to reconstruct",
                       value="PATH"),))
STAGES = SPEC.known()
