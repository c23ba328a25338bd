"""Sweeps: parsing, variants, and one parent run with one child per variant that compares them."""

import json
from dataclasses import dataclass, field

import pytest
from mlflow.tracking import MlflowClient

from core.config import ConfigError, TrackingConfig, TrainConfig
from core.errors import RunError
from core.stages import DomainSpec, StageContext
from core.sweep import parse_sweeps, run_sweep, variant_name, variants
from core.tracking import Tracker


def test_parse_and_expand_sweeps():
    sweeps = parse_sweeps(["quantizer.kind=vq,ema", "train.seed=0,1,2"])
    assert sweeps == [("quantizer.kind", ["vq", "ema"]), ("train.seed", ["0", "1", "2"])]
    combos = variants(sweeps)
    assert len(combos) == 6 and combos[1] == {"quantizer.kind": "vq", "train.seed": "1"}
    assert variant_name(combos[1]) == "kind=vq,seed=1"
    for bad in (["quantizer.kind"], ["quantizer.kind="], ["a=1,,2"], ["a=1,1"], ["a=1", "a=2"]):
        with pytest.raises(ConfigError):
            parse_sweeps(bad)


@dataclass
class _Cfg:
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def _train(ctx: StageContext) -> dict[str, float]:
    """A toy training stage: its held-out 'psnr' curve is a function of the seed."""
    tracker = Tracker(TrackingConfig(**{**ctx.cfg.tracking.__dict__, "run_name": ctx.cfg.tracking.run_name + "-vqvae"}))
    if ctx.cfg.train.seed == 13:
        raise RunError("seed 13 diverged")  # its stage run is ended FAILED, the sweep's runs stay open
    if ctx.cfg.train.seed == 99:
        raise KeyboardInterrupt
    for step in (1, 2, 3):
        tracker.log_metrics({"val/psnr": 10.0 * step + ctx.cfg.train.seed}, step)
    tracker.end()
    return {"psnr": 30.0 + ctx.cfg.train.seed}


SPEC = DomainSpec(name="toy", config_class=_Cfg, stages={"vqvae": _train}, summary_metrics=("psnr",))


def test_a_sweep_is_one_parent_with_a_child_per_variant_and_a_comparison(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = run_sweep(SPEC, None, [f"tracking.tracking_uri={uri}", "tracking.run_name=s"], ["train.seed=1,2"])
    assert results == {"seed=1": {"psnr": 31.0}, "seed=2": {"psnr": 32.0}}
    assert (tmp_path / "outputs" / "run" / "sweep" / "seed=2").is_dir()  # each variant in its own folder

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("vqvae")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"s-sweep", "s-seed=1", "s-seed=2", "s-seed=1-vqvae", "s-seed=2-vqvae"}
    parent = runs["s-sweep"].info.run_id
    assert {runs[n].data.tags["mlflow.parentRunId"] for n in ("s-seed=1", "s-seed=2")} == {parent}
    assert runs["s-seed=2-vqvae"].data.tags["mlflow.parentRunId"] == runs["s-seed=2"].info.run_id
    assert runs["s-seed=2"].data.params["train.seed"] == "2" and runs["s-seed=2"].data.metrics["val/psnr"] == 32.0
    assert runs["s-sweep"].data.metrics["seed_2/val/psnr"] == 32.0

    table = json.loads((tmp_path / "mlartifacts" / parent / "artifacts" / "comparison.json").read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [(r["variant"], r["train_seed"], r["psnr"]) for r in rows] == [("seed=1", "1", 31.0), ("seed=2", "2", 32.0)]
    markdown = (tmp_path / "mlartifacts" / parent / "artifacts" / "comparison.md").read_text()
    assert "| seed=2 | finished | 32 |" in markdown
    assert (tmp_path / "mlartifacts" / parent / "artifacts" / "comparison_val_psnr.png").stat().st_size > 1000


def test_a_bad_variant_fails_before_any_work_and_a_failing_one_does_not_stop_the_others(tmp_path, monkeypatch):
    from core.tracking import open_runs

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ConfigError, match="train.seed: expected int"):
        run_sweep(SPEC, None, [f"tracking.tracking_uri={uri}"], ["train.seed=1,x"])
    assert not (tmp_path / "outputs").exists()
    with pytest.raises(RunError, match="sweep variants failed: seed=13: RunError: seed 13 diverged"):
        run_sweep(SPEC, None, [f"tracking.tracking_uri={uri}", "tracking.run_name=f"], ["train.seed=13,3"])
    client = MlflowClient(uri)
    runs = {r.info.run_name: r.info.status
            for r in client.search_runs([client.get_experiment_by_name("vqvae").experiment_id])}
    assert runs == {"f-sweep": "FAILED", "f-seed=13": "FAILED", "f-seed=13-vqvae": "FAILED", "f-seed=3": "FINISHED",
                    "f-seed=3-vqvae": "FINISHED"}
    assert open_runs() == set()


