"""The base training loop: checkpoints, tracking, exact resume, non-finite loss."""

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch.utils.data import TensorDataset

from core.checkpoint import read_checkpoint
from core.config import TrackingConfig, TrainConfig
from core import precision
from core.precision import native_bf16, training_precision
from core.optim import learning_rate, parameter_groups
from core.trainer import NonFiniteLossError, Trainer


class Regression(Trainer):
    """Fits y = x·w with a tiny linear model; ``poison_at`` makes the loss NaN from that step on."""

    poison_at = None

    def compute_loss(self, batch):
        x, y = batch
        loss = (self.model(x) - y).square().mean()
        if self.poison_at is not None and self.step + 1 >= self.poison_at:
            loss = loss * float("nan")
        return {"loss": loss}

    @torch.no_grad()
    def evaluate(self):
        x, y = self.train_dataset.tensors
        return {"mse": float((self.model(x) - y).square().mean())}


def _dataset():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5]]))


def _trainer(tmp_path, steps=12, **kw):
    cfg = TrainConfig(steps=steps, batch_size=8, lr=0.05, eval_every=4, log_every=2, checkpoint_every=4, seed=1,
                      device="cpu", output_dir=str(tmp_path / "out"), **kw)
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment_name="t")
    torch.manual_seed(123)
    return Regression(torch.nn.Linear(3, 1), _dataset(), cfg, tracking, config={"train": {"steps": steps}})


def test_fit_trains_checkpoints_and_tracks(tmp_path):
    trainer = _trainer(tmp_path)
    before = trainer.evaluate()["mse"]
    metrics = trainer.fit()
    assert metrics["mse"] < 0.5 * before
    payload = read_checkpoint(trainer.checkpoint_path)
    assert payload["step"] == 12 and payload["mlflow_run_id"] == trainer.tracker.run_id
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(trainer.tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.steps"] == "12" and "git_commit" in run.data.params
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [2, 4, 6, 8, 10, 12]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/mse")] == [4, 8, 12]


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    full = _trainer(tmp_path / "a")
    full.fit()

    part = _trainer(tmp_path / "b", steps=8)  # "killed" after the step-8 checkpoint
    part.fit()
    resumed = _trainer(tmp_path / "b", steps=12)
    with torch.no_grad():  # the resumed process starts from other weights; the checkpoint must win
        resumed.model.weight.fill_(7.0)
    resumed.fit(resume=True)
    assert resumed.step == 12
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.tracker.run_id == part.tracker.run_id


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        _trainer(tmp_path).fit(resume=True)


def test_fresh_run_replaces_a_checkpoint_it_cannot_read(tmp_path, capsys):
    import numpy as np

    trainer = _trainer(tmp_path)
    trainer.checkpoint_path.parent.mkdir(parents=True)
    torch.save({"model": {}, "step": 3, "config": {}, "rng": np.zeros(3)}, trainer.checkpoint_path)  # an older format
    with pytest.raises(ValueError, match="was refused"):
        _trainer(tmp_path).fit(resume=True)  # resuming from it stays an error
    trainer.fit()
    assert "existing checkpoint could not be read and is replaced" in capsys.readouterr().out
    assert read_checkpoint(trainer.checkpoint_path)["step"] == 12


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.poison_at = 6
    with pytest.raises(NonFiniteLossError, match="step 6.*last good checkpoint"):
        trainer.fit()
    assert read_checkpoint(trainer.checkpoint_path)["step"] == 4
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(trainer.tracker.run_id).info.status == "FAILED"


def test_learning_rate_schedule_is_a_pure_function_of_the_step():
    assert learning_rate(0, 1e-3, 0) == 1e-3
    assert learning_rate(0, 1e-3, 4) == pytest.approx(2.5e-4)
    assert learning_rate(3, 1e-3, 4) == learning_rate(100, 1e-3, 4) == 1e-3
    assert learning_rate(0, 1e-3, schedule="cosine", total_steps=10) == 1e-3
    assert learning_rate(5, 1e-3, schedule="cosine", total_steps=10) == pytest.approx(5e-4)
    assert learning_rate(10, 1e-3, schedule="cosine", total_steps=10) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="lr_schedule"):
        learning_rate(0, 1e-3, schedule="step")


def test_final_metrics_are_returned_and_logged_even_without_media(tmp_path):
    class WithFinal(Regression):
        def final_metrics(self):
            return {"final_mse": self.evaluate()["mse"] * 2}

    cfg = TrainConfig(steps=4, batch_size=8, eval_every=2, log_every=2, checkpoint_every=2, device="cpu",
                      output_dir=str(tmp_path / "out"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trainer = WithFinal(torch.nn.Linear(3, 1), _dataset(), cfg, TrackingConfig(tracking_uri=uri, experiment_name="t"),
                        config={})
    metrics = trainer.fit()
    assert metrics["final_mse"] == pytest.approx(2 * metrics["mse"])
    assert MlflowClient(tracking_uri=uri).get_run(trainer.tracker.run_id).data.metrics["val/final_mse"] == \
        pytest.approx(metrics["final_mse"])

    off = WithFinal(torch.nn.Linear(3, 1), _dataset(), cfg, TrackingConfig(enabled=False), config={})
    assert "final_mse" in off.fit()


def test_bf16_falls_back_to_fp32_only_on_a_cpu_without_native_bfloat16(monkeypatch, capsys):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert native_bf16(cuda)  # no oneDNN question on CUDA
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert training_precision("bf16", cpu) == "fp32"
    assert "no native bfloat16" in capsys.readouterr().out
    assert training_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert training_precision("bf16", cpu) == "bf16"
    assert capsys.readouterr().out == ""


def test_native_bf16_on_the_cpu_is_onednns_answer(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert not native_bf16(torch.device("cpu"))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert native_bf16(torch.device("cpu"))


def test_lr_scales_give_a_parameter_its_multiple_of_the_scheduled_learning_rate(tmp_path):
    cfg = TrainConfig(steps=1, batch_size=8, lr=0.05, eval_every=1, log_every=1, checkpoint_every=1, device="cpu",
                      output_dir=str(tmp_path / "out"))
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    model.lr_scales = {"bias": 10.0}
    weight, bias = model.weight.detach().clone(), model.bias.detach().clone()
    trainer = Regression(model, _dataset(), cfg, TrackingConfig(enabled=False), config={})
    assert [g["lr_scale"] for g in trainer.optimizer.param_groups] == [1.0, 10.0]
    trainer.fit()
    # Adam's first step moves every parameter by its learning rate (|m̂ / √v̂| = 1)
    assert (trainer.model.weight.detach() - weight).abs() == pytest.approx(torch.full((1, 3), 0.05), rel=1e-4)
    assert (trainer.model.bias.detach() - bias).abs().item() == pytest.approx(0.5, rel=1e-4)


def test_a_multiple_of_one_adds_no_parameter_group():
    from core.quantize import VectorQuantizer

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), VectorQuantizer(8, 4, beta=0.25))
    assert len(parameter_groups(model)) == 1
    model[1].lr_scales["codebook"] = 30.0
    groups = parameter_groups(model)
    assert [g["lr_scale"] for g in groups] == [1.0, 30.0]
    assert groups[1]["params"] == [model[1].codebook] and len(groups[0]["params"]) == 2
