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
