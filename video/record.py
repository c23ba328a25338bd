"""Recording episodes with a seeded policy, caching them on disk, and replaying them exactly.

An episode is a pure function of the environment config, its reset seed and its actions; the random policy's actions
are a pure function of ``(policy_seed, reset seed)`` and drawn up front. So :func:`replay` re-creates recorded frames
bit for bit, and :func:`rollout_from` gives the true frames under any other actions from any point of an episode
(the ground truth of the evaluation under fixed action sequences).

Axis legend: T actions, F future actions, H W frame height and width, 3 RGB channels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from video.config import VideoDataConfig, VideoEnvConfig
from video.data import Episode, load_split, read_manifest, save_episode, write_manifest
from video.envs import FrameEnv, make_env

POLICIES = ("random",)
SPLITS = ("train", "val")


def random_actions(num_actions: int, steps: int, action_repeat: int, rng: np.random.Generator) -> np.ndarray:
    """The random policy: uniform actions, each held for a uniform number of steps in ``1 .. action_repeat``.

    Returns:
        ``[steps]`` int64 actions.
    """
    if num_actions < 1 or steps < 0 or action_repeat < 1:
        raise ValueError("need num_actions ≥ 1, steps ≥ 0 and action_repeat ≥ 1")
    out = np.empty(steps, dtype=np.int64)
    t = 0
    while t < steps:
        hold = int(rng.integers(1, action_repeat + 1))
        out[t:t + hold] = rng.integers(num_actions)
        t += hold
    return out


def policy_actions(data_cfg: VideoDataConfig, num_actions: int, seed: int) -> np.ndarray:
    """The configured policy's ``[steps_per_episode]`` actions for the episode reset with ``seed``."""
    if data_cfg.policy not in POLICIES:
        raise ValueError(f"unknown data.policy {data_cfg.policy!r}; known policies: {', '.join(POLICIES)}")
    rng = np.random.default_rng([data_cfg.policy_seed, seed])
    return random_actions(num_actions, data_cfg.steps_per_episode, data_cfg.action_repeat, rng)


def run_episode(env: FrameEnv, seed: int, actions: np.ndarray, stop_at_end: bool = True) -> Episode:
    """Reset ``env`` with ``seed`` and take ``actions`` in order.

    Args:
        env: the environment.
        seed: reset seed.
        actions: ``[T]`` integer actions.
        stop_at_end: stop after the step that terminates or truncates the episode (the episode is then shorter
            than ``actions``).

    Returns:
        The episode; ``frames[t + 1]`` is the observation after ``actions[t]``.
    """
    frames = [env.reset(seed)]
    rewards, terminated, truncated = [], [], []
    for action in np.asarray(actions, dtype=np.int64):
        frame, reward, term, trunc = env.step(int(action))
        frames.append(frame)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        if stop_at_end and (term or trunc):
            break
    t = len(rewards)
    return Episode(frames=np.stack(frames), actions=np.asarray(actions, dtype=np.int64)[:t].copy(),
                   rewards=np.asarray(rewards, np.float32), terminated=np.asarray(terminated, bool),
                   truncated=np.asarray(truncated, bool), seed=int(seed), env_id=env.env_cfg.env_id)


def replay(env_cfg: VideoEnvConfig, seed: int, actions: np.ndarray) -> np.ndarray:
    """The frames ``[T+1, H, W, 3]`` uint8 of the episode reset with ``seed`` under ``actions`` (a fresh env).

    Equals the recorded ``frames`` of that episode bit for bit.
    """
    with make_env(env_cfg) as env:
        return run_episode(env, seed, actions, stop_at_end=False).frames


def rollout_from(env_cfg: VideoEnvConfig, seed: int, prefix_actions: np.ndarray, future_actions: np.ndarray,
                 env: FrameEnv | None = None) -> np.ndarray:
    """The true frames after each of ``future_actions``, taken after ``prefix_actions`` from the reset ``seed``.

    Args:
        env_cfg: the environment (a fresh one is made unless ``env`` is given).
        seed: reset seed of the episode.
        prefix_actions: ``[P]`` the actions already taken (the last given frame is frame P).
        future_actions: ``[F]`` the actions to roll out.
        env: an open environment of ``env_cfg`` to reuse (it is reset).

    Returns:
        ``[F, H, W, 3]`` uint8: frame ``P + 1 + i`` under the given actions. Should the episode end inside the
        future, its last frame is repeated for the remaining steps.
    """
    actions = np.concatenate([np.asarray(prefix_actions, np.int64), np.asarray(future_actions, np.int64)])
    if env is None:
        with make_env(env_cfg) as own:
            episode = run_episode(own, seed, actions)
    else:
        episode = run_episode(env, seed, actions)
    frames = episode.frames[len(prefix_actions) + 1:]
    missing = len(future_actions) - len(frames)
    if missing > 0:
        if len(frames) == 0:
            raise ValueError(f"the episode of seed {seed} ended within the {len(prefix_actions)} prefix actions")
        frames = np.concatenate([frames, np.repeat(frames[-1:], missing, axis=0)])
    return frames


