"""The inverse-dynamics action scorer: transitions are paired as recorded, it learns a rule that is in the frames,
stays at chance when the labels carry nothing, and scores rollouts against the commanded actions."""

import numpy as np
import pytest

from video.action_scorer import (
    Transitions,
    action_confusion,
    chance_accuracy,
    predict_actions,
    real_transitions,
    rollout_transitions,
    train_action_scorer,
)
from video.config import VideoDataConfig, VideoEnvConfig
from video.data import Episode
from video.record import load_or_record

SHIFTS = {0: (0, 2), 1: (0, -2), 2: (2, 0)}  # action → how the view moves (right, left, down by 2 pixels)


def _toy(n: int, seed: int) -> Transitions:
    """Random textures; the next frame is the texture moved by the action's shift."""
    rng = np.random.default_rng(seed)
    before = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    actions = rng.integers(0, 3, n)
    after = np.stack([np.roll(b, SHIFTS[int(a)], axis=(0, 1)) for b, a in zip(before, actions)])
    return Transitions(before, after, actions.astype(np.int64))


def test_real_transitions_pair_each_frame_with_the_next_and_the_action_between():
    frames = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    ep = Episode(frames=frames, actions=np.array([2, 0, 1]), rewards=np.zeros(3, np.float32),
                 terminated=np.zeros(3, bool), truncated=np.zeros(3, bool), seed=0, env_id="toy")
    t = real_transitions([ep, ep])
    assert len(t) == 6
    np.testing.assert_array_equal(t.before[1], frames[1])
    np.testing.assert_array_equal(t.after[1], frames[2])
    assert t.actions.tolist() == [2, 0, 1, 2, 0, 1]
    kept = real_transitions([ep, ep], max_items=4, seed=3)
    assert len(kept) == 4
    for b, a, act in zip(kept.before, kept.after, kept.actions):  # subsampling keeps the pairs together
        i = next(i for i in range(3) if np.array_equal(frames[i], b))
        assert np.array_equal(frames[i + 1], a) and act == [2, 0, 1][i]


def test_rollout_transitions_start_from_the_last_given_frame():
    last = np.full((2, 1, 1, 3), 9, np.uint8)
    frames = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 1, 1, 3)
    t = rollout_transitions(last, frames, np.array([[0, 1, 2], [2, 1, 0]]))
    assert len(t) == 6 and t.actions.tolist() == [0, 1, 2, 2, 1, 0]
    np.testing.assert_array_equal(t.before[0], last[0])
    np.testing.assert_array_equal(t.after[0], frames[0, 0])
    np.testing.assert_array_equal(t.before[2], frames[0, 1])
    np.testing.assert_array_equal(t.before[3], last[1])


def test_the_scorer_learns_a_rule_in_the_frames_and_stays_at_chance_without_one():
    train, held_out = _toy(2048, 0), _toy(512, 1)
    model = train_action_scorer(train, 3, steps=300, batch_size=32, seed=0)
    accuracy = (predict_actions(model, held_out) == held_out.actions).mean()
    assert accuracy > 0.9
    shuffled = Transitions(train.before, train.after, np.random.default_rng(5).permutation(train.actions))
    blind = train_action_scorer(shuffled, 3, steps=300, batch_size=32, seed=0)
    assert (predict_actions(blind, held_out) == held_out.actions).mean() < 0.5  # chance ≈ 1/3
    assert chance_accuracy(held_out.actions) < 0.4  # the blind scorer's bound above is near chance


def test_confusion_counts_rows_as_taken_actions_and_chance_is_the_majority_share():
    conf = action_confusion(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]), 4)
    assert conf.shape == (4, 4) and conf[0, 0] == 1 and conf[0, 1] == 1 and conf[2, 2] == 2 and conf[2, 0] == 1
    assert conf.sum() == 6 and conf[3].sum() == 0
    assert chance_accuracy(np.array([0, 0, 1, 2, 2, 2])) == 0.5


def test_bad_training_data_is_refused():
    with pytest.raises(ValueError, match="actions must lie in"):
        train_action_scorer(_toy(8, 0), 2, steps=1)
    with pytest.raises(ValueError, match="before/after"):
        Transitions(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((3, 4, 4, 3), np.uint8), np.zeros(2, np.int64))


def test_the_default_scorer_learns_real_miniworld_transitions_on_every_seed(tmp_path):
    """64-px ThreeRooms transitions (12 training, 4 held-out episodes): the default learning rate leaves chance on
    each of 3 seeds within 400 steps (measured 81–83 %); at 1e-3 two of these seeds stay at chance."""
    env = VideoEnvConfig(env_id="MiniWorld-ThreeRooms-v0", frame_size=64)
    data = VideoDataConfig(train_episodes=12, val_episodes=4, steps_per_episode=100, action_repeat=4)
    train = real_transitions(load_or_record(env, data, "train", tmp_path)[0])
    held_out = real_transitions(load_or_record(env, data, "val", tmp_path)[0])
    for seed in range(3):
        model = train_action_scorer(train, 3, steps=400, batch_size=32, seed=seed)
        accuracy = (predict_actions(model, held_out) == held_out.actions).mean()
        assert accuracy >= 2 * chance_accuracy(held_out.actions), (seed, accuracy)
