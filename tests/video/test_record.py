"""Recording: frames and actions aligned, exact replays and true futures, the on-disk cache and its reuse."""

import numpy as np
import pytest

import video.record as record
from video.config import VideoDataConfig, VideoEnvConfig
from video.data import load_split
from video.envs import action_index, make_env

ENV = VideoEnvConfig(env_id="MiniWorld-ThreeRooms-v0", frame_size=16)


def _data(**kw):
    return VideoDataConfig(**{"train_episodes": 2, "val_episodes": 1, "steps_per_episode": 12, **kw})


class CountingEnv:
    """A fake environment whose frame shows the step count and the last action; episodes end after ``end`` steps."""

    def __init__(self, end=100):
        self.env_cfg = VideoEnvConfig(env_id="Counting-v0", frame_size=4)
        self.num_actions, self.end = 3, end

    def _frame(self, value):
        return np.full((4, 4, 3), value, np.uint8)

    def reset(self, seed):
        self.t = 0
        return self._frame(200)

    def step(self, action):
        self.t += 1
        return self._frame(10 * self.t + action), float(action), self.t >= self.end, False


def test_frame_t_plus_1_is_the_observation_after_action_t():
    actions = np.array([2, 0, 1, 1, 2])
    episode = record.run_episode(CountingEnv(), seed=0, actions=actions)
    assert episode.frames.shape == (6, 4, 4, 3) and episode.length == 5
    assert len(episode.rewards) == len(episode.terminated) == len(episode.truncated) == 5
    assert episode.frames[0, 0, 0, 0] == 200
    for t, a in enumerate(actions):
        assert episode.frames[t + 1, 0, 0, 0] == 10 * (t + 1) + a
    assert episode.rewards.tolist() == actions.tolist()


def test_an_episode_that_ends_early_keeps_its_frames_and_actions_aligned():
    episode = record.run_episode(CountingEnv(end=3), seed=0, actions=np.array([1, 1, 1, 1, 1]))
    assert episode.length == 3 and len(episode.frames) == 4
    assert episode.terminated.tolist() == [False, False, True]


def test_random_policy_holds_actions_and_is_a_function_of_the_seeds():
    data = _data(steps_per_episode=400, action_repeat=4)
    a = record.policy_actions(data, 3, seed=7)
    assert np.array_equal(a, record.policy_actions(data, 3, seed=7))
    assert not np.array_equal(a, record.policy_actions(data, 3, seed=8))
    assert set(a.tolist()) == {0, 1, 2}
    runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, a, -1])))  # lengths of constant stretches
    assert runs.mean() > 1.5  # actions are repeated
    with pytest.raises(ValueError, match="known policies"):
        record.policy_actions(_data(policy="greedy"), 3, seed=0)


def test_replay_recreates_the_recorded_frames_bit_for_bit_and_rollouts_give_true_futures(tmp_path):
    episodes, manifest = record.load_or_record(ENV, _data(), "train", tmp_path)
    assert manifest["action_names"] == ["turn_left", "turn_right", "move_forward"]
    episode = episodes[1]  # recorded after another episode in the same environment instance
    assert episode.frames.dtype == np.uint8 and episode.frames.shape == (13, 16, 16, 3) and episode.seed == 1
    assert np.array_equal(record.replay(ENV, episode.seed, episode.actions), episode.frames)
    future = record.rollout_from(ENV, episode.seed, episode.actions[:5], episode.actions[5:9])
    assert np.array_equal(future, episode.frames[6:10])
    forward = action_index(manifest["action_names"], "move_forward")
    other = record.rollout_from(ENV, episode.seed, episode.actions[:5], np.full(4, forward))
    assert other.shape == (4, 16, 16, 3)
    assert np.array_equal(other[0], future[0]) == (episode.actions[5] == forward)
    with pytest.raises(ValueError, match="unknown action 'jump'"):
        action_index(manifest["action_names"], "jump")


def test_the_cache_is_reused_for_the_same_config_and_redone_otherwise(tmp_path, monkeypatch):
    first = record.record_split(ENV, _data(), "train", tmp_path)
    manifest = (first / "manifest.json").read_text()

    def no_env(cfg):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(record, "make_env", no_env)
    assert record.record_split(ENV, _data(), "train", tmp_path) == first
    assert (first / "manifest.json").read_text() == manifest
    with pytest.raises(AssertionError, match="reused"):
        record.record_split(ENV, _data(policy_seed=1), "train", tmp_path)  # another recording config
    monkeypatch.undo()
    (first / "manifest.json").unlink()  # as if interrupted before the manifest: recorded again
    assert record.record_split(ENV, _data(), "train", tmp_path) == first
    episodes, _ = load_split(first, frame_size=16)
    assert [e.seed for e in episodes] == [0, 1]


def test_overlapping_seed_ranges_and_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        record.record_split(ENV, _data(train_episodes=10, val_seed=5), "val", tmp_path)
    with pytest.raises(ValueError, match="known backends"):
        make_env(VideoEnvConfig(backend="dmlab"))
    with pytest.raises(ValueError, match="MiniWorld"):
        make_env(VideoEnvConfig(env_id="VizdoomBasic-v1"))
    with pytest.raises(ValueError, match="known sources"):
        record.load_or_record(ENV, _data(source="lab"), "train", tmp_path)


def test_vizdoom_runs_outside_the_working_directory_and_replays_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = VideoEnvConfig(backend="vizdoom", env_id="VizdoomMyWayHome-v1", frame_size=16)
    with make_env(cfg) as env:
        assert "move_forward" in env.action_names and "turn_right" in env.action_names
        episode = record.run_episode(env, 3, record.policy_actions(_data(), env.num_actions, 3))
    assert episode.frames.shape == (13, 16, 16, 3)
    assert np.array_equal(record.replay(cfg, 3, episode.actions), episode.frames)
    assert list(tmp_path.iterdir()) == []  # no _vizdoom.ini or _vizdoom/ left in the working directory
