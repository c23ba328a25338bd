"""The VQ-VAE pipeline every domain runs, written once: ``vqvae`` (train the VQ-VAE) → ``prior`` (fit an
autoregressive prior to the frozen VQ-VAE's codes) → ``sample`` (decode codes drawn from the prior).

A domain supplies a :class:`PipelineAdapter` (build its trainers, read its frozen VQ-VAE, load its prior, decode
samples); :func:`pipeline_stages` turns it into the three stage functions and :func:`pipeline_requires` into the
checkpoints they read. The rules the stages share live here alone:

* **checkpoints** — ``<output_dir>/<stage>/checkpoints/latest.pt``; the later stages read the VQ-VAE of
  ``prior.vqvae_checkpoint`` when set, else the run's own (:func:`vqvae_checkpoint`);
* **one frozen record** — :class:`~core.checkpoint.FrozenVQVAE` (model, config, ``vqvae_hash``, extras);
* **one code cache** — ``<output_dir>/codes/<name>.pt``, keyed by ``vqvae_hash`` (:func:`code_cache`);
* **one hash check** — a prior stores ``vqvae_hash`` and its shape entries, and is refused for any other VQ-VAE
  (:func:`load_prior`);
* **one seeding point** — :class:`~core.trainer.Trainer` builds every stage's model from the stage's seed;
* **metric names** — a fitted stage returns its held-out metrics unprefixed (``nll_bits_per_code``, as logged under
  ``val/``); the ``sample`` stage's metrics are ``sample/<name>``; NLLs are reported in bits per code.

Domain stages that are not the pipeline (record, probe, convert, generate, reconstruct) stay in the domain.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import default_collate

from core.checkpoint import FrozenVQVAE, check_fits, earlier_stage_checkpoint, load_frozen, stage_checkpoint
from core.config import stage_train_config, to_dict
from core.export import MethodModule, ModelExample
from core.stages import StageContext
from core.tracking import Tracker, stage_tracker
from core.trainer import Trainer, fit_stage

LN2 = math.log(2.0)


def vqvae_checkpoint(cfg: Any) -> Path:
    """The VQ-VAE checkpoint the later stages read: ``cfg.prior.vqvae_checkpoint`` when set, else the run's own."""
    return earlier_stage_checkpoint(cfg.prior.vqvae_checkpoint, cfg.train.output_dir)


def prior_checkpoint(cfg: Any) -> Path:
    """The run's prior checkpoint."""
    return stage_checkpoint(cfg.train.output_dir, "prior")


def code_cache(cfg: Any, name: str) -> Path:
    """Where the codes of one split (``name``: ``train``, ``val``, …) are cached: ``<output_dir>/codes/<name>.pt``."""
    return Path(cfg.train.output_dir) / "codes" / f"{name}.pt"


class PriorTrainer(Trainer):
    """Base of every domain's ``prior`` stage: the loop settings of ``cfg.prior.train`` (output folder and device
    of the run's), the prior built from the stage's seed, ``vqvae_hash`` and the domain's shape entries (``fits``)
    stored in the checkpoint and logged as ``derived.*`` params, and the NLL in bits per code.

    A subclass implements :meth:`batch_nll` (mean NLL in nats per code of a training batch) and ``evaluate``.

    Args:
        cfg: the experiment config (it has ``prior.train``, ``train`` and ``tracking`` sections).
        frozen: the frozen VQ-VAE whose codes the prior models.
        build_prior: builds the prior (called once, after seeding).
        train_dataset: the training items of code windows or grids.
        fits: entries the prior must agree on with the VQ-VAE it decodes with (``codebook_size``, grids, …);
            stored in the checkpoint with ``vqvae_hash`` and checked by :func:`load_prior`.
        derived: further params to log (``derived.<key>``).
    """

    def __init__(self, cfg: Any, frozen: FrozenVQVAE, build_prior: Callable[[], torch.nn.Module], train_dataset,
                 fits: dict[str, Any], derived: dict[str, Any] | None = None):
        self.cfg = cfg
        self.vqvae, self.vqvae_hash = frozen.model, frozen.vqvae_hash
        self.fits = {"vqvae_hash": frozen.vqvae_hash, **fits}
        self.derived = dict(derived or {})
        super().__init__(build_prior, train_dataset, stage_train_config(cfg.prior.train, cfg.train), cfg.tracking,
                         to_dict(cfg), name="prior")

    def checkpoint_extra(self) -> dict[str, Any]:
        return dict(self.fits)

    def extra_params(self) -> dict[str, Any]:
        return {"derived.vqvae_hash": self.vqvae_hash, **{f"derived.{k}": v for k, v in self.derived.items()}}

    def batch_nll(self, batch) -> torch.Tensor:
        """Mean negative log-likelihood of the batch's codes, nats per code (a scalar tensor with gradients)."""
        raise NotImplementedError

    def logits_call(self, batch) -> tuple[Callable[..., torch.Tensor], dict[str, torch.Tensor]] | None:
        """How the prior's logits follow from a training batch: ``(call, inputs)`` with ``call(prior, *inputs)``
        the logits, ``inputs`` named in call order (the logged MLflow model, :mod:`core.export`); None: the
        prior logs no model."""
        return None

    def logged_model(self) -> ModelExample | None:
        """The MLflow model: the prior's teacher-forced logits of two training items (batch axis dynamic)."""
        items = [self.train_dataset[i] for i in range(min(2, len(self.train_dataset)))]
        found = self.logits_call(self.to_device(default_collate(items)))
        if found is None:
            return None
        call, inputs = found
        return ModelExample(MethodModule(self.model, call), inputs, tuple((0,) for _ in inputs), (0,),
                            {"output": "logits over the codebook (teacher-forced)"})

    def compute_loss(self, batch) -> dict[str, torch.Tensor]:
        nll = self.batch_nll(batch)  # nats per code
        return {"loss": nll, "nll_bits_per_code": nll.detach() / LN2}


