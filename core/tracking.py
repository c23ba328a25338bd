"""MLflow tracking: with :mod:`core.tracking_store` (which store, checked at start-up), the only modules of the
suite that import ``mlflow``.

By default runs go to a local sqlite store ``mlflow.db`` with artifacts in ``mlartifacts/``, both in the working
directory, set explicitly (MLflow 3.17 otherwise falls back to an old ``./mlruns`` file store when one exists,
which is in maintenance mode and refuses writes). ``TrackingConfig.tracking_uri`` or ``$MLFLOW_TRACKING_URI``
point elsewhere (e.g. an ``http://`` server). Only rank 0 logs; other ranks get a disabled tracker.
Metric keys are ``split/name`` (``train/recon_loss``, ``val/psnr``).

Failure modes handled here: the store is checked at start-up (:func:`~core.tracking_store.check_tracking`,
re-exported here) and any failure is one :class:`~core.errors.RunError` naming the store; every open run is
registered, so that :func:`end_open_runs` marks runs that a crash or signal interrupted ``FAILED`` / ``KILLED``
instead of leaving them ``RUNNING``; a resumed run never logs a (key, step) pair it already holds. Every experiment
carries the tag ``mlflow.experimentKind = custom_model_development``, so MLflow 3's UI opens it as a model-training
experiment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from core import distributed
from core.config import TrackingConfig, flatten
from core.errors import RunError
from core.tracking_store import check_tracking, open_experiment, resolve_tracking_uri

__all__ = ["Tracker", "check_tracking", "child_runs_of", "end_open_runs", "git_commit", "mark_interrupted",
           "open_runs", "resolve_tracking_uri", "stage_run_name", "stage_tracker", "using_tracking_uri"]

_MAX_PARAM_CHARS = 6000
_OPEN: dict[str, "Tracker"] = {}  # run id → tracker of the runs this process has open
_PARENT: list[str] = []  # the sweep run new runs are children of (innermost last)


@contextlib.contextmanager
def child_runs_of(parent_run_id: str | None) -> Iterator[None]:
    """Runs created inside the block are child runs of ``parent_run_id`` (MLflow tag ``mlflow.parentRunId``), so
    the UI groups them under it (see :mod:`core.sweep`). ``None`` (tracking disabled): no effect."""
    if parent_run_id:
        _PARENT.append(parent_run_id)
    try:
        yield
    finally:
        if parent_run_id:
            _PARENT.pop()


@contextlib.contextmanager
def _logger_level(logger: logging.Logger, level: int) -> Iterator[None]:
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for the block, then restore its global URI and ``$MLFLOW_TRACKING_URI``
    (``mlflow.set_tracking_uri`` also exports the variable, which would steer every later run in the process)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    previous, env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        utils._tracking_uri = previous
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def open_runs() -> set[str]:
    """Ids of the runs this process has open (created or resumed, not yet ended)."""
    return set(_OPEN)


def end_open_runs(status: str, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """End every run this process still has open, except ``keep`` (e.g. a sweep's parent, opened before), with
    ``status`` (``FAILED`` after an error, ``KILLED`` after an interrupt or signal); returns their ids. Called by the
    stage layer when a stage raises."""
    ended = []
    for run_id, tracker in list(_OPEN.items()):
        if run_id in keep:
            continue
        with contextlib.suppress(Exception):  # the store itself may be what failed
            tracker.end(status)
        _OPEN.pop(run_id, None)
        ended.append(run_id)
    return ended


def mark_interrupted(cfg: TrackingConfig, run_id: str | None) -> bool:
    """Mark run ``run_id`` ``KILLED`` if it is still ``RUNNING`` — a run killed without a chance to say so
    (``kill -9``, power loss) whose checkpoint a fresh run is about to replace. Returns whether it was marked."""
    if not run_id or not cfg.enabled or not distributed.is_main_process():
        return False
    client, _ = open_experiment(resolve_tracking_uri(cfg.tracking_uri), cfg.experiment_name)
    try:
        run = client.get_run(run_id)
    except Exception:  # another store, or a deleted run: nothing to mark
        return False
    if run.info.status != "RUNNING":
        return False
    client.set_terminated(run_id, status="KILLED")
    return True


def git_commit() -> str:
    """Commit of the working tree the code runs from, or "unknown"."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracker:
    """One MLflow run, logged through an explicit ``MlflowClient`` (no global active run).

    Args:
        cfg: tracking settings.
        run_id: continue this run (resume) instead of creating a new one; metrics at (key, step) pairs the run
            already holds are not logged again.

    Raises:
        RunError: if the store cannot be used (see :func:`check_tracking`).
    """

    def __init__(self, cfg: TrackingConfig, run_id: str | None = None):
        self.enabled = cfg.enabled and distributed.is_main_process()
        self.uri = resolve_tracking_uri(cfg.tracking_uri)
        self.run_id = run_id
        self.experiment_id: str | None = None
        if not self.enabled:
            return
        self._client, self.experiment_id = open_experiment(self.uri, cfg.experiment_name)
        self._logged: set[tuple[str, int]] = set()  # (key, step) pairs a resumed run already holds
        if run_id is None:
            tags = {"mlflow.parentRunId": _PARENT[-1]} if _PARENT else {}  # inside child_runs_of: a child run
            run = self._client.create_run(self.experiment_id, run_name=cfg.run_name or None, tags=tags)
            self.run_id = run.info.run_id
        else:
            self._client.update_run(run_id, status="RUNNING")
            for key in self._client.get_run(run_id).data.metrics:
                self._logged.update((key, m.step) for m in self._client.get_metric_history(run_id, key))
        _OPEN[self.run_id] = self

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters (values stringified and cut to MLflow's limit)."""
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:_MAX_PARAM_CHARS]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[start:start + 100])

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags on the run (values stringified), e.g. what a resume changed."""
        if self.enabled:
            for key, value in tags.items():
                self._client.set_tag(self.run_id, key, str(value)[:_MAX_PARAM_CHARS])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log scalar metrics at ``step`` in one batch (keys like ``train/loss``)."""
        if not self.enabled or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if (k, step) not in self._logged]
        if items:
            self._client.log_batch(self.run_id, metrics=items)
        self._logged.update((k, step) for k in metrics)

    def log_table(self, columns: dict[str, list[Any]], artifact_file: str) -> None:
        """Log a table (column name → values, all of one length) as a JSON artifact the UI shows as a table."""
        if self.enabled:
            self._client.log_table(self.run_id, data=columns, artifact_file=artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log a text artifact (Markdown, CSV, …)."""
        if self.enabled:
            self._client.log_text(self.run_id, text, artifact_file)

    def child_metric_history(self, name_suffix: str, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of metric ``key`` of this run's child run whose name ends with ``name_suffix`` (the
        newest such child); empty if there is none."""
        if not self.enabled:
            return []
        for child in self._child_runs(self.run_id, "DESC"):
            if (child.info.run_name or "").endswith(name_suffix):
                return [(m.step, m.value) for m in self._client.get_metric_history(child.info.run_id, key)]
        return []

    def _child_runs(self, parent_run_id: str, order: str) -> list[Any]:
        """Runs of this experiment whose parent is ``parent_run_id``, by start time (``ASC`` or ``DESC``)."""
        return self._client.search_runs([self.experiment_id],
                                        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                        order_by=[f"attributes.start_time {order}"])

    def register_child_models(self, parent_run_id: str, name: str, tags: dict[str, str]) -> list[tuple[str, str]]:
        """Register every logged model of ``parent_run_id``'s child runs (a sweep variant's stage runs) as a new
        version of ``<name>-<stage>`` (``stage``: the logged model's tag) with ``tags``.

        Returns:
            ``(registered model name, version)`` pairs, in the order the stage runs started; empty when disabled.
        """
        if not self.enabled:
            return []
        import mlflow

        registered = []
        with using_tracking_uri(self.uri):
            for child in self._child_runs(parent_run_id, "ASC"):
                for model in self._client.search_logged_models(
                        [child.info.experiment_id], filter_string=f"source_run_id = '{child.info.run_id}'"):
                    version = mlflow.register_model(model.model_uri, f"{name}-{model.tags.get('stage', 'model')}",
                                                    tags=tags)
                    registered.append((version.name, str(version.version)))
        return registered

    def log_image(self, image: np.ndarray, artifact_file: str) -> None:
        """Log an ``[H, W, 3]`` uint8 (or float in [0, 1]) image as a PNG artifact."""
        if self.enabled:
            self._client.log_image(self.run_id, image, artifact_file=artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure as an artifact."""
        if self.enabled:
            self._client.log_figure(self.run_id, figure, artifact_file=artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a local file (wav, gif, yaml, …) into the run's artifacts."""
        if self.enabled:
            self._client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def log_pytorch_model(self, module: Any, inputs: dict[str, Any], dynamic: tuple[tuple[int, ...], ...],
                          output_dynamic: tuple[int, ...], *, params: dict[str, Any], tags: dict[str, str],
                          registered_name: str = "") -> str | None:
        """Log ``module`` (in eval mode) as this run's MLflow model ``model`` with ``mlflow.pytorch`` in the "pt2"
        format (``torch.export``; loading never unpickles), ``inputs`` (by name, in call order) as the input
        example, a tensor signature whose ``dynamic`` axes are -1, ``params`` and ``tags`` on the logged model, and, with
        ``registered_name``, a new version of that registered model. Returns the model URI (None when disabled).

        Raises:
            whatever ``torch.export`` raises for a module it cannot trace.
        """
        if not self.enabled:
            return None
        import mlflow
        import torch

        from core.export import tensor_signature

        signature = tensor_signature(module, inputs, dynamic, output_dynamic)
        # torch.export's shape solver logs internal notes as warnings; they are not the user's concern
        solver = logging.getLogger("torch.fx.experimental.symbolic_shapes")
        # start_run ends the run FINISHED on leaving; it is set back to RUNNING, and end() sets its real status
        with using_tracking_uri(self.uri), _logger_level(solver, logging.ERROR), mlflow.start_run(run_id=self.run_id):
            info = mlflow.pytorch.log_model(
                module, name="model", input_example=tuple(inputs.values()), signature=signature,
                serialization_format="pt2",
                params={k: str(v)[:_MAX_PARAM_CHARS] for k, v in params.items()}, tags=tags,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
                registered_model_name=registered_name or None)
        self._client.update_run(self.run_id, status="RUNNING")
        return info.model_uri

    def end(self, status: str = "FINISHED") -> None:
        """Close the run with ``FINISHED``, ``FAILED`` or ``KILLED``."""
        if self.enabled:
            self._client.set_terminated(self.run_id, status=status)
            _OPEN.pop(self.run_id, None)

    def ui_command(self) -> str:
        """The shell command that opens the MLflow UI on this run's store, and where to look."""
        if not self.enabled:
            return "tracking disabled"
        if self.uri.startswith(("http://", "https://")):
            return f"open {self.uri}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return (f"mlflow ui --backend-store-uri {self.uri} --port 5000   "
                f"# then open http://127.0.0.1:5000/#/experiments/{self.experiment_id}/runs/{self.run_id}")


def stage_run_name(tracking_cfg: TrackingConfig, stage: str) -> str:
    """The MLflow run name of a stage: ``<tracking.run_name or a timestamp>-<stage>``, the same for every domain."""
    return f"{tracking_cfg.run_name or time.strftime('%Y%m%d-%H%M%S')}-{stage}"


def stage_tracker(tracking_cfg: TrackingConfig, stage: str, config: Any, params: dict[str, Any] | None = None) -> Tracker:
    """The MLflow run of a stage that does not train (sampling, conversion, probing, generation).

    It is named by :func:`stage_run_name` and logs, as every training stage does, the resolved config flattened to
    dotted keys, the git commit and the stage name, plus ``params`` (the stage's derived values).
    """
    tracker = Tracker(dataclasses.replace(tracking_cfg, run_name=stage_run_name(tracking_cfg, stage)))
    tracker.log_params({**flatten(config), "stage": stage, "git_commit": git_commit(), **(params or {})})
    return tracker
