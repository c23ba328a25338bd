"""Typed configuration of the video experiment (loaded from ``experiments/configs/video/*.yaml``).

The paper's sec. 4.4: a frame VQ-VAE (the image model, 84×84 frames → 21×21 latents, K = 512) and a prior over the
codes of frame t given the codes of earlier frames and the action, which generates 10 frames from 6 real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from core.config import ConfigError, Limits, QuantizerConfig, TrackingConfig, TrainConfig
from image.config import ImageModelConfig


@dataclass
class VideoEnvConfig:
    """The first-person 3D environment the episodes are recorded in (DeepMind Lab in the paper).

    ``backend``: ``"miniworld"`` (gymnasium ids ``MiniWorld-*``) or ``"vizdoom"`` (ids ``Vizdoom*``, e.g.
    ``VizdoomMyWayHome-v1``). Frames are square RGB ``frame_size × frame_size``.
    """

    backend: str = "miniworld"
    env_id: str = "MiniWorld-MazeS3-v0"
    frame_size: int = 84  # paper: 84×84 frames
    render_size: int = 0  # miniworld: side the env renders at before an area resize to frame_size (0: frame_size)
    frame_skip: int = 4  # vizdoom: game tics per action (miniworld moves a fixed step per action)
    max_episode_steps: int = 0  # 0: the environment's own episode limit

    LIMITS: ClassVar[Limits] = {"frame_size": (">=", 1), "render_size": (">=", 0), "frame_skip": (">=", 1),
                                "max_episode_steps": (">=", 0)}
    CHOICES: ClassVar[dict[str, tuple]] = {"backend": ("miniworld", "vizdoom")}


@dataclass
class VideoDataConfig:
    """Where the episodes come from.

    ``source``: ``"record"`` (episodes recorded from ``env`` with a seeded random policy, cached on disk under
    ``cache_dir``) or ``"folder"`` (episodes already on disk under ``root/train`` and ``root/val``, in the layout
    documented in :mod:`video.data`; e.g. DeepMind Lab recordings).
    Training and held-out episodes use disjoint ranges of reset seeds.
    """

    source: str = "record"
    root: str = ""  # folder: the recordings
    cache_dir: str = ""  # record: the recording cache (empty: <train.output_dir>/episodes)
    train_episodes: int = 1000
    val_episodes: int = 100
    steps_per_episode: int = 100  # actions per episode, fewer where the episode ends first
    train_seed: int = 0  # training episodes reset with seeds train_seed, train_seed + 1, ...
    val_seed: int = 1_000_000  # held-out episodes: val_seed, val_seed + 1, ... (must not overlap the training range)
    policy: str = "random"  # "random": uniform actions, each held for a uniform 1..action_repeat steps
    action_repeat: int = 4
    policy_seed: int = 0  # the policy's draws are a pure function of (policy_seed, reset seed)
    val_frames: int = 4096  # held-out frames for the frame VQ-VAE's evaluation (evenly spaced; 0: all)
    num_workers: int = 0

    LIMITS: ClassVar[Limits] = {"train_episodes": (">=", 1), "val_episodes": (">=", 1),
                                "steps_per_episode": (">=", 1), "action_repeat": (">=", 1), "val_frames": (">=", 0),
                                "num_workers": (">=", 0)}
    CHOICES: ClassVar[dict[str, tuple]] = {"source": ("record", "folder")}


@dataclass
class VideoPriorConfig:
    """The action-conditional prior p(z_t | z_{t-k..t-1}, a_{t-1}) and the generation/evaluation settings."""

    vqvae_checkpoint: str = ""  # empty: this run's own frame VQ-VAE checkpoint
    context_frames: int = 6  # k: previous frames the prior conditions on
    channels: int = 128  # gated PixelCNN width
    num_layers: int = 15
    kernel_size: int = 5
    context_channels: int = 128  # width of the conv net over the context codes
    context_blocks: int = 4  # its residual blocks (dilations 1, 2, 4, 8, 1, ...)
    code_embedding_dim: int = 32  # embedding of each context code
    action_embedding_dim: int = 32
    given_frames: int = 6  # real frames given before generation (paper: 6)
    generated_frames: int = 10  # frames generated in latent space (paper: 10)
    temperature: float = 1.0
    # beyond the paper: decode a generated frame as the last given frame's pixels plus the decoded change of the codes
    # since that frame, x_a + D(c_t) − D(c_a) (video/evaluate.py: decode_residual), instead of D(c_t) alone
    residual_decoding: bool = False
    eval_samples: int = 4  # S rollouts per held-out window: one-try scores averaged over S; oracle best of S (≤ 16)
    # a generated step is "moving" where the true transition into its frame changes the view by more than this mean
    # absolute difference (8-bit levels; video/protocol.py)
    moving_min_change: float = 1.0
    # the inverse-dynamics action scorer (video/action_scorer.py): Adam steps, learning rate and real training
    # transitions; its own seed, so that one instrument scores every prior seed (prior.train.seed)
    action_scorer_steps: int = 1000
    action_scorer_lr: float = 3e-4
    action_scorer_transitions: int = 20000
    action_scorer_seed: int = 0
    fixed_actions: list[str] = field(default_factory=lambda: ["move_forward", "turn_right"])  # paper fig. 7
    eval_windows: int = 128  # held-out (episode, start) windows evaluated by PSNR/SSIM
    # the episodes the generate stage scores: "val" (held out: the reported numbers) or "train" (for choosing a
    # decoding setting such as the temperature without looking at the held-out scores)
    eval_split: str = "val"
    eval_stride: int = 16  # frames between window starts within an episode
    val_windows: int = 2048  # held-out training windows for the prior's validation NLL
    media_examples: int = 4  # windows shown in the gif strips
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=10000, batch_size=64, lr=3e-4,
                                                                   eval_every=1000, log_every=50,
                                                                   checkpoint_every=1000))

    LIMITS: ClassVar[Limits] = {"context_frames": (">=", 1), "given_frames": (">=", 1),
                                "generated_frames": (">=", 1), "temperature": (">", 0), "eval_windows": (">=", 1),
                                "eval_stride": (">=", 1), "val_windows": (">=", 1), "media_examples": (">=", 0),
                                "eval_samples": (">=", 1, "<=", 16), "moving_min_change": (">=", 0),
                                "action_scorer_steps": (">=", 0), "action_scorer_transitions": (">=", 1),
                                "action_scorer_lr": (">", 0)}
    CHOICES: ClassVar[dict[str, tuple]] = {"eval_split": ("val", "train")}


@dataclass
class VideoConfig:
    """The whole video experiment: record → frame VQ-VAE → action-conditional prior → generation."""

    env: VideoEnvConfig = field(default_factory=VideoEnvConfig)
    data: VideoDataConfig = field(default_factory=VideoDataConfig)
    model: ImageModelConfig = field(default_factory=ImageModelConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prior: VideoPriorConfig = field(default_factory=VideoPriorConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment_name="vqvae-video"))

    def check(self) -> None:
        """The frame VQ-VAE has one latent map (raises :class:`ConfigError` for ``model.levels`` > 1)."""
        if self.model.levels != 1:
            raise ConfigError(f"model.levels must be 1 for the video frame model, got {self.model.levels}")
