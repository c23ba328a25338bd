"""Prior stage of the hierarchical image VQ-VAE (VQ-VAE-2, Razavi et al. 2019, sec. 3.2): one gated PixelCNN per
latent level (:class:`priors.hierarchical.HierarchicalPrior`), fitted to the frozen model's codes; samples drawn top
→ bottom and decoded; bits/dim counting every level.

Definitions (logged by :class:`HierarchicalPriorTrainer`, ``<level>`` one of ``bottom``, ``middle``, ``top``):

* ``<level>/nll_bits_per_code``: ``−log2 p(z_l | z_{>l})`` per code of that level, mean over items and positions;
* ``nll_bits_per_code``: ``Σ_l −log2 p(z_l | z_{>l})`` over every code of every level / number of codes;
* ``bits_per_dim``: ``(−log p(x | z) − Σ_l log p(z_l | z_{>l})) / (C·H·W·ln 2)``, mean over held-out items, with its
  parts ``recon_bits_per_dim`` (discretized Gaussian of σ fitted on training items) and ``prior_bits_per_dim``, and
  ``<level>/prior_bits_per_dim`` per level.

Axis legend: N items, B batch, C image channels, H W image size, h_l w_l grid of level l, K codebook size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from core.checkpoint import FrozenVQVAE
from core.files import keyed_cache
from core.pipeline import LN2, PriorTrainer, load_prior
from image.config import ImageConfig
from image.hierarchy import HierarchicalVQVAE
from image.media import levels_grid, sample_grid
from image.prior_stage import read_image_config
from priors.codes import EXTRACT_BATCH
from priors.hierarchical import HierarchicalPrior


@torch.no_grad()
def level_codes(path: Path, vqvae: HierarchicalVQVAE, vqvae_hash: str, dataset, count: int, device: torch.device,
                data_key: str = "") -> tuple[list[torch.Tensor], torch.Tensor]:
    """Codes of every level (bottom first, ``[N, h_l, w_l]`` long) and labels ``[N]`` (−1 where unlabelled) of the
    first ``count`` items of ``dataset``, cached in ``path`` for the same weights, count and ``data_key``."""
    def extract() -> tuple[list[torch.Tensor], torch.Tensor]:
        n = min(count, len(dataset))
        codes: list[list[torch.Tensor]] = [[] for _ in range(vqvae.levels)]
        labels = []
        for x, y in DataLoader(Subset(dataset, range(n)), batch_size=EXTRACT_BATCH):
            for level, c in enumerate(vqvae.encode(x.to(device))):
                codes[level].append(c.cpu())
            labels.append(torch.as_tensor(y).long())
        return [torch.cat(c) for c in codes], torch.cat(labels)

    key = {"vqvae_hash": vqvae_hash, "count": count, "data": data_key, "levels": vqvae.levels}
    return keyed_cache(path, key, extract)


def build_prior(cfg: ImageConfig, codebook_size: int, levels: int, num_classes: int) -> HierarchicalPrior:
    """The :class:`HierarchicalPrior` of ``cfg.prior``'s sizes."""
    p = cfg.prior
    return HierarchicalPrior(codebook_size, levels, channels=p.channels, num_layers=p.num_layers,
                             kernel_size=p.kernel_size, num_classes=num_classes,
                             top_attention_blocks=p.top_attention_blocks, attention_heads=p.attention_heads)


