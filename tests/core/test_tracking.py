"""The MLflow wrapper: URI resolution, a run's params, metrics and artifacts, resuming a run."""

import os
from dataclasses import dataclass, field

import numpy as np
from mlflow.tracking import MlflowClient

from core.config import TrackingConfig, TrainConfig
from core.tracking import (
    Tracker,
    git_commit,
    resolve_tracking_uri,
    stage_run_name,
    stage_tracker,
)


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


def test_logging_a_model_leaves_the_process_tracking_uri_as_it_was(tmp_path, monkeypatch):
    import mlflow
    import torch

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    before = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    tracker = Tracker(TrackingConfig(tracking_uri=uri, experiment_name="t"))
    model_uri = tracker.log_pytorch_model(torch.nn.Linear(2, 1), {"x": torch.zeros(3, 2)}, ((0,),), (0,),
                                          params={}, tags={})
    tracker.end()
    assert model_uri and MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.status == "FINISHED"
    assert "MLFLOW_TRACKING_URI" not in os.environ and mlflow.get_tracking_uri() == before
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"  # a later run's default


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


# ------------------------------------------------------------------ failure modes


def _uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_experiments_open_as_model_training_experiments(tmp_path):
    tracker = Tracker(TrackingConfig(tracking_uri=_uri(tmp_path), experiment_name="kinds"))
    tracker.end()
    experiment = MlflowClient(_uri(tmp_path)).get_experiment(tracker.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_a_resumed_run_logs_no_key_step_pair_twice(tmp_path):
    cfg = TrackingConfig(tracking_uri=_uri(tmp_path))
    first = Tracker(cfg)
    for step in (1, 2, 3, 4):
        first.log_metrics({"train/loss": float(step)}, step)
    run_id = first.run_id  # killed here; the checkpoint was at step 2
    resumed = Tracker(cfg, run_id=run_id)
    for step in (3, 4, 5):
        resumed.log_metrics({"train/loss": 10.0 + step, "val/psnr": 1.0}, step)
    resumed.log_metrics({"val/psnr": 2.0}, 5)  # the same pair again within one run
    resumed.end()
    client = MlflowClient(_uri(tmp_path))
    loss = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))
    assert loss == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 15.0)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val/psnr")] == [(3, 1.0), (4, 1.0), (5, 1.0)]


def test_interrupted_runs_are_ended_killed_or_failed_not_left_running(tmp_path):
    from core.tracking import end_open_runs, mark_interrupted

    cfg = TrackingConfig(tracking_uri=_uri(tmp_path))
    a, b = Tracker(cfg), Tracker(cfg)
    b.end()
    assert end_open_runs("KILLED") == [a.run_id]
    client = MlflowClient(_uri(tmp_path))
    assert client.get_run(a.run_id).info.status == "KILLED" and client.get_run(b.run_id).info.status == "FINISHED"
    orphan = Tracker(cfg)  # a run whose process was killed -9: nobody ended it
    from core import tracking

    tracking._OPEN.clear()
    assert client.get_run(orphan.run_id).info.status == "RUNNING"
    assert mark_interrupted(cfg, orphan.run_id) and client.get_run(orphan.run_id).info.status == "KILLED"
    assert not mark_interrupted(cfg, b.run_id)  # finished runs stay as they are


def test_an_unreachable_or_silent_server_fails_fast_with_one_message(tmp_path, monkeypatch):
    import socket
    import time

    import pytest

    from core import tracking, tracking_store
    from core.errors import RunError

    monkeypatch.setattr(tracking_store, "CONNECT_TIMEOUT_S", 0.5)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts connections, never answers
    port = silent.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(RunError, match=f"http://127.0.0.1:{port} did not answer within 0.5 s"):
        tracking.check_tracking(TrackingConfig(tracking_uri=f"http://127.0.0.1:{port}"))
    silent.close()
    with pytest.raises(RunError, match="did not answer"):
        tracking.check_tracking(TrackingConfig(tracking_uri=f"http://127.0.0.1:{port}"))  # now closed: refused
    assert time.perf_counter() - start < 10
    assert tracking.check_tracking(TrackingConfig(tracking_uri=f"http://127.0.0.1:{port}", enabled=False))


def test_a_corrupt_store_is_named(tmp_path):
    import pytest

    from core.errors import RunError
    from core.tracking import check_tracking

    (tmp_path / "mlflow.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RunError, match=f"cannot use the MLflow store {_uri(tmp_path)}.*not a database"):
        check_tracking(TrackingConfig(tracking_uri=_uri(tmp_path)))


CREATE_IN_CHILD = """
import sys
from core.config import TrackingConfig
from core.tracking import Tracker
Tracker(TrackingConfig(tracking_uri=sys.argv[1], experiment_name="race")).end()
"""


def test_runs_started_together_on_a_fresh_store_all_succeed(tmp_path):
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    children = [subprocess.Popen([sys.executable, "-c", CREATE_IN_CHILD, _uri(tmp_path)], cwd=root,
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [c.communicate()[1] for c in children]
    assert [c.returncode for c in children] == [0, 0, 0], errors
    client = MlflowClient(_uri(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3
