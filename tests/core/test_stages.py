"""The stage layer: comma lists, plans, shared things built once, validation before any work."""

from dataclasses import dataclass, field

import pytest

from core.config import TrackingConfig, TrainConfig
from core.stages import DomainSpec, StageContext, parse_stages, run_domain


@dataclass
class _Cfg:
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(enabled=False))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the runs hold (and create) train.output_dir under the working directory


def _spec(log, **kw):
    def stage(name):
        def run(ctx: StageContext):
            data = ctx.shared("data", lambda: log.append("built") or [1, 2])
            log.append(name)
            return {f"{name}/items": float(len(data)), "last": name}
        return run
    return DomainSpec(name="toy", config_class=_Cfg, stages={n: stage(n) for n in ("a", "b", "c")}, **kw)


def test_all_runs_the_default_order_and_shared_things_are_built_once():
    log = []
    metrics = run_domain(_spec(log, all_stages=("a", "c")), None, ["train.steps=3"])
    assert log == ["built", "a", "c"] and metrics == {"a/items": 2.0, "c/items": 2.0, "last": "c"}


def test_a_comma_list_runs_in_the_order_given():
    log = []
    run_domain(_spec(log), None, [], stage="c,a")
    assert log == ["built", "c", "a"]


def test_validation_and_unknown_stages_fail_before_any_work():
    log = []

    def refuse(requested, ctx):
        if "b" in requested and not ctx.options.get("ok"):
            raise ValueError("b needs ok")

    with pytest.raises(ValueError, match="b needs ok"):
        run_domain(_spec(log, validate=refuse), None, [], stage="a,b")
    with pytest.raises(ValueError, match="unknown stage 'd'; known stages: all, a, b, c"):
        run_domain(_spec(log), None, [], stage="a,d")
    assert log == []
    assert run_domain(_spec(log, validate=refuse), None, [], stage="b", ok=True)["last"] == "b"
    with pytest.raises(ValueError, match="empty"):
        parse_stages(" , ", ("all", "a"))


# ------------------------------------------------------------------ checks before any work


def _checkpoint(stage, **config_overrides):
    """A checkpoint of toy stage ``stage`` under the default output folder, with the config it was trained on."""
    import torch

    from core.checkpoint import save_checkpoint, stage_checkpoint
    from core.config import load_config, to_dict

    cfg = load_config(_Cfg, None, [f"{k}={v}" for k, v in config_overrides.items()])
    save_checkpoint(stage_checkpoint(cfg.train.output_dir, stage), model=torch.nn.Linear(1, 1), optimizer=None,
                    step=1, config=to_dict(cfg))


def test_a_stage_whose_prerequisite_is_missing_fails_before_any_work():
    from core.checkpoint import stage_checkpoint

    log = []
    needs_a = {"b": lambda cfg: {"a": stage_checkpoint(cfg.train.output_dir, "a")}}
    with pytest.raises(FileNotFoundError, match="--stage b needs the a stage's checkpoint .*a/checkpoints/latest.pt"):
        run_domain(_spec(log, requires=needs_a), None, [], stage="c,b")
    assert log == []
    run_domain(_spec(log, requires=needs_a), None, [], stage="a,b")  # a runs first: fine
    _checkpoint("a")
    run_domain(_spec(log, requires=needs_a), None, [], stage="b")  # a trained before: fine
    assert log == ["built", "a", "b", "built", "b"]


def test_resume_needs_something_to_resume_and_the_same_experiment():
    from core.config import ConfigError
    from core.errors import RunError

    log = []
    with pytest.raises(RunError, match="--resume: no checkpoint of a, c under outputs/run.*--resume-if-present"):
        run_domain(_spec(log), None, [], stage="a,c", resume=True)
    run_domain(_spec(log), None, [], stage="a", resume_if_present=True)  # nothing there: starts fresh
    _checkpoint("a", **{"train.lr": 0.001})
    with pytest.raises(ConfigError, match=r"--resume of stage a .*train.lr: 0.001 → 0.002.*start a new run"):
        run_domain(_spec(log), None, ["train.lr=0.002"], stage="a", resume=True)
    assert log == ["built", "a"]
    run_domain(_spec(log), None, ["train.lr=0.001", "train.steps=99", "tracking.run_name=again"], stage="a",
               resume=True)  # longer, renamed: allowed
    assert log[-1] == "a"


def test_a_failing_stage_ends_the_runs_it_left_open_as_failed(tmp_path):
    from mlflow.tracking import MlflowClient

    from core.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    opened = []

    def crash(ctx):
        opened.append(Tracker(ctx.cfg.tracking).run_id)
        raise RuntimeError("boom")

    def interrupted(ctx):
        opened.append(Tracker(ctx.cfg.tracking).run_id)
        raise KeyboardInterrupt

    spec = DomainSpec(name="toy", config_class=_Cfg, stages={"crash": crash, "interrupted": interrupted})
    overrides = [f"tracking.tracking_uri={uri}", "tracking.enabled=true"]
    with pytest.raises(RuntimeError, match="boom"):
        run_domain(spec, None, overrides, stage="crash")
    with pytest.raises(KeyboardInterrupt):
        run_domain(spec, None, overrides, stage="interrupted")
    client = MlflowClient(uri)
    assert [client.get_run(r).info.status for r in opened] == ["FAILED", "KILLED"]


def test_a_second_run_on_the_same_output_folder_is_refused_at_once():
    from core.errors import RunError

    log = []

    def nested(ctx):
        log.append("outer")
        run_domain(_spec(log), None, [], stage="a")

    spec = DomainSpec(name="toy", config_class=_Cfg, stages={"outer": nested})
    with pytest.raises(RunError, match="is using train.output_dir outputs/run"):
        run_domain(spec, None, [], stage="outer")
    assert log == ["outer"]
    run_domain(_spec(log), None, [], stage="a")  # released when the first run ended
    assert log[-1] == "a"