class HierarchicalPriorTrainer(PriorTrainer):
    """Stage "prior" for ``model.levels > 1``: fits every level's prior (the sum of the levels' mean NLLs per code;
    disjoint parameters) and logs the module docstring's metrics."""

    def __init__(self, cfg: ImageConfig, frozen: FrozenVQVAE, train_codes: list[torch.Tensor],
                 train_labels: torch.Tensor, val_codes: list[torch.Tensor], val_labels: torch.Tensor, val_dataset):
        vqvae = frozen.model
        self.val_codes, self.val_labels, self.val_dataset = val_codes, val_labels, val_dataset
        labelled = cfg.prior.class_conditional and train_labels.min() >= 0
        self.num_classes = int(train_labels.max()) + 1 if labelled else 0
        self.grids = [tuple(c.shape[1:]) for c in train_codes]
        super().__init__(cfg, frozen, lambda: build_prior(cfg, vqvae.codebook_size, vqvae.levels, self.num_classes),
                         TensorDataset(*train_codes, train_labels),
                         fits={"codebook_size": vqvae.codebook_size, "levels": vqvae.levels, "grids": self.grids,
                               "num_classes": self.num_classes},
                         derived={"prior_grids": self.grids, "prior_classes": self.num_classes,
                                  "code_items": len(train_labels)})

    def _cond(self, labels: torch.Tensor) -> torch.Tensor | None:
        return labels if self.num_classes else None

    def compute_loss(self, batch) -> dict[str, torch.Tensor]:
        *codes, labels = batch
        per_level = [nll.mean() / c[0].numel() for nll, c in zip(self.model.nll(codes, self._cond(labels)), codes)]
        terms = {f"{name}/nll_bits_per_code": nll.detach() / LN2
                 for name, nll in zip(self.vqvae.level_names, per_level)}
        return {"loss": sum(per_level), **terms}  # nats per code, summed over levels

    @torch.no_grad()
    def code_nll(self) -> list[torch.Tensor]:
        """``−log p(z_l | z_{>l})`` in nats per held-out item ``[N]`` for every level, bottom first."""
        out: list[list[torch.Tensor]] = [[] for _ in self.grids]
        for start in range(0, len(self.val_labels), EXTRACT_BATCH):
            codes = [c[start:start + EXTRACT_BATCH].to(self.device) for c in self.val_codes]
            labels = self.val_labels[start:start + EXTRACT_BATCH].to(self.device)
            for level, nll in enumerate(self.model.nll(codes, self._cond(labels))):
                out[level].append(nll.cpu())
        return [torch.cat(o) for o in out]

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        nll = self.code_nll()
        metrics = {f"{name}/nll_bits_per_code": float(n.mean()) / (LN2 * c[0].numel())
                   for name, n, c in zip(self.vqvae.level_names, nll, self.val_codes)}
        codes_per_item = sum(c[0].numel() for c in self.val_codes)
        metrics["nll_bits_per_code"] = float(sum(nll).mean()) / (LN2 * codes_per_item)
        return metrics

    @torch.no_grad()
    def final_metrics(self) -> dict[str, float]:
        """Bits/dim on the held-out split (module docstring)."""
        self.model.eval()
        nll_z = self.code_nll()
        nll_x = []
        images = DataLoader(Subset(self.val_dataset, range(len(self.val_labels))), batch_size=EXTRACT_BATCH)
        for start, (x, _) in zip(range(0, len(self.val_labels), EXTRACT_BATCH), images):  # extraction order
            codes = [c[start:start + EXTRACT_BATCH].to(self.device) for c in self.val_codes]
            nll_x.append(self.vqvae.reconstruction_nll(x.to(self.device), codes).cpu())
        per_dim = self.val_dataset[0][0].numel() * LN2
        x_bits = float(torch.cat(nll_x).mean()) / per_dim
        levels = {f"{name}/prior_bits_per_dim": float(n.mean()) / per_dim
                  for name, n in zip(self.vqvae.level_names, nll_z)}
        z_bits = sum(levels.values())
        return {"bits_per_dim": x_bits + z_bits, "recon_bits_per_dim": x_bits, "prior_bits_per_dim": z_bits, **levels}

    @torch.no_grad()
    def log_media(self, step: int) -> None:
        """At the end: a grid of samples, every level drawn top → bottom and decoded, and the first 8 of them decoded
        from the top level alone, …, every level (:func:`levels_picture`, the same codes)."""
        codes = sample_hierarchical_codes(self.model, self.grids, self.cfg.prior.samples, self.num_classes,
                                          self.cfg.prior.temperature, self.train_cfg.seed, self.device)
        self.tracker.log_image(sample_grid(self.vqvae.decode(codes).clamp(0, 1)), f"samples/step_{step:07d}.png")
        self.tracker.log_image(levels_picture(self.vqvae, codes), f"samples/levels_step_{step:07d}.png")
        self.model.train()


@torch.no_grad()
def sample_hierarchical(prior: HierarchicalPrior, vqvae: HierarchicalVQVAE, grids: list[tuple[int, int]], count: int,
                        num_classes: int, temperature: float, seed: int, device: torch.device) -> torch.Tensor:
    """``count`` images ``[count, C, H, W]`` in [0, 1]: codes drawn top → bottom (cached sampling at each level;
    classes cycled when conditional) and decoded from every level."""
    codes = sample_hierarchical_codes(prior, grids, count, num_classes, temperature, seed, device)
    return vqvae.decode(codes).clamp(0, 1)


@torch.no_grad()
def sample_hierarchical_codes(prior: HierarchicalPrior, grids: list[tuple[int, int]], count: int, num_classes: int,
                              temperature: float, seed: int, device: torch.device) -> list[torch.Tensor]:
    """``count`` code maps per level (bottom first, ``[count, h_l, w_l]`` long), drawn top → bottom with cached
    sampling (classes cycled when conditional); the same seed gives the codes :func:`sample_hierarchical` decodes."""
    labels = torch.arange(count, device=device) % num_classes if num_classes else None
    generator = torch.Generator(device=device).manual_seed(seed)
    return prior.sample(count, grids, labels, temperature, generator)


def levels_picture(vqvae: HierarchicalVQVAE, codes: list[torch.Tensor], count: int = 8) -> np.ndarray:
    """The first ``count`` items of sampled ``codes`` (bottom first, ``[N, h_l, w_l]``) decoded from the top level
    alone, the top two, …, every level, one labelled row each, enlarged 4× (:func:`image.media.levels_grid`): what
    the top level's sampled codes carry on their own beside the full hierarchical sample."""
    return levels_grid(vqvae.decode_progressive([c[:count] for c in codes]), vqvae.level_names)


def load_hierarchical_prior(path: str | Path, frozen: FrozenVQVAE, device: torch.device):
    """The prior of a checkpoint, refused unless fitted to ``frozen`` (codebook size, levels, weight hash).

    Returns ``(prior in eval mode, its grids (bottom first), its number of classes)``.
    """
    vqvae = frozen.model
    prior, payload = load_prior(path, frozen, {"codebook_size": vqvae.codebook_size, "levels": vqvae.levels},
                                lambda p: build_prior(read_image_config(p["config"]), p["codebook_size"], p["levels"],
                                                      p["num_classes"]), device)
    return prior, [tuple(g) for g in payload["grids"]], payload["num_classes"]
