"""First-person 3D environments behind one small interface: square uint8 RGB frames, discrete actions.

DeepMind Lab (the paper's environment) cannot be installed here; MiniWorld (``MiniWorld-*`` gymnasium ids) is the
default and ViZDoom (``Vizdoom*`` ids) an option. Both are deterministic given the reset seed and the actions, which
:mod:`video.record` relies on to replay true futures.

Axis legend: H W frame height and width (equal, ``frame_size``), 3 RGB channels.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from video.config import VideoEnvConfig

BACKENDS = ("miniworld", "vizdoom")


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    """``[h, w, 3]`` uint8 → ``[size, size, 3]`` uint8: centre crop to a square, then an area (box) resize."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    frame = frame[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(frame)
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BOX), dtype=np.uint8)


class FrameEnv:
    """A gymnasium environment seen as square RGB frames and integer actions.

    Args:
        cfg: which environment and frame size.

    Attributes:
        action_names: one lowercase name per action index (``turn_left``, ``turn_right``, ``move_forward`` ...),
            read from the environment itself.
        num_actions: ``len(action_names)``.

    Raises:
        ValueError: unknown backend, a non-positive frame size, an id of the other backend, or an environment whose
            actions are not ``Discrete``.
    """

    def __init__(self, cfg: VideoEnvConfig):
        if cfg.backend not in BACKENDS:
            raise ValueError(f"unknown env.backend {cfg.backend!r}; known backends: {', '.join(BACKENDS)}")
        if cfg.frame_size < 4 or cfg.render_size < 0 or cfg.frame_skip < 1 or cfg.max_episode_steps < 0:
            raise ValueError("env.frame_size must be ≥ 4, env.render_size ≥ 0, env.frame_skip ≥ 1 and "
                             "env.max_episode_steps ≥ 0")
        self.env_cfg = cfg
        self._workdir: tempfile.TemporaryDirectory | None = None
        self.env = self._make_miniworld() if cfg.backend == "miniworld" else self._make_vizdoom()
        from gymnasium import spaces

        if not isinstance(self.env.action_space, spaces.Discrete):
            raise ValueError(f"{cfg.env_id} has action space {self.env.action_space}; only Discrete is supported")
        self.num_actions = int(self.env.action_space.n)
        self.action_names = self._action_names()

    # ------------------------------------------------------------------------------------------ backends
    def _make_miniworld(self):
        os.environ.setdefault("PYGLET_HEADLESS", "true")  # no display: render off-screen
        import gymnasium as gym
        import miniworld  # noqa: F401  (registers the MiniWorld-* ids)

        if not self.env_cfg.env_id.startswith("MiniWorld-"):
            raise ValueError(f"env.backend=miniworld needs a MiniWorld-* id, got {self.env_cfg.env_id!r}")
        side = self.env_cfg.render_size or self.env_cfg.frame_size
        kwargs = {"obs_width": side, "obs_height": side}
        if self.env_cfg.max_episode_steps:
            kwargs["max_episode_steps"] = self.env_cfg.max_episode_steps
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its frame-buffer set-up
            return gym.make(self.env_cfg.env_id, **kwargs)

    def _make_vizdoom(self):
        import gymnasium as gym
        from vizdoom import gymnasium_wrapper  # noqa: F401  (registers the Vizdoom* ids)

        if not self.env_cfg.env_id.startswith("Vizdoom"):
            raise ValueError(f"env.backend=vizdoom needs a Vizdoom* id, got {self.env_cfg.env_id!r}")
        # ViZDoom writes _vizdoom.ini and _vizdoom/ into the working directory: give it a temporary one.
        self._workdir = tempfile.TemporaryDirectory(prefix="vizdoom-")
        kwargs = {"frame_skip": self.env_cfg.frame_skip, "max_buttons_pressed": 1, "sound_enabled": False,
                  "screen_resolution": "RES_160X120"}
        if self.env_cfg.max_episode_steps:
            kwargs["episode_timeout"] = self.env_cfg.max_episode_steps * self.env_cfg.frame_skip
        with self._in_workdir():
            return gym.make(self.env_cfg.env_id, **kwargs)

    @contextlib.contextmanager
    def _in_workdir(self):
        if self._workdir is None:
            yield
            return
        previous = Path.cwd()
        os.chdir(self._workdir.name)
        try:
            yield
        finally:
            os.chdir(previous)

    def _action_names(self) -> list[str]:
        base = self.env.unwrapped
        if self.env_cfg.backend == "miniworld":
            return [base.actions(i).name for i in range(self.num_actions)]
        buttons = [str(b).split(".")[-1].lower() for b in base.game.get_available_buttons()]
        names = []
        for combo in base.button_map:  # one binary vector per discrete action
            pressed = [b for b, on in zip(buttons, combo) if on]
            names.append("+".join(pressed) or "noop")
        return names

    def _frame(self, obs) -> np.ndarray:
        frame = obs["screen"] if isinstance(obs, dict) else obs
        return _resize(np.asarray(frame, dtype=np.uint8), self.env_cfg.frame_size)

    # --------------------------------------------------------------------------------------- interface
    def reset(self, seed: int) -> np.ndarray:
        """Start an episode from ``seed`` (the whole episode is a function of the seed and the actions).

        Returns:
            ``[H, W, 3]`` uint8 first frame.
        """
        with self._in_workdir():
            obs, _ = self.env.reset(seed=int(seed))
        return self._frame(obs)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        """Take ``action``; returns ``(frame [H, W, 3] uint8, reward, terminated, truncated)``.

        Raises:
            ValueError: an action outside ``[0, num_actions)``.
        """
        if not 0 <= int(action) < self.num_actions:
            raise ValueError(f"action must lie in [0, {self.num_actions}), got {action}")
        with self._in_workdir():
            obs, reward, terminated, truncated, _ = self.env.step(int(action))
        return self._frame(obs), float(reward), bool(terminated), bool(truncated)

    def close(self) -> None:
        with self._in_workdir():
            self.env.close()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> "FrameEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_env(cfg: VideoEnvConfig) -> FrameEnv:
    """The environment ``cfg`` names, as a :class:`FrameEnv` (close it, or use it as a context manager)."""
    return FrameEnv(cfg)


def action_index(names: list[str], name: str) -> int:
    """Index of the action called ``name``.

    Raises:
        ValueError: naming the known actions when ``name`` is not one of them.
    """
    if name not in names:
        raise ValueError(f"unknown action {name!r}; this environment's actions: {', '.join(names)}")
    return names.index(name)
