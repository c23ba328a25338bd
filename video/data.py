"""Recorded episodes on disk and the datasets built from them.

On-disk layout of one split (what :mod:`video.record` writes; put DeepMind Lab or any other recordings in the same
layout under ``data.root/train`` and ``data.root/val`` and set ``data.source=folder``)::

    <split>/manifest.json          written last: its presence means the split is complete
    <split>/episode_000000.npz     one file per episode
    ...

``episode_*.npz`` holds ``frames`` uint8 ``[T+1, H, W, 3]`` (frame 0 is the first observation, frame t+1 the
observation after action t), ``actions`` int64 ``[T]``, ``rewards`` float32 ``[T]``, ``terminated`` and
``truncated`` bool ``[T]``, and 0-d ``seed`` (the reset seed; -1 when unknown), ``env_id`` and ``config`` (the
recording config as JSON) entries. ``manifest.json`` holds ``{"format": "vqvae-suite-episodes/1", "env_id": ...,
"action_names": [...], "frame_shape": [H, W, 3], "config": {...}, "episodes": [{"file": ..., "seed": ...,
"length": T}, ...]}``. Episodes without a known seed (``"seed": null``) cannot be replayed: the generation stage then
shows no true futures under the fixed action sequences, and everything else works.

Axis legend: N items, T actions per episode (T+1 frames), k context frames, H W frame height and width,
h w latent grid, 3 RGB channels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from core.files import atomic_write

FORMAT = "vqvae-suite-episodes/1"
MANIFEST = "manifest.json"


@dataclass
class Episode:
    """One recorded episode."""

    frames: np.ndarray  # [T+1, H, W, 3] uint8; frames[t + 1] is the observation after actions[t]
    actions: np.ndarray  # [T] int64
    rewards: np.ndarray  # [T] float32
    terminated: np.ndarray  # [T] bool
    truncated: np.ndarray  # [T] bool
    seed: int | None  # reset seed (None: unknown, cannot be replayed)
    env_id: str

    def __post_init__(self) -> None:
        t = len(self.actions)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [T+1, H, W, 3], got {self.frames.dtype} {self.frames.shape}")
        if self.frames.shape[0] != t + 1:
            raise ValueError(f"an episode of {t} actions needs {t + 1} frames, got {self.frames.shape[0]}")
        for name in ("rewards", "terminated", "truncated"):
            if len(getattr(self, name)) != t:
                raise ValueError(f"{name} must have one entry per action ({t}), got {len(getattr(self, name))}")

    @property
    def length(self) -> int:
        """T, the number of actions."""
        return len(self.actions)


def save_episode(path: Path, episode: Episode, config: dict[str, Any]) -> None:
    """Write one ``episode_*.npz`` atomically (see the module docstring)."""
    arrays = dict(frames=episode.frames, actions=episode.actions.astype(np.int64),
                  rewards=episode.rewards.astype(np.float32), terminated=episode.terminated.astype(bool),
                  truncated=episode.truncated.astype(bool), seed=np.int64(-1 if episode.seed is None else episode.seed),
                  env_id=np.array(episode.env_id), config=np.array(json.dumps(config, sort_keys=True)))
    atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def load_episode(path: Path) -> Episode:
    """Read one ``episode_*.npz``.

    Raises:
        ValueError: a file that lacks an entry of the layout or whose arrays do not line up.
    """
    with np.load(path, allow_pickle=False) as data:
        missing = {"frames", "actions"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}; expected the layout of video.data")
        actions = data["actions"].astype(np.int64)
        t = len(actions)
        seed = int(data["seed"]) if "seed" in data.files else -1
        return Episode(frames=data["frames"], actions=actions,
                       rewards=data["rewards"] if "rewards" in data.files else np.zeros(t, np.float32),
                       terminated=data["terminated"] if "terminated" in data.files else np.zeros(t, bool),
                       truncated=data["truncated"] if "truncated" in data.files else np.zeros(t, bool),
                       seed=None if seed < 0 else seed,
                       env_id=str(data["env_id"]) if "env_id" in data.files else "")


def write_manifest(split_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically; call it after every episode file is in place."""
    data = json.dumps({"format": FORMAT, **manifest}, indent=1, sort_keys=True).encode()
    atomic_write(split_dir / MANIFEST, lambda handle: handle.write(data))


def read_manifest(split_dir: Path) -> dict[str, Any] | None:
    """The split's manifest, or None when the split is absent or incomplete."""
    path = Path(split_dir) / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def load_split(split_dir: str | Path, frame_size: int | None = None) -> tuple[list[Episode], dict[str, Any]]:
    """Every episode of a split and its manifest.

    Args:
        split_dir: folder in the layout of the module docstring.
        frame_size: when given, frames must be ``frame_size × frame_size``.

    Raises:
        FileNotFoundError: no manifest (the message gives the layout).
        ValueError: frames of another size, or actions outside the manifest's action names.
    """
    split_dir = Path(split_dir)
    manifest = read_manifest(split_dir)
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} in {split_dir}; expected {split_dir}/{MANIFEST} and "
                                f"episode_*.npz files as documented in video.data")
    num_actions = len(manifest["action_names"])
    episodes = []
    for entry in manifest["episodes"]:
        episode = load_episode(split_dir / entry["file"])
        if frame_size is not None and episode.frames.shape[1:3] != (frame_size, frame_size):
            raise ValueError(f"{split_dir / entry['file']}: frames are {episode.frames.shape[1:3]}, "
                             f"env.frame_size is {frame_size}")
        if episode.length and (episode.actions.min() < 0 or episode.actions.max() >= num_actions):
            raise ValueError(f"{split_dir / entry['file']}: actions outside [0, {num_actions})")
        episodes.append(episode)
    return episodes, manifest