def load_prior(path: str | Path, frozen: FrozenVQVAE, fits: dict[str, Any],
               build: Callable[[dict[str, Any]], torch.nn.Module],
               device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The prior of a checkpoint, frozen, refused unless fitted to ``frozen`` (same ``vqvae_hash``) and to the
    entries ``fits``; ``build(payload)`` makes the module from the checkpoint's entries.

    Returns ``(prior in eval mode, checkpoint payload)``.

    Raises:
        FileNotFoundError / ValueError: a missing or foreign checkpoint, or one fitted to another VQ-VAE or shape.
    """
    def checked(payload: dict[str, Any]) -> torch.nn.Module:
        check_fits(payload, {"vqvae_hash": frozen.vqvae_hash, **fits})
        return build(payload)

    return load_frozen(path, checked, device)[:2]


class PipelineAdapter:
    """What a domain supplies to the pipeline. Every method gets the :class:`~core.stages.StageContext`."""

    def vqvae_trainer(self, ctx: StageContext) -> Trainer:
        """The ``vqvae`` stage's trainer."""
        raise NotImplementedError

    def load_vqvae(self, ctx: StageContext, path: Path) -> FrozenVQVAE:
        """The frozen VQ-VAE of a checkpoint, checked against this run's data (e.g. its frame size)."""
        raise NotImplementedError

    def prior_trainer(self, ctx: StageContext, frozen: FrozenVQVAE) -> PriorTrainer:
        """The ``prior`` stage's trainer: the codes of the splits (cached with :func:`code_cache`) and the prior."""
        raise NotImplementedError

    def load_prior(self, ctx: StageContext, frozen: FrozenVQVAE, path: Path) -> tuple[torch.nn.Module, dict]:
        """The trained prior (:func:`load_prior`) and its checkpoint payload."""
        raise NotImplementedError

    def sample(self, ctx: StageContext, frozen: FrozenVQVAE, prior: torch.nn.Module, payload: dict,
               tracker: Tracker) -> dict[str, float]:
        """Draw codes from the prior, decode them, log them to ``tracker``; returns metrics (unprefixed)."""
        raise NotImplementedError


def run_vqvae(adapter: PipelineAdapter, ctx: StageContext) -> dict[str, float]:
    """Stage ``vqvae``: train and evaluate the VQ-VAE."""
    return fit_stage(adapter.vqvae_trainer(ctx), ctx.resume, "held-out metrics (vqvae)")


def run_prior(adapter: PipelineAdapter, ctx: StageContext) -> dict[str, float]:
    """Stage ``prior``: the frozen VQ-VAE's codes and the prior's fit."""
    frozen = adapter.load_vqvae(ctx, vqvae_checkpoint(ctx.cfg))
    return fit_stage(adapter.prior_trainer(ctx, frozen), ctx.resume, "held-out metrics (prior)")


@torch.no_grad()
def run_sample(adapter: PipelineAdapter, ctx: StageContext) -> dict[str, float]:
    """Stage ``sample``: codes drawn from the prior and decoded, logged as the stage's own MLflow run."""
    cfg = ctx.cfg
    frozen = adapter.load_vqvae(ctx, vqvae_checkpoint(cfg))
    prior, payload = adapter.load_prior(ctx, frozen, prior_checkpoint(cfg))
    tracker = stage_tracker(cfg.tracking, "sample", cfg, {"derived.vqvae_hash": frozen.vqvae_hash,
                                                          "derived.prior_checkpoint": str(prior_checkpoint(cfg))})
    metrics = {f"sample/{k}": v for k, v in adapter.sample(ctx, frozen, prior, payload, tracker).items()}
    tracker.log_metrics(metrics, 0)
    tracker.end()
    print("\nsampled: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()) + f"; MLflow UI: {tracker.ui_command()}")
    return metrics


def pipeline_stages(adapter: PipelineAdapter) -> dict[str, Callable[[StageContext], dict[str, float]]]:
    """The ``vqvae``, ``prior`` and ``sample`` stage functions of a domain."""
    return {"vqvae": lambda ctx: run_vqvae(adapter, ctx), "prior": lambda ctx: run_prior(adapter, ctx),
            "sample": lambda ctx: run_sample(adapter, ctx)}


def needs_vqvae(cfg: Any) -> dict[str, Path]:
    """What a stage that reads the frozen VQ-VAE needs (a :class:`~core.stages.DomainSpec` ``requires`` entry)."""
    return {"vqvae": vqvae_checkpoint(cfg)}


def needs_prior(cfg: Any) -> dict[str, Path]:
    """What a stage that reads the frozen VQ-VAE and the trained prior needs."""
    return {**needs_vqvae(cfg), "prior": prior_checkpoint(cfg)}


def pipeline_requires() -> dict[str, Callable[[Any], dict[str, Path]]]:
    """The checkpoints the pipeline's later stages read (for :class:`~core.stages.DomainSpec` ``requires``)."""
    return {"prior": needs_vqvae, "sample": needs_prior}