def recording_config(env_cfg: VideoEnvConfig, data_cfg: VideoDataConfig, split: str) -> dict[str, Any]:
    """Everything a split's recording depends on (what decides whether the cache can be reused)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    first, count = ((data_cfg.train_seed, data_cfg.train_episodes) if split == "train"
                    else (data_cfg.val_seed, data_cfg.val_episodes))
    return {"env": dataclasses.asdict(env_cfg), "split": split, "first_seed": first, "episodes": count,
            "steps_per_episode": data_cfg.steps_per_episode, "policy": data_cfg.policy,
            "action_repeat": data_cfg.action_repeat, "policy_seed": data_cfg.policy_seed}


def check_seed_ranges(data_cfg: VideoDataConfig) -> None:
    """Raise ``ValueError`` when the training and held-out reset seeds overlap."""
    train = range(data_cfg.train_seed, data_cfg.train_seed + data_cfg.train_episodes)
    val = range(data_cfg.val_seed, data_cfg.val_seed + data_cfg.val_episodes)
    if train and val and max(train.start, val.start) < min(train.stop, val.stop):
        raise ValueError(f"training seeds {train.start}..{train.stop - 1} overlap held-out seeds "
                         f"{val.start}..{val.stop - 1}; move data.val_seed")


def split_dir(cache_dir: str | Path, config: dict[str, Any]) -> Path:
    """Cache folder of one recording config: ``<cache_dir>/<env id>-<frame size>px-<split>-<hash of config>``."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    env = config["env"]
    return Path(cache_dir) / f"{env['env_id']}-{env['frame_size']}px-{config['split']}-{digest}"


def record_split(env_cfg: VideoEnvConfig, data_cfg: VideoDataConfig, split: str, cache_dir: str | Path,
                 progress: bool = True) -> Path:
    """Record one split into the cache unless a complete recording of the same config is there.

    Episode files are written atomically and the manifest last, so an interrupted recording is redone.

    Returns:
        The split's folder (layout of :mod:`video.data`).
    """
    if data_cfg.steps_per_episode < 1 or data_cfg.train_episodes < 1 or data_cfg.val_episodes < 1:
        raise ValueError("data.steps_per_episode, data.train_episodes and data.val_episodes must be ≥ 1")
    check_seed_ranges(data_cfg)
    config = recording_config(env_cfg, data_cfg, split)
    folder = split_dir(cache_dir, config)
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("config") == config:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    with make_env(env_cfg) as env:
        seeds = range(config["first_seed"], config["first_seed"] + config["episodes"])
        for i, seed in enumerate(tqdm(seeds, desc=f"record {split}", disable=None if progress else True)):
            episode = run_episode(env, seed, policy_actions(data_cfg, env.num_actions, seed))
            name = f"episode_{i:06d}.npz"
            save_episode(folder / name, episode, config)
            entries.append({"file": name, "seed": seed, "length": episode.length})
        names = env.action_names
    write_manifest(folder, {"env_id": env_cfg.env_id, "action_names": names, "config": config,
                            "frame_shape": [env_cfg.frame_size, env_cfg.frame_size, 3], "episodes": entries})
    return folder


def load_or_record(env_cfg: VideoEnvConfig, data_cfg: VideoDataConfig, split: str,
                   cache_dir: str | Path) -> tuple[list[Episode], dict[str, Any]]:
    """A split's episodes and manifest: recorded (or taken from the cache) for ``data.source=record``, read from
    ``data.root/<split>`` for ``data.source=folder``.

    Raises:
        ValueError: an unknown source, or ``folder`` without ``data.root``.
    """
    if data_cfg.source == "record":
        return load_split(record_split(env_cfg, data_cfg, split, cache_dir), env_cfg.frame_size)
    if data_cfg.source == "folder":
        if not data_cfg.root:
            raise ValueError("data.root must be set for data.source=folder")
        return load_split(Path(data_cfg.root) / split, env_cfg.frame_size)
    raise ValueError(f"unknown data.source {data_cfg.source!r}; known sources: record, folder")
