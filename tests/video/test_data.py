"""Episode files, a tiny fixture laid out like external (e.g. DeepMind Lab) recordings, and the datasets."""

import json

import numpy as np
import pytest
import torch

from video.data import (
    Episode,
    FrameDataset,
    WindowDataset,
    evaluation_windows,
    load_split,
    save_episode,
    split_by_episode,
    write_manifest,
)


def _episode(t=5, size=8, seed=3, value=0):
    frames = (np.arange(t + 1)[:, None, None, None] * 10 + value + np.zeros((1, size, size, 3))).astype(np.uint8)
    return Episode(frames=frames, actions=np.arange(t) % 3, rewards=np.zeros(t, np.float32),
                   terminated=np.zeros(t, bool), truncated=np.zeros(t, bool), seed=seed, env_id="Test-v0")


def test_episode_refuses_misaligned_arrays():
    good = _episode()
    with pytest.raises(ValueError, match="needs 6 frames"):
        Episode(good.frames[:-1], good.actions, good.rewards, good.terminated, good.truncated, 0, "x")
    with pytest.raises(ValueError, match="rewards"):
        Episode(good.frames, good.actions, good.rewards[:-1], good.terminated, good.truncated, 0, "x")
    with pytest.raises(ValueError, match="uint8"):
        Episode(good.frames.astype(np.float32), good.actions, good.rewards, good.terminated, good.truncated, 0, "x")


def test_a_folder_in_the_documented_layout_loads_with_unknown_seeds(tmp_path):
    # what a user with DeepMind Lab recordings would write: plain npz files with frames and actions, no seeds
    split = tmp_path / "train"
    split.mkdir()
    entries = []
    for i in range(2):
        ep = _episode(t=4 + i, value=i)
        np.savez(split / f"lab_{i}.npz", frames=ep.frames, actions=ep.actions)
        entries.append({"file": f"lab_{i}.npz", "seed": None, "length": ep.length})
    (split / "manifest.json").write_text(json.dumps({
        "format": "vqvae-suite-episodes/1", "env_id": "dmlab", "action_names": ["turn_left", "turn_right", "forward"],
        "frame_shape": [8, 8, 3], "episodes": entries}))
    episodes, manifest = load_split(split, frame_size=8)
    assert [e.length for e in episodes] == [4, 5] and all(e.seed is None for e in episodes)
    assert episodes[1].frames[2, 0, 0, 0] == 21 and episodes[0].rewards.shape == (4,)
    with pytest.raises(ValueError, match="frame_size is 16"):
        load_split(split, frame_size=16)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_split(tmp_path / "val")


def test_saved_episodes_round_trip_with_their_seed_env_and_config(tmp_path):
    ep = _episode(seed=11)
    save_episode(tmp_path / "episode_000000.npz", ep, {"policy": "random"})
    write_manifest(tmp_path, {"env_id": "Test-v0", "action_names": ["a", "b", "c"], "frame_shape": [8, 8, 3],
                              "episodes": [{"file": "episode_000000.npz", "seed": 11, "length": 5}]})
    (loaded,), manifest = load_split(tmp_path)
    assert np.array_equal(loaded.frames, ep.frames) and np.array_equal(loaded.actions, ep.actions)
    assert loaded.seed == 11 and loaded.env_id == "Test-v0"
    with np.load(tmp_path / "episode_000000.npz") as data:
        assert json.loads(str(data["config"])) == {"policy": "random"}
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary file


def test_frame_dataset_yields_every_frame_in_the_image_convention():
    episodes = [_episode(t=3), _episode(t=2, value=1)]
    frames = FrameDataset(episodes)
    assert len(frames) == 7 and frames.offsets.tolist() == [0, 4]
    x, y = frames[5]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y == -1
    assert x[0, 0, 0] == pytest.approx(11 / 255)
    assert len(FrameDataset(episodes, max_items=3)) == 3


def test_windows_pair_k_previous_codes_with_the_action_that_led_to_the_target():
    codes = [torch.arange(6)[:, None, None].expand(6, 2, 2) + 100 * e for e in range(2)]  # code = frame index
    actions = [torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2, 1, 0, 0])]
    windows = WindowDataset(codes, actions, context_frames=2)
    assert len(windows) == 2 * 4  # frames 2..5 of each episode
    context, action, target = windows[5]  # episode 1, t = 3
    assert context[:, 0, 0].tolist() == [101, 102] and target[0, 0] == 103
    assert action == actions[1][2]  # a_{t-1}: from frame 2 to frame 3
    assert len(WindowDataset(codes, actions, 2, max_items=3)) == 3
    with pytest.raises(ValueError, match="needs 5 code grids, got 6"):
        WindowDataset(codes, [a[:-1] for a in actions], 2)
    with pytest.raises(ValueError, match="no episode"):
        WindowDataset(codes, actions, 6)


def test_per_frame_values_split_by_episode_and_windows_cover_episodes_round_robin():
    episodes = [_episode(t=30), _episode(t=10), _episode(t=20)]
    parts = split_by_episode(torch.arange(31 + 11 + 21), episodes)
    assert [len(p) for p in parts] == [31, 11, 21] and parts[1][0] == 31
    pairs = evaluation_windows(episodes, span=16, stride=8, count=4)
    assert pairs == [(0, 0), (2, 0), (0, 8)]  # episode 1 is too short; fewer windows than asked
    assert evaluation_windows(episodes, span=16, stride=8, count=2) == [(0, 0), (2, 0)]
    assert all(s + 16 <= len(episodes[e].frames) for e, s in evaluation_windows(episodes, 16, 1, 100))