def to_float(frames: np.ndarray) -> torch.Tensor:
    """``[..., H, W, 3]`` uint8 → ``[..., 3, H, W]`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -3).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[..., 3, H, W]`` in [0, 1] → ``[..., H, W, 3]`` uint8 (clamped, rounded): the inverse of :func:`to_float`."""
    return (x.detach().clamp(0, 1).movedim(-3, -1).cpu().numpy() * 255).round().astype(np.uint8)


class FrameDataset(Dataset):
    """Every frame of some episodes, for the frame VQ-VAE; items are ``(x [3, H, W] in [0, 1], -1)`` like the
    image datasets, in episode order (episode ``e`` owns items ``offsets[e] .. offsets[e] + T_e``). The episodes'
    uint8 arrays are shared, not copied.

    Args:
        episodes: the episodes, in order.
        max_items: keep this many evenly spaced frames (0: all).
    """

    def __init__(self, episodes: list[Episode], max_items: int = 0):
        if not episodes:
            raise ValueError("FrameDataset needs at least one episode")
        self.episodes = episodes
        sizes = [len(e.frames) for e in episodes]
        self.offsets = np.cumsum([0] + sizes)[:-1]
        self.items = np.arange(sum(sizes))
        if 0 < max_items < len(self.items):
            self.items = self.items[np.linspace(0, len(self.items) - 1, max_items).round().astype(int)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        flat = int(self.items[i])
        e = int(np.searchsorted(self.offsets, flat, side="right")) - 1
        return to_float(self.episodes[e].frames[flat - self.offsets[e]]), -1


class WindowDataset(Dataset):
    """``(context codes [k, h, w], action, target codes [h, w])`` for the action-conditional prior.

    Item for frame ``t ≥ k`` of an episode: the codes of frames ``t − k .. t − 1``, the action ``a_{t−1}`` that led
    from frame ``t − 1`` to frame ``t``, and the codes of frame ``t``.

    Args:
        codes: per episode, ``[T_e + 1, h, w]`` long codes of its frames.
        actions: per episode, ``[T_e]`` long actions.
        context_frames: k ≥ 1.
        max_items: keep this many evenly spaced windows (0: all).

    Raises:
        ValueError: mismatched lengths, k < 1, or no episode long enough for one window.
    """

    def __init__(self, codes: list[torch.Tensor], actions: list[torch.Tensor], context_frames: int,
                 max_items: int = 0):
        if context_frames < 1:
            raise ValueError(f"context_frames must be ≥ 1, got {context_frames}")
        if len(codes) != len(actions):
            raise ValueError(f"{len(codes)} code sequences but {len(actions)} action sequences")
        for c, a in zip(codes, actions):
            if len(c) != len(a) + 1:
                raise ValueError(f"an episode of {len(a)} actions needs {len(a) + 1} code grids, got {len(c)}")
        self.codes, self.actions, self.k = codes, [torch.as_tensor(a).long() for a in actions], context_frames
        index = [(e, t) for e, c in enumerate(codes) for t in range(context_frames, len(c))]
        if not index:
            raise ValueError(f"no episode has more than {context_frames} frames: no window to train on")
        if 0 < max_items < len(index):
            index = [index[i] for i in np.linspace(0, len(index) - 1, max_items).round().astype(int)]
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e, t = self.index[i]
        return self.codes[e][t - self.k:t], self.actions[e][t - 1], self.codes[e][t]


def split_by_episode(flat: torch.Tensor, episodes: list[Episode]) -> list[torch.Tensor]:
    """Cut ``[N, ...]`` per-frame values (N = Σ (T_e + 1), in episode order) into one tensor per episode."""
    sizes = [len(e.frames) for e in episodes]
    if sum(sizes) != len(flat):
        raise ValueError(f"{len(flat)} items for {sum(sizes)} frames")
    return list(flat.split(sizes))


def evaluation_windows(episodes: list[Episode], span: int, stride: int, count: int) -> list[tuple[int, int]]:
    """``(episode, start)`` pairs whose frames ``start .. start + span − 1`` all exist, ``stride`` apart within an
    episode, taken round-robin over episodes (so a few long episodes do not fill the set) up to ``count``."""
    if span < 2 or stride < 1:
        raise ValueError(f"span must be ≥ 2 and stride ≥ 1, got {span}, {stride}")
    starts = [list(range(0, len(e.frames) - span + 1, stride)) for e in episodes]
    out: list[tuple[int, int]] = []
    depth = 0
    while len(out) < count and any(depth < len(s) for s in starts):
        out += [(e, s[depth]) for e, s in enumerate(starts) if depth < len(s)]
        depth += 1
    return out[:count]
