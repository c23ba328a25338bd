"""Stage "vqvae" of the image VQ-VAE (also the video experiment's frame VQ-VAE): the trainer, its held-out scores
and its pictures.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from core.config import QuantizerConfig, TrackingConfig, TrainConfig, to_dict
from core.export import ModelExample, reconstruction_example
from core.trainer import Trainer, vqvae_loss_terms
from image.config import ImageModelConfig
from image.data import embedded_images, to_tensor
from image.hierarchy import HierarchicalOutput, build_image_vqvae
from image.media import labelled_grid, progressive_grid, usage_histogram
from image.photos import debian_photos
from image.reconstruct import reconstruct_whole, side_by_side
from image.scoring import score_reconstructions

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
    from blended tilings of ``tile`` pixels (:func:`image.reconstruct.reconstruct_whole`)."""

    def __init__(self, cfg: VQVAEStageConfig, train_dataset, val_dataset, variance: float,
                 extra_val_sets: dict | None = None, full_images: list | None = None, tile: int = 0):
        self.val_dataset = val_dataset
        self.extra_val_sets = extra_val_sets or {}
        self.full_images = full_images or []
        self.tile = tile
        self.variance = variance
        self.num_workers = cfg.data.num_workers
        super().__init__(lambda: build_image_vqvae(cfg.model, cfg.quantizer, data_variance=variance), train_dataset,
                         cfg.train, cfg.tracking, to_dict(cfg), name="vqvae")

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

    def logged_model(self) -> ModelExample:
        """The MLflow model: ``[B, C, H, W]`` in [0, 1] (sides multiples of ``side_multiple``) → the evaluation-mode
        reconstruction, as :meth:`evaluate` scores it (:mod:`core.export`)."""
        x = torch.stack([self.val_dataset[i][0] for i in range(min(2, len(self.val_dataset)))]).to(self.device)
        return reconstruction_example(self.model, {"x": x}, dynamic=((0, 2, 3),), output_dynamic=(0, 2, 3),
                                      output="reconstruction [B, C, H, W] in [0, 1]")

    @torch.no_grad()
    def log_media(self, step: int) -> None:
        """Enlarged, labelled crops (originals above reconstructions; with several levels, the reconstructions
        from the top level alone, the top two, …, all levels, each labelled with its PSNR on the crops shown) of each
        held-out set, whole held-out photos reconstructed without a tile grid (original left), and the last evaluation's
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
            x_hat = reconstruct_whole(self.model, image, self.tile)
            self.tracker.log_image(side_by_side(image, x_hat), f"reconstructions/full_{name}_step_{step:07d}.png")
        for prefix, usage in self.last_usage.items():
            fig = usage_histogram(usage)
            self.tracker.log_figure(fig, f"codebook_usage/{prefix.replace('/', '_')}step_{step:07d}.png")
            plt.close(fig)
        self.model.train()


# held-out photos shown whole, reconstructed without a tile grid, in the vqvae stage's pictures (embedded source)
FULL_IMAGES = {"val": ("chelsea",), "nature": ("GreenMeadow", "YellowFlower")}


def full_held_out_images(data_cfg) -> list[tuple[str, torch.Tensor]]:
    """``(name, [3, H, W] in [0, 1])`` of the ``FULL_IMAGES`` (embedded source; other sources: none)."""
    if data_cfg.source != "embedded":
        return []
    photos = dict(embedded_images("val")) | dict(debian_photos("nature", data_cfg.photo_root))
    names = [name for group in FULL_IMAGES.values() for name in group]
    return [(name, to_tensor(photos[name])) for name in names]
