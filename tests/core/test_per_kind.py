"""Per-kind settings of a config section (``quantizer.per_kind``): the selected kind's entry over the file's keys,
the command line over both, clear errors for malformed tables, and the shipped configs' kinds."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.config import ConfigError, QuantizerConfig, TrainConfig, flatten, load_config
from image.config import ImageConfig

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


FILE = """
quantizer:
  kind: ema
  data_init: true
  beta: 0.5
  per_kind:
    sq: {data_init: false, init_variance: 2.0}
    vq: {beta: 0.3}
"""


def _load(tmp_path, *overrides, text=FILE):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(Run, path, list(overrides))


def test_the_selected_kinds_entry_applies_over_the_files_keys(tmp_path):
    ema = _load(tmp_path).quantizer  # no entry for ema: the file's keys
    assert (ema.kind, ema.data_init, ema.beta, ema.init_variance) == ("ema", True, 0.5, 20.0)
    sq = _load(tmp_path, "quantizer.kind=sq").quantizer
    assert (sq.data_init, sq.init_variance, sq.beta) == (False, 2.0, 0.5)
    vq = _load(tmp_path, "quantizer.kind=vq").quantizer
    assert (vq.data_init, vq.beta) == (True, 0.3)


def test_a_key_given_on_the_command_line_wins_over_the_kinds_entry(tmp_path):
    sq = _load(tmp_path, "quantizer.kind=sq", "quantizer.init_variance=7").quantizer
    assert (sq.init_variance, sq.data_init) == (7.0, False)
    vq = _load(tmp_path, "quantizer.kind=vq", "quantizer.beta=0.1").quantizer
    assert vq.beta == 0.1
    # the table itself can be overridden too
    assert _load(tmp_path, "quantizer.kind=sq", "quantizer.per_kind.sq.init_variance=4").quantizer.init_variance == 4.0


def test_the_built_config_holds_the_resolved_values_not_the_table(tmp_path):
    keys = flatten(_load(tmp_path, "quantizer.kind=sq"))
    assert not any("per_kind" in k for k in keys)
    assert keys["quantizer.init_variance"] == 2.0


@pytest.mark.parametrize("text, message", [
    ("quantizer:\n  per_kind:\n    rvq: {beta: 0.1}\n", "quantizer.per_kind.rvq: unknown kind; known kinds: ema, sq, vq"),
    ("quantizer:\n  per_kind:\n    sq: {betta: 0.1}\n", "unknown config key quantizer.per_kind.sq.betta"),
    ("quantizer:\n  per_kind:\n    sq: 3\n", "quantizer.per_kind.sq: expected a mapping"),
    ("quantizer:\n  per_kind: [sq]\n", "quantizer.per_kind: expected a mapping from kind"),
    ("train:\n  per_kind:\n    sq: {steps: 1}\n", "train.per_kind: train has no kinds"),
])
def test_a_malformed_table_is_one_config_error_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        _load(tmp_path, text=text)


def test_sq_with_data_init_is_refused_at_start_up_and_other_kinds_keep_it(tmp_path):
    with pytest.raises(ConfigError, match="quantizer.kind=sq with quantizer.data_init=true collapses"):
        _load(tmp_path, "quantizer.kind=sq", "quantizer.data_init=true")
    assert _load(tmp_path, "quantizer.kind=vq", "quantizer.data_init=true").quantizer.data_init


@pytest.mark.parametrize("name", ["image/default", "image/debug", "image/vqvae2", "audio/default", "audio/wavenet",
                                  "video/default"])
def test_every_kind_loads_from_the_shipped_configs_with_its_own_settings(name):
    from audio.config import AudioConfig
    from video.config import VideoConfig

    cls = {"image": ImageConfig, "audio": AudioConfig, "video": VideoConfig}[name.split("/")[0]]
    path = ROOT / "experiments" / "configs" / f"{name}.yaml"
    for kind in QuantizerConfig.known_kinds():
        if name == "image/vqvae2" and kind == "sq":
            continue  # the hierarchical model takes vq or ema (refused by its own check)
        q = load_config(cls, path, [f"quantizer.kind={kind}"]).quantizer
        assert q.kind == kind
        assert q.data_init == (kind != "sq")  # these configs draw the codebook from data, SQ from N(0, 1)
