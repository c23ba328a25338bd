"""Stage "generate" of the video experiment: futures generated from real frames under the true, shuffled and fixed
actions on held-out episodes, scored per step against the environment's truth.

Axis legend: N frames or windows, G given frames, F generated frames, h w latent grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.pipeline import prior_checkpoint
from core.tracking import stage_tracker
from video.action_scorer import InverseDynamics, real_transitions, train_action_scorer, validate_action_scorer
from video.config import VideoConfig
from video.data import FrameDataset
from video.envs import action_index
from video.evaluate import build_windows, evaluate_generation
from video.media import confusion_figure, curves_figure, gif_frames, strip, write_gif
from video.prior_stage import latent_grid, load_checked_vqvae, load_prior, split_codes
from video.splits import Splits


def _table(curves: dict[str, np.ndarray], metric: str, oracle: bool = False) -> str:
    """One line per curve whose name starts with ``metric + "_"`` (``psnr``, ``moving/ssim``…): per step, then the
    mean over the steps (NaN steps left out); the oracle best-of-S curves alone with ``oracle``, else all others."""
    rows = [(name[len(metric) + 1:], values) for name, values in curves.items()
            if name.startswith(metric + "_") and ("_oracle_" in name) == oracle]
    steps = len(rows[0][1])
    head = f"{metric.upper():>30} " + " ".join(f"{i:>6d}" for i in range(1, steps + 1)) + "    mean"
    lines = [head] + [f"{name:>30} " + " ".join(f"{v:6.2f}" if "psnr" in metric else f"{v:6.3f}" for v in values) +
                      f"  {_mean(values):6.3f}" for name, values in rows]
    return "\n".join(lines)


def _mean(values: np.ndarray) -> float:
    """Mean over the steps that have a value (NaN when none has, without NumPy's empty-slice warning)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


@torch.no_grad()
def _vqvae_psnr(vqvae, frames: FrameDataset, device: torch.device) -> float:
    """Mean per-frame PSNR (dB) of the frame VQ-VAE's reconstructions of held-out frames."""
    from core.metrics import psnr

    total, count = 0.0, 0
    for start in range(0, len(frames), 256):
        x = torch.stack([frames[i][0] for i in range(start, min(start + 256, len(frames)))]).to(device)
        x_hat = vqvae(x).x_hat.clamp(0, 1)
        total += float(psnr(x, x_hat)) * len(x)
        count += len(x)
    return total / max(count, 1)


def _action_scorer(cfg: VideoConfig, splits: Splits, vqvae: torch.nn.Module, device: torch.device
                   ) -> tuple[InverseDynamics | None, dict[str, float], np.ndarray | None]:
    """Train the inverse-dynamics scorer on real training transitions and validate it on held-out ones (real and
    through the frame VQ-VAE); ``(None, {}, None)`` when ``prior.action_scorer_steps`` is 0."""
    p = cfg.prior
    if p.action_scorer_steps == 0:
        return None, {}, None
    train = real_transitions(splits.train, p.action_scorer_transitions, seed=p.action_scorer_seed)
    scorer = train_action_scorer(train, len(splits.action_names), steps=p.action_scorer_steps, lr=p.action_scorer_lr,
                                 seed=p.action_scorer_seed, device=device)
    held_out = real_transitions(splits.val, p.action_scorer_transitions, seed=p.action_scorer_seed)
    scores, confusion = validate_action_scorer(scorer, held_out, vqvae)
    if not scores["valid"]:
        print(f"warning: the action scorer failed validation: {scores['real_accuracy']:.1%} on held-out real "
                      f"transitions, below twice chance ({scores['chance_accuracy']:.1%}); its action accuracies "
                      f"say nothing about the rollouts")
    return scorer, {f"generate/action_scorer/{k}": v for k, v in scores.items()}, confusion


def run_generate(cfg: VideoConfig, splits: Splits, device: torch.device) -> dict[str, float]:
    """Stage "generate": 10 frames from 6 real ones under the true, shuffled and fixed actions on held-out episodes;
    per-step PSNR/SSIM as ``generate/*`` metrics (step = generated frame 1..F), gif strips as artifacts."""
    p = cfg.prior
    frozen = load_checked_vqvae(cfg, device)
    vqvae = frozen.model
    prior, payload = load_prior(prior_checkpoint(cfg), frozen, latent_grid(cfg, vqvae), device)
    if payload["action_names"] != splits.action_names:
        raise ValueError(f"the prior knows actions {payload['action_names']}, the episodes {splits.action_names}")
    if p.given_frames < prior.context_frames:
        raise ValueError(f"prior.given_frames ({p.given_frames}) < the prior's context frames ({prior.context_frames})")
    fixed = {name: action_index(splits.action_names, name) for name in p.fixed_actions}
    episodes = splits.val if p.eval_split == "val" else splits.train
    codes = split_codes(cfg, episodes, p.eval_split, frozen, device, splits.key)
    windows = build_windows(episodes, codes, p.given_frames, p.generated_frames, p.eval_stride, p.eval_windows)
    scorer, validation, real_confusion = _action_scorer(cfg, splits, vqvae, device)
    curves, media, confusions = evaluate_generation(prior, vqvae, windows, cfg.env, episodes, fixed, p.temperature,
                                                    p.train.seed, p.eval_samples, p.moving_min_change, scorer,
                                                    p.residual_decoding)
    recon_psnr = _vqvae_psnr(vqvae, FrameDataset(splits.val, max_items=cfg.data.val_frames), device)

    tracker = stage_tracker(cfg.tracking, "generate", cfg, {
        "derived.vqvae_hash": frozen.vqvae_hash, "derived.prior_checkpoint": str(prior_checkpoint(cfg)),
        "derived.eval_windows": len(windows.starts), "derived.action_names": splits.action_names})
    for step in range(p.generated_frames):
        tracker.log_metrics({f"generate/{name}": float(values[step]) for name, values in curves.items()
                             if np.isfinite(values[step])}, step + 1)
    means = {f"generate/{name}_mean": _mean(values) for name, values in curves.items() if np.isfinite(values).any()}
    metrics = {**means, **validation, "generate/vqvae_psnr": recon_psnr,
               "generate/windows": float(len(windows.starts))}
    tracker.log_metrics(metrics, p.generated_frames)
    out_dir = Path(cfg.train.output_dir) / "generate"
    shown = slice(0, p.media_examples)
    for name, (given, generated, truth) in media.items():
        truth = None if truth is None else truth[shown]
        # the recorded actions' pictures also show the same windows under shuffled actions, below / to the right
        shuffled = media["shuffled_actions"][1][shown] if name == "true_actions" else None
        tracker.log_image(strip(given[shown], generated[shown], truth, shuffled), f"strips/{name}.png")
        gif = write_gif(gif_frames(given[shown], generated[shown], truth, shuffled),
                        out_dir / "gifs" / f"{name}.gif")
        tracker.log_artifact(gif, "gifs")
    import matplotlib.pyplot as plt

    for metric in ("psnr", "ssim"):
        fig = curves_figure(curves, metric)
        tracker.log_figure(fig, f"curves/{metric}_per_step.png")
        plt.close(fig)
    if scorer is not None:
        fig = confusion_figure({"held-out real transitions": real_confusion, **confusions}, splits.action_names)
        tracker.log_figure(fig, "action_scorer/confusion.png")
        plt.close(fig)
    tracker.end()
    print(f"\ngeneration on {len(windows.starts)} {'held-out' if p.eval_split == 'val' else 'TRAINING'} windows: {p.given_frames} given frames, "
          f"{p.generated_frames} generated (temperature {p.temperature}"
          f"{', residual decoding' if p.residual_decoding else ''}); frame VQ-VAE PSNR on held-out frames "
          f"{recon_psnr:.2f} dB")
    print(f"one try: each sampled rollout scored on its own, averaged over {p.eval_samples} samples and the windows; "
          f"rows *_oracle_best_of_{p.eval_samples} choose with the true frames (an oracle)")
    metrics_shown = ("psnr", "ssim", "moving/psnr", "moving/ssim", "still/psnr", "still/ssim", "action_accuracy",
                     "code_repeat", "moving/code_repeat", "still/code_repeat")
    for oracle in (False, True):
        if oracle:
            print("oracle (chooses with the true frames; compare only these rows with each other):")
        for metric in metrics_shown:
            if any(name.startswith(metric + "_") and ("_oracle_" in name) == oracle for name in curves):
                print(_table(curves, metric, oracle))
    print(f"moving steps: {curves['moving_fraction'].mean():.1%} (per step: "
          + " ".join(f"{v:.2f}" for v in curves["moving_fraction"]) + ")")
    if validation:
        v = {k.rsplit("/", 1)[1]: x for k, x in validation.items()}
        print(f"action scorer on {int(v['transitions'])} held-out real transitions: {v['real_accuracy']:.1%}; on their "
              f"VQ-VAE reconstructions {v['vqvae_recon_accuracy']:.1%}; chance {v['chance_accuracy']:.1%}")
    print(f"MLflow UI: {tracker.ui_command()}")
    return metrics
