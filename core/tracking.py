"""MLflow tracking: the only module of the suite that imports ``mlflow``.

By default runs go to a local sqlite store ``mlflow.db`` with artifacts in ``mlartifacts/``, both in the working
directory, set explicitly (MLflow 3.17 otherwise falls back to an old ``./mlruns`` file store when one exists,
which is in maintenance mode and refuses writes). ``TrackingConfig.tracking_uri`` or ``$MLFLOW_TRACKING_URI``
point elsewhere (e.g. an ``http://`` server). Only rank 0 logs; other ranks get a disabled tracker.
Metric keys are ``split/name`` (``train/recon_loss``, ``val/psnr``).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from core import distributed
from core.config import TrackingConfig, flatten

_MAX_PARAM_CHARS = 6000


def resolve_tracking_uri(configured: str = "") -> str:
    """The tracking URI to use: the configured one, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    """Artifact folder beside a local sqlite store (``mlartifacts/``); None lets a server choose."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None


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
        run_id: continue this run (resume) instead of creating a new one.
    """

    def __init__(self, cfg: TrackingConfig, run_id: str | None = None):
        self.enabled = cfg.enabled and distributed.is_main_process()
        self.uri = resolve_tracking_uri(cfg.tracking_uri)
        self.run_id = run_id
        self.experiment_id: str | None = None
        if not self.enabled:
            return
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.uri)
        experiment = self._client.get_experiment_by_name(cfg.experiment_name)
        if experiment is None:
            self.experiment_id = self._client.create_experiment(cfg.experiment_name,
                                                                artifact_location=_artifact_location(self.uri))
        else:
            self.experiment_id = experiment.experiment_id
        if run_id is None:
            run = self._client.create_run(self.experiment_id, run_name=cfg.run_name or None)
            self.run_id = run.info.run_id
        else:
            self._client.update_run(run_id, status="RUNNING")

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters (values stringified and cut to MLflow's limit)."""
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:_MAX_PARAM_CHARS]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log scalar metrics at ``step`` in one batch (keys like ``train/loss``)."""
        if not self.enabled or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self._client.log_batch(self.run_id, metrics=items)

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

    def end(self, status: str = "FINISHED") -> None:
        """Close the run with ``FINISHED``, ``FAILED`` or ``KILLED``."""
        if self.enabled:
            self._client.set_terminated(self.run_id, status=status)

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