def test_an_interrupted_sweep_ends_its_parent_variant_and_stage_runs_killed(tmp_path, monkeypatch):
    from core.tracking import open_runs

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SPEC, None, [f"tracking.tracking_uri={uri}", "tracking.run_name=k"], ["train.seed=99,1"])
    client = MlflowClient(uri)
    runs = {r.info.run_name: r.info.status
            for r in client.search_runs([client.get_experiment_by_name("vqvae").experiment_id])}
    assert runs == {"k-sweep": "KILLED", "k-seed=99": "KILLED", "k-seed=99-vqvae": "KILLED"}
    assert open_runs() == set()


def _train_and_log_model(ctx: StageContext) -> dict[str, float]:
    """The toy stage, logging a model like a training stage does (registered when tracking.register_model is set)."""
    import torch

    tracking = ctx.cfg.tracking
    tracker = Tracker(TrackingConfig(**{**tracking.__dict__, "run_name": tracking.run_name + "-vqvae"}))
    tracker.log_pytorch_model(torch.nn.Linear(2, 1), {"x": torch.zeros(3, 2)}, ((0,),), (0,), params={},
                              tags={"stage": "vqvae"},
                              registered_name=f"{tracking.register_model}-vqvae" if tracking.register_model else "")
    tracker.end()
    return {"psnr": 30.0 + ctx.cfg.train.seed, "recon_loss": 1.0 / ctx.cfg.train.seed}


def test_a_sweep_registers_only_its_best_variant_by_the_named_metric(tmp_path, monkeypatch):
    from core.sweep import best_variant, parse_register_best

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = DomainSpec(name="toy", config_class=_Cfg, stages={"vqvae": _train_and_log_model}, summary_metrics=("psnr",))
    base = [f"tracking.tracking_uri={uri}", "tracking.register_model=toy"]
    for bad in ("psnr", "psnr:best", ":max"):
        with pytest.raises(ConfigError, match="METRIC:max or METRIC:min"):
            run_sweep(spec, None, base, ["train.seed=1,2"], register_best=bad)
    with pytest.raises(ConfigError, match="needs tracking.register_model"):
        run_sweep(spec, None, base[:1], ["train.seed=1,2"], register_best="psnr:max")
    assert not (tmp_path / "outputs").exists()  # refused before any work
    assert parse_register_best("convert/wer:min") == ("convert/wer", "min")
    results = {"a": {"psnr": 3.0}, "b": {"psnr": 5.0}, "c": {"mse": 1.0}}
    assert best_variant(results, "psnr", "max") == "b" and best_variant(results, "psnr", "min") == "a"
    with pytest.raises(RunError, match="no variant reported 'ssim'; their metrics: mse, psnr"):
        best_variant(results, "ssim", "max")

    run_sweep(spec, None, base + ["tracking.run_name=s"], ["train.seed=1,3,2"], register_best="psnr:max")
    client = MlflowClient(uri)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("vqvae").experiment_id])}
    versions = client.search_model_versions("name = 'toy-vqvae'")
    assert len(versions) == 1  # the variants registered nothing themselves
    assert versions[0].run_id == runs["s-seed=3-vqvae"].info.run_id  # psnr 33, the highest
    assert versions[0].tags == {"sweep_run_id": runs["s-sweep"].info.run_id, "variant": "seed=3", "psnr": "33"}
    assert runs["s-sweep"].data.tags["best_variant"] == "seed=3"

    run_sweep(spec, None, base + ["tracking.run_name=m"], ["train.seed=1,3"], register_best="recon_loss:min")
    newest = max(client.search_model_versions("name = 'toy-vqvae'"), key=lambda v: int(v.version))
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("vqvae").experiment_id])}
    assert int(newest.version) == 2 and newest.run_id == runs["m-seed=3-vqvae"].info.run_id
