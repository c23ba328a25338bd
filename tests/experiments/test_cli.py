"""The command line as a hostile user meets it: one-line errors, signals, resume, crafted files."""

import os
import signal
from collections import Counter
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from core.checkpoint import read_checkpoint
from experiments import run
from image.vqvae_stage import ImageVQVAETrainer
from tests.crafted import RunsCode

DEBUG = str(Path(run.__file__).resolve().parent / "configs" / "image" / "debug.yaml")


def _args(tmp_path, *extra):
    return ["image", "--config", DEBUG, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            f"train.output_dir={tmp_path / 'out'}", *extra]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_the_suites_errors_are_one_line_with_exit_code_2_and_a_traceback_only_with_debug(tmp_path, capsys):
    assert run.cli(_args(tmp_path, "train.eval_every=0")) == 2
    assert _one_line_error(capsys) == "error: train.eval_every must be >= 1, got 0"
    assert run.cli(_args(tmp_path, "--stage", "prior")) == 2
    assert "needs the vqvae stage's checkpoint" in _one_line_error(capsys)
    assert run.cli(_args(tmp_path, "--resume")) == 2
    assert "no checkpoint of vqvae, prior" in _one_line_error(capsys)
    assert run.cli(_args(tmp_path, "--register-best", "psnr:max")) == 2
    assert "--register-best picks among --sweep variants" in _one_line_error(capsys)
    assert run.cli(_args(tmp_path, "--sweep", "train.seed=1,2", "--register-best", "psnr")) == 2
    assert "must look like METRIC:max or METRIC:min" in _one_line_error(capsys)
    assert run.cli(_args(tmp_path, "prior.temperature=0", "--debug")) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("error: prior.temperature must be > 0, got 0.0")
    assert not (tmp_path / "out" / "vqvae").exists()  # nothing was trained


def test_sigterm_marks_the_run_killed_and_resume_finishes_it_without_duplicate_metrics(tmp_path, monkeypatch, capsys):
    original = ImageVQVAETrainer.compute_loss

    def terminated_at_step_5(self, batch):
        if self.step == 4:  # after the step-3 checkpoint and the step-4 metrics
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch)

    monkeypatch.setattr(ImageVQVAETrainer, "compute_loss", terminated_at_step_5)
    assert run.cli(_args(tmp_path, "--stage", "vqvae")) == 130
    assert "interrupted (signal SIGTERM); continue with --resume" in capsys.readouterr().err
    monkeypatch.setattr(ImageVQVAETrainer, "compute_loss", original)
    ckpt = tmp_path / "out" / "vqvae" / "checkpoints" / "latest.pt"
    run_id = read_checkpoint(ckpt)["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "KILLED"

    assert run.cli(_args(tmp_path, "--stage", "vqvae", "quantizer.beta=0.5", "--resume")) == 2
    assert "quantizer.beta: 0.25 → 0.5" in _one_line_error(capsys)

    assert run.cli(_args(tmp_path, "--stage", "vqvae", "train.steps=7", "--resume")) == 0
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED" and read_checkpoint(ckpt)["step"] == 7
    assert finished.data.tags["resumed_at_step_3.train.steps"] == "6 → 7"
    for key in ("train/loss", "val/psnr"):
        steps = Counter(m.step for m in client.get_metric_history(run_id, key))
        assert steps and max(steps.values()) == 1, (key, steps)
    assert set(Counter(m.step for m in client.get_metric_history(run_id, "train/loss"))) == set(range(1, 8))


def test_a_crafted_checkpoint_given_to_resume_or_to_the_prior_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "code_ran"
    crafted = tmp_path / "out" / "vqvae" / "checkpoints" / "latest.pt"
    crafted.parent.mkdir(parents=True)
    torch.save({"model": {}, "step": 0, "config": {}, "x": RunsCode(marker)}, crafted)
    assert run.cli(_args(tmp_path, "--stage", "vqvae", "--resume")) == 2
    assert "latest.pt was refused" in _one_line_error(capsys)
    assert run.cli(_args(tmp_path, "--stage", "prior", f"prior.vqvae_checkpoint={crafted}")) == 2
    assert "latest.pt was refused" in _one_line_error(capsys)
    assert not marker.exists()


def test_a_full_disk_stops_with_one_line_keeps_the_last_checkpoint_and_resume_continues(tmp_path, monkeypatch,
                                                                                         capsys):
    import errno

    import core.files

    original = core.files.torch.save
    ckpt = tmp_path / "out" / "vqvae" / "checkpoints" / "latest.pt"

    def disk_full_after_step_3(obj, handle):
        if isinstance(obj, dict) and obj.get("step") == 6:  # the second checkpoint: half written, then no space
            handle.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(obj, handle)

    monkeypatch.setattr(core.files.torch, "save", disk_full_after_step_3)
    assert run.cli(_args(tmp_path, "--stage", "vqvae", "tracking.enabled=false")) == 2
    line = _one_line_error(capsys)
    assert f"no space left on device writing {ckpt}" in line and "MiB free" in line
    assert read_checkpoint(ckpt)["step"] == 3  # the previous checkpoint is intact
    assert not list(ckpt.parent.glob(".*.tmp"))  # nothing half-written was left
    monkeypatch.setattr(core.files.torch, "save", original)
    assert run.cli(_args(tmp_path, "--stage", "vqvae", "tracking.enabled=false", "--resume")) == 0
    assert read_checkpoint(ckpt)["step"] == 6
