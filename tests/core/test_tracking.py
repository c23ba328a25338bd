"""The MLflow wrapper: URI resolution, a run's params, metrics and artifacts, resuming a run."""

from dataclasses import dataclass, field

import numpy as np
from mlflow.tracking import MlflowClient

from core.config import TrackingConfig, TrainConfig
from core.tracking import Tracker, git_commit, resolve_tracking_uri, stage_run_name, stage_tracker


@dataclass
class ExampleConfig:
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


def test_a_run_logs_params_metrics_and_artifacts_beside_its_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(tracking_uri=uri, experiment_name="t", run_name="r"))
    tracker.log_params({"quantizer.beta": 0.25})
    tracker.log_metrics({"train/loss": 1.5}, step=3)
    tracker.log_image(np.zeros((4, 4, 3), np.uint8), "grid/a.png")
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    tracker.log_artifact(wav, "audio")
    tracker.end()
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.run_id)
    assert run.info.run_name == "r" and run.info.status == "FINISHED"
    assert run.data.params == {"quantizer.beta": "0.25"} and run.data.metrics == {"train/loss": 1.5}
    assert {a.path for a in client.list_artifacts(tracker.run_id)} == {"audio", "grid"}
    assert (tmp_path / "mlartifacts").is_dir()
    assert "mlflow ui --backend-store-uri " + uri in tracker.ui_command()

    resumed = Tracker(TrackingConfig(tracking_uri=uri, experiment_name="t"), run_id=tracker.run_id)
    assert client.get_run(resumed.run_id).info.status == "RUNNING"
    resumed.end("KILLED")
    assert client.get_run(tracker.run_id).info.status == "KILLED"


def test_disabled_tracker_logs_nothing(tmp_path):
    tracker = Tracker(TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", enabled=False))
    tracker.log_metrics({"a": 1.0}, 0)
    tracker.end()
    assert tracker.run_id is None and not (tmp_path / "mlflow.db").exists()


def test_a_stage_tracker_logs_the_config_commit_and_stage_like_a_training_stage(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = TrackingConfig(tracking_uri=uri, experiment_name="t", run_name="run7")
    config = ExampleConfig(train=TrainConfig(steps=9), tracking=tracking)
    tracker = stage_tracker(tracking, "sample", config, {"derived.vqvae_hash": "abc"})
    tracker.end()
    run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
    assert run.info.run_name == "run7-sample" == stage_run_name(tracking, "sample")
    params = run.data.params
    assert params["train.steps"] == "9" and params["stage"] == "sample" and params["derived.vqvae_hash"] == "abc"
    assert params["git_commit"] == git_commit()
