"""Evaluation of action-conditional generation on held-out episodes (paper sec. 4.4, measured).

For each held-out window the prior is given the codes of ``given_frames`` real frames and generates
``generated_frames`` frames in latent space, which the frozen VQ-VAE decoder turns into pixels. The generated frames
are compared, step by step, with the true frames:

* under the true actions (the recorded future, which equals the environment's replay);
* under shuffled actions (the windows' actions permuted across windows and steps), still against the truth under the
  TRUE actions: the gap to the first row shows how much the prior uses the actions;
* under fixed action sequences (e.g. all ``move_forward``, all ``turn_right``, as in the paper's figure 7), against
  the truth replayed from the same reset seed and prefix actions (needs episodes with a known seed).

Reference rows: the frame VQ-VAE's reconstruction of the true future (what the decoder can reach), and a copy of the
last given frame, in pixels and as its decoded codes (a prior that ignored the dynamics; exact copies are right
whenever the view returns, e.g. after a left and a right turn, or does not change, e.g. walking into a wall).
Scores, the window sets and the protocols over several sampled rollouts (one try, oracle best of S): :mod:`video.protocol`.

Axis legend: N windows, G given frames, F generated frames, H W frame size, h w latent grid, 3 RGB channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from image.model import ImageVQVAE
from priors.action_pixelcnn import ActionConditionalPixelCNN
from priors.codes import from_prior_grid
from video.config import VideoEnvConfig
from video.data import Episode, evaluation_windows, to_float, to_uint8
from video.envs import make_env
from video.action_scorer import InverseDynamics, action_confusion, predict_actions, rollout_transitions
from video.protocol import curve, frame_scores, moving_steps, protocol_curves
from video.record import rollout_from

BATCH = 64


@dataclass
class Windows:
    """Held-out windows: ``given`` real frames followed by ``generated`` frames to predict."""

    episodes: list[int]  # [N] episode index of each window
    starts: list[int]  # [N] first frame of each window
    given_codes: torch.Tensor  # [N, G, h, w] long codes of the given frames
    given_frames: np.ndarray  # [N, G, H, W, 3] uint8
    actions: torch.Tensor  # [N, F] long; actions[:, i] leads from frame G − 1 + i to frame G + i of the window
    truth: np.ndarray  # [N, F, H, W, 3] uint8, the recorded future under the true actions


def build_windows(episodes: list[Episode], codes: list[torch.Tensor], given: int, generated: int, stride: int,
                  count: int) -> Windows:
    """Up to ``count`` windows of ``given + generated`` frames from the held-out episodes (see
    :func:`video.data.evaluation_windows`).

    Raises:
        ValueError: when no held-out episode is long enough.
    """
    pairs = evaluation_windows(episodes, given + generated, stride, count)
    if not pairs:
        raise ValueError(f"no held-out episode has {given + generated} frames; record longer episodes")
    e_idx, starts = [e for e, _ in pairs], [s for _, s in pairs]
    return Windows(
        episodes=e_idx, starts=starts,
        given_codes=torch.stack([codes[e][s:s + given] for e, s in pairs]),
        given_frames=np.stack([episodes[e].frames[s:s + given] for e, s in pairs]),
        actions=torch.stack([torch.from_numpy(episodes[e].actions[s + given - 1:s + given - 1 + generated])
                             for e, s in pairs]).long(),
        truth=np.stack([episodes[e].frames[s + given:s + given + generated] for e, s in pairs]))


@torch.no_grad()
def decode_float(vqvae: ImageVQVAE, codes: torch.Tensor) -> torch.Tensor:
    """Codes ``[N, F, h, w·G]`` → decoder means ``[N, F, 3, H, W]`` float32 on the CPU (not clamped)."""
    n, f = codes.shape[:2]
    device = next(vqvae.parameters()).device
    flat = codes.flatten(0, 1)  # [N*F, h, w·G]
    frames = torch.cat([vqvae.decode(from_prior_grid(chunk.to(device), vqvae.quantizer.groups)).float().cpu()
                        for chunk in flat.split(BATCH)])
    return frames.reshape(n, f, *frames.shape[1:])


def decode(vqvae: ImageVQVAE, codes: torch.Tensor) -> np.ndarray:
    """Codes ``[N, F, h, w·G]`` → frames ``[N, F, H, W, 3]`` uint8 through the frozen decoder."""
    return to_uint8(decode_float(vqvae, codes))


def residual_offset(vqvae: ImageVQVAE, anchor_codes: torch.Tensor, anchor_frames: np.ndarray) -> torch.Tensor:
    """``x_a − D(c_a)`` ``[N, 1, 3, H, W]`` float32: what :func:`decode_residual` adds to every decoded frame, from
    ``anchor_codes`` ``[N, h, w·G]`` and ``anchor_frames`` ``[N, H, W, 3]`` uint8 (the last given frame and its codes)."""
    return to_float(anchor_frames)[:, None] - decode_float(vqvae, anchor_codes[:, None])


def decode_residual(vqvae: ImageVQVAE, codes: torch.Tensor, offset: torch.Tensor) -> np.ndarray:
    """Residual decoding (``prior.residual_decoding``; beyond the paper): ``x̂_t = x_a + D(c_t) − D(c_a)``, the
    anchor frame's pixels plus the decoded change of the codes since it, clamped to [0, 1] and rounded.

    ``codes`` ``[N, F, h, w·G]`` and ``offset`` from :func:`residual_offset` → ``[N, F, H, W, 3]`` uint8. Where the
    generated codes equal the anchor's (with the decoder's receptive field around them), the anchor's real pixels
    come back exactly; a rollout that repeats the anchor's codes returns the anchor frame itself. Uses only the given
    frames, never the true future.
    """
    return to_uint8(decode_float(vqvae, codes) + offset)


def code_repeat_share(codes: torch.Tensor, anchor_codes: torch.Tensor) -> np.ndarray:
    """Share ``[N, F]`` of each frame's codes equal to the previous frame's at the same place (the last given frame's,
    ``anchor_codes`` ``[N, h, w·G]``, for the first), from ``codes`` ``[N, F, h, w·G]``. A view that does not change
    repeats all its codes (1.0); it tells how stable the frame codes are and whether the prior keeps a still view still.
    """
    previous = torch.cat([anchor_codes[:, None], codes[:, :-1]], dim=1)
    return (codes == previous).float().mean((2, 3)).numpy()


def code_repeat_curves(name: str, shares: np.ndarray, moving: np.ndarray) -> dict[str, np.ndarray]:
    """``code_repeat_<name>`` and its ``moving/`` and ``still/`` curves ``[F]`` from :func:`code_repeat_share` of S
    samples ``[S, N, F]``, averaged over the samples and the windows."""
    per_window = shares.mean(0)
    return {f"code_repeat_{name}": curve(per_window), f"moving/code_repeat_{name}": curve(per_window, moving),
            f"still/code_repeat_{name}": curve(per_window, ~moving)}


@torch.no_grad()
def generate(prior: ActionConditionalPixelCNN, given_codes: torch.Tensor, actions: torch.Tensor, temperature: float,
             seed: int, method: str = "cached") -> torch.Tensor:
    """Roll out ``[N, F, h, w]`` codes in batches; the noise is a function of ``seed`` only, so two calls with
    different actions share their random numbers (the comparison isolates the actions)."""
    device = next(prior.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    out = [prior.generate(c.to(device), a.to(device), temperature, generator, method).cpu()
           for c, a in zip(given_codes.split(BATCH), actions.split(BATCH))]
    return torch.cat(out)


def shuffle_actions(actions: torch.Tensor, seed: int) -> torch.Tensor:
    """``[N, F]`` actions permuted across windows and steps (the same multiset of actions, out of place)."""
    perm = torch.randperm(actions.numel(), generator=torch.Generator().manual_seed(seed))
    return actions.flatten()[perm].view_as(actions)


def fixed_action_truth(env_cfg: VideoEnvConfig, episodes: list[Episode], windows: Windows, given: int,
                       actions: np.ndarray) -> np.ndarray | None:
    """True futures ``[N, F, H, W, 3]`` under ``actions`` ``[F]`` for every window, replayed from each episode's
    reset seed and its actions before the window's last given frame; None if an episode has no known seed."""
    if any(episodes[e].seed is None for e in windows.episodes):
        return None
    with make_env(env_cfg) as env:
        return np.stack([rollout_from(env_cfg, episodes[e].seed, episodes[e].actions[:s + given - 1], actions, env=env)
                         for e, s in zip(windows.episodes, windows.starts)])


