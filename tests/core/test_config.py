"""Typed YAML configs with dotted overrides."""

import dataclasses
import re
from dataclasses import dataclass, field

import pytest

from core.config import (
    ConfigError,
    QuantizerConfig,
    TrainConfig,
    apply_overrides,
    flatten,
    from_dict,
    load_config,
    stage_train_config,
    to_dict,
)


@dataclass
class Inner:
    rate: float = 0.5
    names: list[str] = field(default_factory=list)


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    steps: int = 3
    flag: bool = False
    label: str = "x"


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_and_dotted_overrides_build_typed_dataclasses(tmp_path):
    path = _write(tmp_path, "inner:\n  rate: 2\n  names: [a, b]\nsteps: 7\n")
    cfg = load_config(Outer, path, ["inner.rate=1e-4", "flag=true", "label=hello world"])
    assert cfg.inner.rate == pytest.approx(1e-4) and isinstance(cfg.inner.rate, float)
    assert cfg.inner.names == ["a", "b"] and cfg.steps == 7 and cfg.flag is True and cfg.label == "hello world"


def test_defaults_without_a_file():
    assert load_config(Outer) == Outer()


@pytest.mark.parametrize("override, key", [("inner.rte=1", "inner.rte"), ("stps=1", "stps")])
def test_unknown_key_is_an_error_naming_it(override, key):
    with pytest.raises(ConfigError, match=f"unknown config key {key}"):
        load_config(Outer, None, [override])


@pytest.mark.parametrize("override, key", [("steps=abc", "steps"), ("steps=1.5", "steps"), ("flag=1", "flag"),
                                           ("inner.rate=fast", "inner.rate"), ("inner=3", "inner")])
def test_wrong_type_is_an_error_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"^{key}: expected"):
        load_config(Outer, None, [override])


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(Outer, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, _write(tmp_path, "inner: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Outer, _write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="key.subkey=value"):
        apply_overrides({}, ["steps"])


def test_round_trip_and_flatten():
    cfg = Outer(inner=Inner(rate=0.1, names=["z"]), steps=9)
    assert from_dict(Outer, to_dict(cfg)) == cfg
    flat = flatten(cfg)
    assert flat["inner.rate"] == 0.1 and flat["steps"] == 9 and "inner" not in flat


def test_quantizer_config_builds_the_selected_kind_only():
    assert "decay" not in QuantizerConfig(kind="vq").build_kwargs()
    assert QuantizerConfig(kind="ema").build_kwargs()["decay"] == 0.99
    assert QuantizerConfig(kind="sq").build_kwargs()["variance"] == "shared"
    with pytest.raises(ConfigError, match="known kinds"):
        QuantizerConfig(kind="rvq").build_kwargs()
    assert TrainConfig().lr == 2e-4


def test_a_config_with_a_base_overrides_it_section_by_section(tmp_path):
    (tmp_path / "default.yaml").write_text("steps: 100\nlabel: y\ninner:\n  rate: 0.25\n  names: [a]\n")
    (tmp_path / "debug.yaml").write_text("base: default.yaml\nsteps: 2\ninner:\n  names: [b]\n")
    cfg = load_config(Outer, tmp_path / "debug.yaml", ["flag=true"])
    assert (cfg.steps, cfg.label, cfg.inner.rate, cfg.inner.names, cfg.flag) == (2, "y", 0.25, ["b"], True)
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="comes back to itself"):
        load_config(Outer, tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(Outer, tmp_path / "c.yaml")


@dataclass
class _Stage:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=7))


@dataclass
class _Run:
    train: TrainConfig = field(default_factory=TrainConfig)
    prior: _Stage = field(default_factory=_Stage)


def test_a_later_stage_takes_folder_and_device_from_the_run_and_rejects_its_own():
    cfg = load_config(_Run, None, ["train.output_dir=out/x", "train.device=cpu", "train.threads=2"])
    stage = stage_train_config(cfg.prior.train, cfg.train)
    assert (stage.steps, stage.output_dir, stage.device, stage.threads) == (7, "out/x", "cpu", 2)
    load_config(_Run, None, ["train.device=cpu", "prior.train.device=cpu"])  # the same value is no conflict
    with pytest.raises(ConfigError, match="prior.train.output_dir cannot differ from train.output_dir"):
        load_config(_Run, None, ["prior.train.output_dir=elsewhere"])
    with pytest.raises(ConfigError, match="prior.train.device cannot differ from train.device"):
        load_config(_Run, None, ["train.device=cpu", "prior.train.device=cuda"])


