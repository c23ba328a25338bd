"""``experiments/run.py video`` end to end into tmp_path, the prior's checks of its VQ-VAE, and every video YAML."""

import dataclasses
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from core.checkpoint import read_checkpoint
from core.config import load_config
from experiments import run
from image.model import ImageVQVAE
from video.config import VideoConfig
from video.prior_stage import build_prior, load_frame_vqvae, load_prior

CONFIGS = Path(run.__file__).resolve().parent / "configs"
TINY = ["--config", str(Path(run.__file__).resolve().parent / "configs" / "video" / "debug.yaml")]  # the tiny setting


def _args(tmp_path, *extra):
    return ["video", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *TINY,
            f"train.output_dir={tmp_path / 'out'}", *extra]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("video/*.yaml")), ids=lambda p: p.name)
def test_every_video_config_loads_and_builds(path):
    cfg = load_config(VideoConfig, path)
    vqvae = ImageVQVAE(cfg.model, cfg.quantizer)
    grid = vqvae.latent_shape(cfg.env.frame_size, cfg.env.frame_size)
    prior = build_prior(cfg, cfg.quantizer.codebook_size, 3)
    assert prior.num_codes == vqvae.quantizer.codebook_size and prior.context_frames == cfg.prior.context_frames
    assert cfg.prior.given_frames >= cfg.prior.context_frames and cfg.data.val_seed >= cfg.data.train_episodes
    if path.name == "paper.yaml":
        assert cfg.env.frame_size == 84 and grid == (21, 21) and cfg.quantizer.codebook_size == 512
        assert (cfg.prior.given_frames, cfg.prior.generated_frames) == (6, 10)


def test_fast_config_runs_end_to_end_into_tmp_path(tmp_path):
    metrics = run.main(_args(tmp_path))
    for key in ("psnr", "perplexity", "nll_bits_per_code", "generate/psnr_true_actions_mean",
                "generate/psnr_shuffled_actions_mean", "generate/ssim_true_actions_mean", "generate/psnr_fixed_turn_right_mean",
                "generate/vqvae_psnr"):
        assert key in metrics, key
    out = tmp_path / "out"
    vqvae_ckpt = read_checkpoint(out / "vqvae" / "checkpoints" / "latest.pt")
    assert vqvae_ckpt["step"] == 4 and vqvae_ckpt["config"]["env"]["frame_size"] == 16
    prior_ckpt = read_checkpoint(out / "prior" / "checkpoints" / "latest.pt")
    assert prior_ckpt["step"] == 4 and prior_ckpt["codebook_size"] == 16 and tuple(prior_ckpt["grid"]) == (4, 4)
    assert prior_ckpt["action_names"] == ["turn_left", "turn_right", "move_forward"]
    assert (out / "codes" / "train.pt").is_file() and list((out / "episodes").glob("*/manifest.json"))

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {r.data.params["stage"]: r for r in client.search_runs([client.get_experiment_by_name("vqvae-video")
                                                                   .experiment_id])}
    assert set(runs) == {"vqvae", "prior", "generate"} and all(r.info.status == "FINISHED" for r in runs.values())
    assert {"train/recon_loss", "val/psnr", "val/perplexity"} <= set(runs["vqvae"].data.metrics)
    assert runs["prior"].data.params["derived.vqvae_hash"] == prior_ckpt["vqvae_hash"]
    assert {"train/nll_bits_per_code", "val/nll_bits_per_code", "val/nll_bits_per_code_shuffled_actions"} <= set(
        runs["prior"].data.metrics)
    gen = runs["generate"]
    history = client.get_metric_history(gen.info.run_id, "generate/psnr_true_actions")
    assert sorted(m.step for m in history) == list(range(1, 11))
    for name in ("psnr_shuffled_actions", "ssim_true_actions", "ssim_shuffled_actions", "psnr_fixed_move_forward",
                 "psnr_copy_last", "psnr_copy_last_codes", "psnr_vqvae_recon", "vqvae_psnr",
                 "psnr_true_actions_oracle_best_of_2", "ssim_shuffled_actions_oracle_best_of_2",
                 "moving/psnr_true_actions", "moving/ssim_copy_last", "moving/psnr_vqvae_recon", "moving_fraction",
                 "action_accuracy_true_actions", "action_accuracy_shuffled_actions",
                 "action_accuracy_fixed_turn_right", "action_scorer/real_accuracy",
                 "action_scorer/vqvae_recon_accuracy", "action_scorer/chance_accuracy", "action_scorer/valid",
                 "code_repeat_true_actions", "moving/code_repeat_shuffled_actions", "code_repeat_vqvae_recon"):
        assert f"generate/{name}" in gen.data.metrics, name
    assert metrics["generate/psnr_true_actions_oracle_best_of_2_mean"] >= metrics["generate/psnr_true_actions_mean"] - 1e-9
    assert 0 <= metrics["generate/action_accuracy_true_actions_mean"] <= 1
    valid = metrics["generate/action_scorer/real_accuracy"] >= 2 * metrics["generate/action_scorer/chance_accuracy"]
    assert metrics["generate/action_scorer/valid"] == float(valid)
    assert "action_scorer/confusion.png" in {a.path for a in client.list_artifacts(gen.info.run_id, "action_scorer")}
    assert {"curves/psnr_per_step.png", "curves/ssim_per_step.png"} <= {
        a.path for a in client.list_artifacts(gen.info.run_id, "curves")}
    artifacts = {a.path for folder in ("gifs", "strips") for a in client.list_artifacts(gen.info.run_id, folder)}
    for name in ("true_actions", "shuffled_actions", "fixed_move_forward", "fixed_turn_right"):
        assert f"gifs/{name}.gif" in artifacts and f"strips/{name}.png" in artifacts

    # the generate stage alone reuses the recordings and the code cache and repeats the same numbers
    again = run.main(_args(tmp_path, "--stage", "generate"))
    assert again["generate/psnr_true_actions_mean"] == pytest.approx(metrics["generate/psnr_true_actions_mean"])
    # scored on training windows instead (for choosing a decoding setting): other windows, other numbers
    on_train = run.main(_args(tmp_path, "--stage", "generate", "prior.eval_split=train"))
    assert on_train["generate/psnr_copy_last_mean"] != pytest.approx(
        metrics["generate/psnr_copy_last_mean"])
    # residual decoding changes the rollouts' pixels, not the baselines
    residual = run.main(_args(tmp_path, "--stage", "generate", "prior.residual_decoding=true"))
    for name in ("psnr_copy_last_mean", "psnr_copy_last_codes_mean", "psnr_vqvae_recon_mean"):
        assert residual[f"generate/{name}"] == pytest.approx(metrics[f"generate/{name}"])
    assert residual["generate/psnr_true_actions_mean"] != pytest.approx(metrics["generate/psnr_true_actions_mean"])

    # the prior refuses a VQ-VAE of other weights or another latent grid
    frozen = load_frame_vqvae(out / "vqvae" / "checkpoints" / "latest.pt", torch.device("cpu"))
    other = dataclasses.replace(frozen, vqvae_hash="other")
    with pytest.raises(ValueError, match="prior's vqvae_hash"):
        load_prior(out / "prior" / "checkpoints" / "latest.pt", other, (4, 4), torch.device("cpu"))
    with pytest.raises(ValueError, match="prior's grid"):
        load_prior(out / "prior" / "checkpoints" / "latest.pt", frozen, (8, 8), torch.device("cpu"))