@torch.no_grad()
def evaluate_generation(prior: ActionConditionalPixelCNN, vqvae: ImageVQVAE, windows: Windows, env_cfg: VideoEnvConfig,
                        episodes: list[Episode], fixed: dict[str, int], temperature: float, seed: int,
                        samples: int = 1, moving_min_change: float = 1.0, scorer: InverseDynamics | None = None,
                        residual: bool = False
                        ) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, ...]], dict[str, np.ndarray]]:
    """Generate under the true, shuffled and fixed actions and score every step (:mod:`video.protocol`).

    Args:
        prior, vqvae: the trained models (eval mode).
        windows: from :func:`build_windows`.
        env_cfg: the environment, for the true futures under fixed actions.
        episodes: the held-out episodes the windows come from.
        fixed: ``{action name: action index}`` of the fixed action sequences.
        temperature: sampling temperature.
        seed: sampling seed: sample s of every condition uses the noise of ``seed + s``, so the true and the
            shuffled actions meet the same random numbers.
        samples: S rollouts per window under the true and the shuffled actions (one under fixed actions).
        moving_min_change: the moving steps' threshold (:func:`video.protocol.moving_steps`).
        scorer: an action scorer (:mod:`video.action_scorer`); when given, every generated transition is scored
            against the action the prior was given.
        residual: decode every generated rollout (true, shuffled and fixed actions) with :func:`decode_residual`
            anchored at the last given frame, instead of through the decoder alone.

    Returns:
        ``(curves, media, confusions)``: ``curves`` maps the names of :func:`video.protocol.protocol_curves` for
        ``true_actions``, ``shuffled_actions``, ``fixed_<action>`` (all windows only), ``copy_last``,
        ``copy_last_codes`` and ``vqvae_recon`` (e.g. ``psnr_true_actions``, ``moving/ssim_copy_last``,
        ``psnr_true_actions_oracle_best_of_4``), ``code_repeat_true_actions``, ``…_shuffled_actions`` and
        ``…_vqvae_recon`` (the true futures' codes) with their ``moving/`` and ``still/`` curves
        (:func:`code_repeat_share`), ``moving_fraction`` (the moving steps' share at each step) and, with a scorer,
        ``action_accuracy_<condition>`` (the share of generated transitions at each step whose scored action is the
        commanded one, over all samples and windows), to ``[F]`` arrays; ``media`` maps
        each condition to ``(given [N, G, H, W, 3], first sample's frames [N, F, H, W, 3], truth or None)``;
        ``confusions`` maps each condition to the scorer's confusion counts ``[A, A]`` (rows: commanded action).
    """
    given = windows.given_codes.shape[1]
    n, f = windows.actions.shape
    last_given = windows.given_frames[:, -1]
    moving = moving_steps(last_given, windows.truth, moving_min_change)  # [N, F]
    curves: dict[str, np.ndarray] = {"moving_fraction": moving.mean(0)}
    media: dict[str, tuple] = {}
    confusions: dict[str, np.ndarray] = {}

    def score_actions(name: str, rollouts: list[np.ndarray], actions: torch.Tensor) -> None:
        if scorer is None:
            return
        hits, counts = [], 0
        for frames in rollouts:
            transitions = rollout_transitions(last_given, frames, actions.numpy())
            predicted = predict_actions(scorer, transitions)
            hits.append((predicted == transitions.actions).reshape(n, f))
            counts = counts + action_confusion(transitions.actions, predicted, scorer.num_actions)
        curves[f"action_accuracy_{name}"] = np.stack(hits).mean((0, 1))
        confusions[name] = counts

    def score(name: str, predictions: list[np.ndarray], truth: np.ndarray) -> None:
        per_sample = [frame_scores(pred, truth) for pred in predictions]
        stacked = {k: np.stack([s[k] for s in per_sample]) for k in per_sample[0]}  # [S, N, F] each
        curves.update(protocol_curves(name, stacked, moving))

    shuffled = shuffle_actions(windows.actions, seed)
    # one bar over every rollout (each all windows), shown when stderr is a terminal
    bar = tqdm(total=2 * samples + len(fixed), desc="generating", unit="rollout", disable=None, leave=False)

    offset = residual_offset(vqvae, windows.given_codes[:, -1], last_given) if residual else None

    def rollout(actions: torch.Tensor, noise_seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``[N, F, H, W, 3]`` of one rollout and its :func:`code_repeat_share` ``[N, F]``."""
        codes = generate(prior, windows.given_codes, actions, temperature, noise_seed)
        frames = decode(vqvae, codes) if offset is None else decode_residual(vqvae, codes, offset)
        bar.update(1)
        return frames, code_repeat_share(codes, windows.given_codes[:, -1])

    for name, actions in {"true_actions": windows.actions, "shuffled_actions": shuffled}.items():
        rollouts, repeats = zip(*(rollout(actions, seed + s) for s in range(samples)))
        rollouts = list(rollouts)
        curves.update(code_repeat_curves(name, np.stack(repeats), moving))
        score(name, rollouts, windows.truth)
        score_actions(name, rollouts, actions)
        media[name] = (windows.given_frames, rollouts[0], windows.truth)
    for name, index in fixed.items():
        sequence = np.full(f, index, dtype=np.int64)
        truth = fixed_action_truth(env_cfg, episodes, windows, given, sequence)
        actions = torch.from_numpy(sequence).expand(n, f).contiguous()
        frames, _ = rollout(actions, seed)
        score_actions(f"fixed_{name}", [frames], actions)
        if truth is not None:  # all windows, one sample
            curves.update({f"{m}_fixed_{name}": curve(v) for m, v in frame_scores(frames, truth).items()})
        media[f"fixed_{name}"] = (windows.given_frames, frames, truth)
    bar.close()
    score("copy_last", [np.repeat(windows.given_frames[:, -1:], f, axis=1)], windows.truth)
    score("copy_last_codes", [decode(vqvae, windows.given_codes[:, -1:].expand(-1, f, -1, -1))], windows.truth)
    device = next(vqvae.parameters()).device
    truth = to_float(windows.truth)  # [N, F, 3, H, W]
    codes = torch.cat([vqvae.encode(chunk.flatten(0, 1).to(device)).cpu() for chunk in truth.split(BATCH)])
    codes = codes.reshape(n, f, *codes.shape[1:])  # [N, F, h, w] or [N, F, h, w, G]
    if codes.dim() == 5:
        codes = codes.flatten(3)  # [N, F, h, w·G]
    score("vqvae_recon", [decode(vqvae, codes)], windows.truth)
    curves.update(code_repeat_curves("vqvae_recon", code_repeat_share(codes, windows.given_codes[:, -1])[None], moving))
    return curves, media, confusions
