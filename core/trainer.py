"""The one training loop of the suite: steps, evaluation cadence, checkpoints, resume, tracking.

A domain stage subclasses :class:`Trainer` and implements ``compute_loss(batch)`` and ``evaluate()`` (plus,
optionally, ``log_media(step)``). The loop owns the rest:

* seeding, the device, and batches that are a pure function of the step (``core.data``);
* Adam at the configured learning rate, with an optional linear warm-up and per-group multiples (:mod:`core.optim`,
  a pure function of the step);
* a tqdm progress bar; ``train/*`` metrics every ``log_every`` steps, ``val/*`` every ``eval_every``;
* atomic checkpoints every ``checkpoint_every`` steps and at the end (``<output_dir>/checkpoints/latest.pt``);
* ``resume=True`` continues from that checkpoint with the same weights, optimizer state, RNG states and
  MLflow run, so that the resumed run ends exactly where an uninterrupted one would;
* a non-finite loss stops the run with :class:`NonFiniteLossError`; the last good checkpoint stays;
* under ``torchrun`` (:mod:`core.distributed`): every rank starts from rank 0's weights, then draws its own random
  stream (:func:`core.distributed.rank_seed`: SQ's Gumbel noise and level-dropout masks differ per shard, as they
  would across the items of one batch), takes its slice ``batch[rank::world]`` of each step's global batch
  (``batch_size`` is the global one and must divide evenly), gradients are averaged over ranks before each Adam
  step (so the update is the one of the global batch; a parameter only some ranks reached counts as zero on the
  others), the quantizers all-reduce their EMA statistics and draw data init and restarts from every rank's
  encoder outputs, the logged training terms are averaged over ranks, every rank evaluates (identical models),
  and rank 0 alone logs and writes checkpoints.

  Exactly the global batch's update holds for losses that are means over items. The Gaussian likelihood of the
  SQ-VAE image model (``½·log MSE``, :mod:`image.model`) is not: each rank takes the log of its own shard's MSE,
  so two processes average ``½·log MSE_r`` where one process takes ``½·log`` of the pooled MSE (equal only
  when the shards' MSEs are equal; the gradient of the VQ-VAE part is weighted by ``1/MSE_r`` per shard).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from core import distributed
from core.checkpoint import (
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    stage_checkpoint,
)
from core.config import (
    ConfigError,
    TrackingConfig,
    TrainConfig,
    flatten,
)
from core.data import step_loader
from core.precision import training_precision
from core.errors import RunError
from core.export import ModelExample, model_tags
from core.optim import learning_rate, parameter_groups, set_learning_rate
from core.quantize import NonFiniteInputError
from core.stored_config import config_changes
from core.tracking import Tracker, git_commit, mark_interrupted, stage_run_name


class NonFiniteLossError(RunError):
    """The training loss became NaN or Inf; the run stopped and its last good checkpoint was kept."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def num_threads(n: int):
    """Run a block with ``n`` torch intra-op threads, restoring the previous count after.

    Sample-by-sample generation issues thousands of tiny ops per second; on a small CPU one thread is faster than
    several, which spend the time waiting for each other.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def parameter_count(module: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def print_metrics(title: str, metrics: dict[str, float]) -> None:
    """One line ``title: name value, …`` on stdout."""
    print(f"\n{title}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))


def fit_stage(trainer: "Trainer", resume: bool, title: str) -> dict[str, float]:
    """Run a stage's trainer (resuming only when asked and a checkpoint exists), print its held-out metrics, its
    checkpoint and how to open its MLflow run; returns the metrics."""
    metrics = trainer.fit(resume=resume and trainer.checkpoint_path.exists())
    if distributed.is_main_process():
        print_metrics(title, metrics)
        print(f"checkpoint: {trainer.checkpoint_path}")
    if trainer.tracker:
        print(f"MLflow UI: {trainer.tracker.ui_command()}")
    return metrics


def vqvae_loss_terms(out: Any) -> dict[str, torch.Tensor]:
    """The training terms of a VQ-VAE forward output (any domain's: it carries ``loss``, ``recon_loss`` and the
    ``quantizer`` output): ``loss`` to minimise, the rest detached for logging."""
    terms = {k: v.detach() for k, v in out.quantizer.terms().items() if k != "loss"}
    return {"loss": out.loss, "recon_loss": out.recon_loss.detach(), "quantizer_loss": out.quantizer.loss.detach(),
            **terms}


class Trainer:
    """Base training loop; see the module docstring.

    Args:
        model: the module to train (its trainable parameters go to Adam), or a function of no arguments that builds
            it: the base then seeds (``train_cfg.seed``) before building it, so a stage's initial weights are a
            function of its seed alone. The loop starts from the same seed again after the build.
        train_dataset: map-style dataset whose items the default collate can batch.
        train_cfg: loop settings.
        tracking_cfg: MLflow settings.
        config: the resolved experiment config as a nested dict (stored in checkpoints, logged as params).
        name: stage name, used for the checkpoint folder (``<output_dir>/<name>/checkpoints``).

    Subclasses may set ``num_workers`` (DataLoader worker processes for the training batches).
    """

    num_workers: int = 0

    def __init__(self, model: torch.nn.Module | Callable[[], torch.nn.Module], train_dataset, train_cfg: TrainConfig,
                 tracking_cfg: TrackingConfig, config: dict, name: str = "train"):
        if train_cfg.threads > 0:
            torch.set_num_threads(train_cfg.threads)
        learning_rate(0, train_cfg.lr, train_cfg.warmup_steps, train_cfg.lr_schedule, train_cfg.steps)  # validates
        if not isinstance(model, torch.nn.Module):  # the one seeding point of every stage: build from the seed
            seed_everything(train_cfg.seed)
            model = model()
        seed_everything(train_cfg.seed)
        self.train_cfg = train_cfg
        self.tracking_cfg = tracking_cfg
        self.config = config
        self.name = name
        self.device = resolve_device(train_cfg.device)
        world = distributed.world_size()
        if train_cfg.batch_size % world:
            raise ConfigError(f"train.batch_size {train_cfg.batch_size} (the global batch) must divide evenly over "
                              f"{world} processes")
        self.precision = training_precision(train_cfg.precision, self.device)
        self.model = model.to(self.device)
        distributed.broadcast_module(self.model)
        if distributed.world_size() > 1:  # one weight init for all; then each rank's own noise for its shard
            seed_everything(distributed.rank_seed(train_cfg.seed))
        self.train_dataset = train_dataset
        self.optimizer = torch.optim.Adam(parameter_groups(self.model), lr=train_cfg.lr)
        self.step = 0
        self.tracker: Tracker | None = None
        self.output_dir = Path(train_cfg.output_dir) / name
        self.checkpoint_path = stage_checkpoint(train_cfg.output_dir, name)

    # ------------------------------------------------------------------------------- subclass interface
    def compute_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        """Forward one training batch; return scalar tensors, ``"loss"`` being the one to minimise."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Metrics on the held-out split (keys without the ``val/`` prefix)."""
        return {}

    @torch.no_grad()
    def final_metrics(self) -> dict[str, float]:
        """Metrics computed once at the end of the run (e.g. bits/dim), logged as ``val/*`` and returned by
        :meth:`fit` with the last evaluation's."""
        return {}

    def log_media(self, step: int) -> None:
        """Log images, audio or plots at the end of the run (rank 0 only)."""

    def logged_model(self) -> ModelExample | None:
        """The stage's final model as logged to MLflow (:mod:`core.export`), or None to log none."""
        return None

    def checkpoint_extra(self) -> dict[str, Any]:
        """Entries stored in every checkpoint next to model, optimizer, step, config and RNG states."""
        return {}

    def extra_params(self) -> dict[str, Any]:
        """Derived values to log as params next to the config (sizes, parameter counts, …)."""
        return {}

    # ------------------------------------------------------------------------------------------ helpers
    def to_device(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to_device(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        return batch

    def save(self) -> Path:
        """Write the checkpoint of the current step (atomically)."""
        run_id = self.tracker.run_id if self.tracker else None
        return save_checkpoint(self.checkpoint_path, model=self.model, optimizer=self.optimizer, step=self.step,
                               config=self.config, mlflow_run_id=run_id, **self.checkpoint_extra())

    def _evaluate_and_log(self, evaluate=None) -> dict[str, float]:
        self.model.eval()
        metrics = (evaluate or self.evaluate)()
        self.model.train()
        if self.tracker:
            self.tracker.log_metrics({f"val/{k}": v for k, v in metrics.items()}, self.step)
        return metrics

    # --------------------------------------------------------------------------------------------- loop
    def fit(self, resume: bool = False) -> dict[str, float]:
        """Train to ``train_cfg.steps`` (continuing from the latest checkpoint when ``resume``); returns the
        final validation metrics.

        Raises:
            FileNotFoundError: ``resume`` without a checkpoint.
            NonFiniteLossError: the loss became NaN or Inf.
        """
        run_id, changes = None, {}
        if resume:
            payload = load_checkpoint(self.checkpoint_path, self.model, self.optimizer)
            self.step = int(payload["step"])
            run_id = payload.get("mlflow_run_id")
            changes = config_changes(payload["config"], self.config)
            print(f"[{self.name}] resuming from step {self.step} of {self.checkpoint_path}" +
                  "".join(f"; {k}: {a} → {b}" for k, (a, b) in changes.items()))
        elif self.checkpoint_path.exists() and distributed.is_main_process():  # a fresh run replaces it
            self._mark_replaced_run_interrupted()
        tracking = dataclasses.replace(self.tracking_cfg, run_name=stage_run_name(self.tracking_cfg, self.name))
        self.tracker = Tracker(tracking, run_id=run_id) if distributed.is_main_process() else None
        if self.tracker and not resume:
            params = flatten(self.config)
            params.update({"stage": self.name, "git_commit": git_commit(),
                           "parameters": parameter_count(self.model),
                           "derived.precision": self.precision, **self.extra_params()})
            self.tracker.log_params(params)
        if self.tracker and changes:  # params keep the first values; each resume's changes become tags
            self.tracker.set_tags({f"resumed_at_step_{self.step}.{k}": f"{a} → {b}" for k, (a, b) in changes.items()})
        status = "FAILED"
        try:
            metrics = self._loop()
            status = "FINISHED"
            return metrics
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            if self.tracker:
                self.tracker.end(status)

    def _mark_replaced_run_interrupted(self) -> None:
        """Before a fresh run replaces the checkpoint in its output directory: mark the MLflow run that wrote it
        ``KILLED`` if it never finished. A checkpoint that cannot be read (an older version's, a truncated file) is
        only reported: the fresh run replaces it all the same."""
        if not self.tracking_cfg.enabled:
            return
        try:
            run_id = read_checkpoint(self.checkpoint_path).get("mlflow_run_id")
        except ValueError as exc:
            print(f"[{self.name}] starting fresh; the existing checkpoint could not be read and is replaced: {exc}")
            return
        mark_interrupted(self.tracking_cfg, run_id)

    def _loop(self) -> dict[str, float]:
        cfg = self.train_cfg
        self.model.train()
        loader = step_loader(self.train_dataset, cfg.batch_size, cfg.seed, self.step, cfg.steps, self.num_workers)
        sums: dict[str, torch.Tensor] = {}  # running sums kept as tensors: no device sync per step
        count, last_log, metrics = 0, time.perf_counter(), {}
        main = distributed.is_main_process()  # the other ranks train silently
        bar = tqdm(total=cfg.steps, initial=self.step, desc=self.name, disable=None if main else True,
                   dynamic_ncols=True)
        for batch in loader:
            lr = learning_rate(self.step, cfg.lr, cfg.warmup_steps, cfg.lr_schedule, cfg.steps)
            set_learning_rate(self.optimizer, lr)
            try:
                with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                    enabled=self.precision == "bf16"):
                    terms = self.compute_loss(self.to_device(batch))
            except NonFiniteInputError as exc:
                raise NonFiniteLossError(self._non_finite_message(str(exc))) from exc
            loss = terms["loss"]
            # ranks whose loss is finite, counted over all ranks: every rank stops together, none waits for one
            # that stopped
            finite = distributed.all_reduce_sum(torch.isfinite(loss.detach()).float().reshape(1))
            if int(finite.item()) != distributed.world_size():
                where = f"loss is {loss.item()}" if not torch.isfinite(loss) else "loss of another process"
                raise NonFiniteLossError(self._non_finite_message(where))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(self.model.parameters())
            self.optimizer.step()
            self.step += 1
            for k, v in terms.items():
                sums[k] = sums[k] + v.detach() if k in sums else v.detach().clone()
            count += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                now = time.perf_counter()
                means = distributed.all_reduce_sum(torch.stack([v.float() for v in sums.values()])) / (
                    count * distributed.world_size())  # over the steps since the last log and over ranks
                logged = {f"train/{k}": float(v) for k, v in zip(sums, means)}
                logged["train/steps_per_second"] = count / max(now - last_log, 1e-9)
                logged["train/lr"] = lr
                bar.set_postfix(loss=f"{logged['train/loss']:.4f}")
                if self.tracker:
                    self.tracker.log_metrics(logged, self.step)
                sums, count, last_log = {}, 0, now
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                metrics = self._evaluate_and_log()
                if main:
                    bar.write(f"[{self.name}] step {self.step}: " +
                              ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
            if main and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                self.save()
        bar.close()
        distributed.barrier()  # rank 0's last checkpoint is on disk before any rank goes on to read it
        if not metrics:  # resumed at the end: nothing left to train
            metrics = self._evaluate_and_log()
        metrics = {**metrics, **self._evaluate_and_log(self.final_metrics)}
        if self.tracker:
            self.log_media(self.step)
            self._log_model()
        return metrics

    def _log_model(self) -> None:
        """Log :meth:`logged_model` to the stage's MLflow run (and the registry when configured). A model that
        does not export is reported in one line; the trained run and its checkpoint stay as they are."""
        example = self.logged_model() if self.tracking_cfg.log_models else None
        if example is None:
            return
        stage = self.name
        registered = f"{self.tracking_cfg.register_model}-{stage}" if self.tracking_cfg.register_model else ""
        try:
            uri = self.tracker.log_pytorch_model(
                example.module, example.inputs, example.dynamic, example.output_dynamic, params=flatten(self.config),
                tags=model_tags(example, stage, self.extra_params()), registered_name=registered)
        except Exception as exc:  # noqa: BLE001 — logging the model must not cost the trained run
            print(f"[{stage}] MLflow model not logged: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            return
        print(f"[{stage}] MLflow model {uri}" + (f", registered as {registered}" if registered else ""))

    def _non_finite_message(self, what: str) -> str:
        kept = f"the last good checkpoint {self.checkpoint_path} is kept" if self.checkpoint_path.exists() \
            else "no checkpoint had been written yet"
        return f"non-finite training loss at step {self.step + 1} ({what}); the run stopped and {kept}"