def test_quantizer_settings_are_read_from_the_chosen_quantizers_signature():
    assert set(QuantizerConfig(kind="vq").build_kwargs()) == {
        "codebook_size", "code_dim", "groups", "beta", "data_init", "dead_code_restart", "restart_every",
        "restart_threshold", "codebook_lr_scale"}
    assert {"decay", "epsilon"} <= set(QuantizerConfig(kind="ema").build_kwargs())
    assert "beta" not in QuantizerConfig(kind="sq").build_kwargs()
    with pytest.raises(ConfigError, match="quantizer.decay is not a setting of quantizer.kind='vq'"):
        QuantizerConfig(kind="vq", decay=0.9).build_kwargs()
    with pytest.raises(ConfigError, match="unknown kind 'rvq'"):
        QuantizerConfig(kind="rvq").build_kwargs()


# ------------------------------------------------------------------ ranges checked when the config loads


@pytest.mark.parametrize("override, message", [
    ("train.steps=0", "train.steps must be >= 1, got 0"),
    ("train.steps=-5", "train.steps must be >= 1, got -5"),
    ("train.eval_every=0", "train.eval_every must be >= 1"),
    ("train.log_every=0", "train.log_every must be >= 1"),
    ("train.checkpoint_every=0", "train.checkpoint_every must be >= 1"),
    ("train.lr=0", "train.lr must be > 0"),
    ("train.lr_schedule=linear", "train.lr_schedule: unknown value 'linear'; known lr_schedules: constant, cosine"),
    ("quantizer.decay=1.0", "quantizer.decay must be < 1"),
])
def test_values_that_could_only_fail_later_are_refused_at_load(override, message):
    from core.config import ConfigError, QuantizerConfig, TrainConfig, load_config

    @dataclasses.dataclass
    class Cfg:
        train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
        quantizer: QuantizerConfig = dataclasses.field(default_factory=QuantizerConfig)

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(Cfg, None, [override])


@pytest.mark.parametrize("domain, override, message", [
    ("image", "data.val_crops=0", "data.val_crops must be >= 1"),
    ("image", "prior.samples=0", "prior.samples must be >= 1"),
    ("image", "prior.temperature=0", "prior.temperature must be > 0"),
    ("image", "prior.train.eval_every=0", "prior.train.eval_every must be >= 1"),
    ("audio", "prior.temperature=0", "prior.temperature must be > 0"),
    ("audio", "data.val_fraction=1", "data.val_fraction must be < 1"),
    ("video", "prior.temperature=0", "prior.temperature must be > 0"),
    ("video", "prior.generated_frames=0", "prior.generated_frames must be >= 1"),
    ("video", "env.backend=dmlab", "known backends: miniworld, vizdoom"),
])
def test_domain_ranges_are_refused_at_load(domain, override, message):
    import importlib

    from core.config import ConfigError, load_config

    cls = {"image": "ImageConfig", "audio": "AudioConfig", "video": "VideoConfig"}[domain]
    config_class = getattr(importlib.import_module(f"{domain}.config"), cls)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(config_class, None, [override])


def test_config_changes_and_what_may_change_on_resume():
    from core.stored_config import config_changes, resumable

    old = {"train": {"steps": 10, "lr": 1e-3}, "prior": {"train": {"steps": 5}, "grid": [8, 8]}}
    new = {"train": {"steps": 20, "lr": 1e-3}, "prior": {"train": {"steps": 5}, "grid": (8, 8)}, "extra": {"x": 1}}
    assert config_changes(old, new) == {"extra.x": (None, 1), "train.steps": (10, 20)}
    assert resumable("train.steps") and resumable("prior.train.steps") and resumable("tracking.run_name")
    assert not resumable("quantizer.beta") and not resumable("train.lr") and not resumable("train.stepsize")


def test_a_partial_section_keeps_the_fields_own_defaults():
    from image.config import ImageConfig

    cfg = load_config(ImageConfig, None, ["tracking.run_name=x", "prior.train.steps=7"])
    assert cfg.tracking.experiment_name == "vqvae-image" and cfg.tracking.run_name == "x"
    assert cfg.prior.train.steps == 7 and cfg.prior.train.checkpoint_every == 250  # the prior's default, not 500


@dataclass
class WithQuantizer:
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)


@pytest.mark.parametrize("source", ["yaml", "override"])
def test_the_old_name_of_groups_is_refused_by_name(tmp_path, source):
    path = _write(tmp_path, "quantizer:\n  num_codebooks: 2\n") if source == "yaml" else None
    overrides = ["quantizer.num_codebooks=2"] if source == "override" else []
    with pytest.raises(ConfigError, match=r"quantizer\.num_codebooks was renamed to quantizer\.groups"):
        load_config(WithQuantizer, path, overrides)
    assert load_config(WithQuantizer, None, ["quantizer.groups=2"]).quantizer.groups == 2
