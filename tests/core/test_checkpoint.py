"""Atomic, strict checkpoints with RNG states."""

import random

import numpy as np
import pytest
import torch

from core.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from tests.crafted import RunsCode


def _model():
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def test_round_trip_restores_model_optimizer_step_config_and_rng(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck.pt", model=model, optimizer=opt, step=11, config={"a": 1}, note="x")
    expected = (torch.rand(3), np.random.rand(), random.random())

    other = _model()
    other_opt = torch.optim.Adam(other.parameters(), lr=1e-3)
    payload = load_checkpoint(path, other, other_opt)
    assert payload["step"] == 11 and payload["config"] == {"a": 1} and payload["note"] == "x"
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(other_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.random.rand() == expected[1] and random.random() == expected[2]


def test_no_temporary_file_is_left_and_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path / "ck.pt", model=model, optimizer=None, step=1, config={})
    with pytest.raises(Exception):
        save_checkpoint(path, model=model, optimizer=None, step=2, config={}, bad=lambda: None)  # unpicklable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
    assert read_checkpoint(path)["step"] == 1


def test_loading_is_strict(tmp_path):
    path = save_checkpoint(tmp_path / "ck.pt", model=_model(), optimizer=None, step=0, config={})
    with pytest.raises(RuntimeError):
        load_checkpoint(path, torch.nn.Linear(3, 4))


def test_missing_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        read_checkpoint(junk)
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a checkpoint of this suite"):
        read_checkpoint(tmp_path / "foreign.pt")


def test_a_crafted_checkpoint_runs_nothing_and_is_refused_by_name(tmp_path):
    marker = tmp_path / "code_ran"
    crafted = tmp_path / "crafted.pt"
    torch.save({"model": {}, "step": 0, "config": {}, "payload": RunsCode(marker)}, crafted)
    with pytest.raises(ValueError, match="crafted.pt was refused.*posix.system"):
        read_checkpoint(crafted)
    with pytest.raises(ValueError, match="crafted.pt"):
        load_checkpoint(crafted, _model())
    assert not marker.exists()


def test_checkpoints_hold_only_plain_values_and_load_with_weights_only(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck.pt", model=model, optimizer=opt, step=3, config={"a": [1, 2.0, "x"]},
                           grid=(8, 8), names=["a"])
    payload = torch.load(path, weights_only=True)  # what read_checkpoint does
    assert payload["grid"] == (8, 8) and isinstance(payload["rng"]["numpy"]["keys"], torch.Tensor)
    with pytest.raises(TypeError, match=r"checkpoint\['bad'\] is a numpy"):
        save_checkpoint(tmp_path / "other.pt", model=model, optimizer=None, step=0, config={}, bad=np.float64(1.0))
    assert not (tmp_path / "other.pt").exists()


def test_a_checkpoint_written_before_a_rename_reads_with_the_new_key(tmp_path):
    from core.config import QuantizerConfig, from_dict

    model = torch.nn.Linear(2, 2)
    old = {"quantizer": {"kind": "ema", "num_codebooks": 2}, "train": {"steps": 3}}
    save_checkpoint(tmp_path / "c.pt", model=model, optimizer=None, step=3, config=old)
    stored = read_checkpoint(tmp_path / "c.pt")["config"]
    assert stored == {"quantizer": {"kind": "ema", "groups": 2}, "train": {"steps": 3}}
    assert from_dict(QuantizerConfig, stored["quantizer"]).groups == 2