def test_paper_config_runs_a_few_steps_of_every_stage(tmp_path):
    # the paper's model sizes (84×84 frames → 21×21 codes, 256-wide VQ-VAE, 20-layer prior) on a few tiny episodes
    paper = str(CONFIGS / "video" / "paper.yaml")
    small = ["data.train_episodes=2", "data.val_episodes=1", "data.steps_per_episode=17", "data.val_frames=4",
             "train.steps=2", "train.batch_size=2", "train.eval_every=2", "train.checkpoint_every=2",
             "train.device=cpu",
             "prior.train.steps=2", "prior.train.batch_size=2", "prior.train.eval_every=2",
             "prior.train.checkpoint_every=2", "prior.val_windows=2", "prior.eval_windows=1", "prior.eval_samples=1",
             "prior.generated_frames=2", "prior.fixed_actions=[move_forward]", "prior.media_examples=1",
             "prior.action_scorer_steps=2", "prior.action_scorer_transitions=8"]
    metrics = run.main(["video", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--config", paper,
                        f"train.output_dir={tmp_path / 'out'}", *small])
    prior = read_checkpoint(tmp_path / "out" / "prior" / "checkpoints" / "latest.pt")
    assert prior["step"] == 2 and tuple(prior["grid"]) == (21, 21)
    assert {"generate/psnr_true_actions_mean", "generate/moving/psnr_copy_last_mean"} <= set(metrics)


def test_cli_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="known stages"):
        run.main(_args(tmp_path, "--stage", "decode"))
    with pytest.raises(ValueError, match="known backends"):
        run.main(_args(tmp_path, "env.backend=dmlab", "--stage", "record"))


def test_a_prior_checkpoint_written_before_the_moving_frames_were_redefined_still_loads():
    from core.config import ConfigError, from_dict, to_dict
    from video.config import VideoConfig
    from video.prior_stage import _current

    stored = to_dict(VideoConfig())
    stored["prior"]["moving_threshold_db"] = 30.0  # the retired key, as older checkpoints hold it
    with pytest.raises(ConfigError, match="moving_threshold_db"):
        from_dict(VideoConfig, stored)
    assert from_dict(VideoConfig, _current(stored)).prior.moving_min_change == 1.0
