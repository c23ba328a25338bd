"""``experiments/run.py image`` end to end on the embedded images, configs, resume, and CLI errors."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from core.checkpoint import read_checkpoint
from core.config import ConfigError, load_config
from experiments import run
from image.config import ImageConfig
from image.vqvae_stage import ImageVQVAETrainer
from image.hierarchy import build_image_vqvae

CONFIGS = Path(run.__file__).resolve().parent / "configs"
FAST = ["--config", str(Path(run.__file__).resolve().parent / "configs" / "image" / "debug.yaml")]  # the tiny setting


def _args(tmp_path, *extra):
    return ["image", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *FAST,
            f"train.output_dir={tmp_path / 'out'}", *extra]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("image/*.yaml")), ids=lambda p: p.name)
def test_every_image_config_loads_and_builds(path):
    cfg = load_config(ImageConfig, path)
    with torch.device("meta"):  # the paper-size models without their memory
        model = build_image_vqvae(cfg.model, cfg.quantizer)
    quantizers = getattr(model, "quantizers", [getattr(model, "quantizer", None)])
    assert len(quantizers) == cfg.model.levels
    assert all(q.codebook_size == cfg.quantizer.codebook_size for q in quantizers)


def test_two_level_config_runs_end_to_end_into_tmp_path(tmp_path):
    tiny = str(CONFIGS / "image" / "vqvae2_debug.yaml")
    args = ["image", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--config", tiny,
            f"train.output_dir={tmp_path / 'out'}"]
    metrics = run.main(args)
    assert {"psnr", "bicubic_psnr", "top/psnr", "top/bicubic_psnr", "bottom/perplexity", "top/perplexity",
            "bottom/dead_codes", "top/dead_codes", "nature/top/psnr"} <= set(metrics)
    assert {"nll_bits_per_code", "bottom/nll_bits_per_code", "top/nll_bits_per_code", "bits_per_dim",
            "bottom/prior_bits_per_dim", "top/prior_bits_per_dim"} <= set(metrics)
    assert metrics["prior_bits_per_dim"] == pytest.approx(metrics["bottom/prior_bits_per_dim"]
                                                          + metrics["top/prior_bits_per_dim"])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    vqvae = read_checkpoint(tmp_path / "out" / "vqvae" / "checkpoints" / "latest.pt")
    r = client.get_run(vqvae["mlflow_run_id"])
    assert {"train/top/perplexity", "train/bottom/commitment_loss", "val/top/psnr"} <= set(r.data.metrics)
    assert {Path(a.path).name for a in client.list_artifacts(r.info.run_id, "codebook_usage")} == {
        "bottom_step_0000004.png", "top_step_0000004.png"}
    grid = client.download_artifacts(r.info.run_id, "reconstructions/held_out_step_0000004.png", str(tmp_path))
    assert Image.open(grid).height == 3 * (4 * 32 + 2 * 2)  # rows: originals, top alone, top + bottom
    prior = read_checkpoint(tmp_path / "out" / "prior" / "checkpoints" / "latest.pt")
    assert [tuple(g) for g in prior["grids"]] == [(8, 8), (4, 4)] and prior["levels"] == 2
    p = client.get_run(prior["mlflow_run_id"])
    assert {"train/top/nll_bits_per_code", "val/bottom/nll_bits_per_code", "val/bits_per_dim"} <= set(p.data.metrics)
    samples = {Path(a.path).name for a in client.list_artifacts(p.info.run_id, "samples")}
    assert {"step_0000004.png", "levels_step_0000004.png"} <= samples  # full samples; top alone beside every level
    levels = client.download_artifacts(p.info.run_id, "samples/levels_step_0000004.png", str(tmp_path))
    assert Image.open(levels).height == 2 * (4 * 32 + 2 * 2)  # rows: top alone, top + bottom; enlarged 4×
    assert run.main(args + ["--stage", "sample"])["sample/images"] == 4
    photo = tmp_path / "mine.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(photo)
    assert set(run.main(args + ["--stage", "reconstruct", "--input", str(photo)])) == {"psnr/mine.png", "psnr_mean"}


def test_default_config_runs_end_to_end_into_tmp_path(tmp_path):
    metrics = run.main(_args(tmp_path, "train.steps=6"))
    assert {"mse", "nmse", "psnr", "psnr_per_image", "perplexity", "codebook_usage", "dead_codes"} <= set(metrics)
    assert metrics["psnr"] == pytest.approx(10 * math.log10(1 / metrics["mse"]))  # pooled, as tables report
    assert metrics["psnr_per_image"] >= metrics["psnr"] - 1e-9  # Jensen: the mean of logs is at least the log of means
    assert {"nll_bits_per_code", "bits_per_dim", "recon_bits_per_dim", "prior_bits_per_dim"} <= set(metrics)
    assert {"bicubic_psnr", "nature/psnr", "nature/psnr_per_image", "nature/bicubic_psnr"} <= set(metrics)
    ckpt = tmp_path / "out" / "vqvae" / "checkpoints" / "latest.pt"
    payload = read_checkpoint(ckpt)
    assert payload["step"] == 6 and payload["config"]["quantizer"]["codebook_size"] == 32
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    r = client.get_run(payload["mlflow_run_id"])
    assert r.info.status == "FINISHED" and r.data.params["quantizer.kind"] == "ema"
    assert {"train/loss", "train/recon_loss", "train/commitment_loss", "val/psnr", "val/perplexity"} <= set(r.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"reconstructions", "codebook_usage"} <= artifacts
    pictures = {Path(a.path).name for a in client.list_artifacts(r.info.run_id, "reconstructions")}
    assert {"held_out_step_0000006.png", "nature_step_0000006.png", "full_chelsea_step_0000006.png",
            "full_GreenMeadow_step_0000006.png"} <= pictures

    prior = read_checkpoint(tmp_path / "out" / "prior" / "checkpoints" / "latest.pt")
    # the default's two codebooks per position sit side by side in the prior's grid
    assert prior["step"] == 4 and prior["codebook_size"] == 32 and tuple(prior["grid"]) == (8, 16)
    p = client.get_run(prior["mlflow_run_id"])
    assert p.data.params["derived.vqvae_hash"] == prior["vqvae_hash"]
    assert {"train/nll_bits_per_code", "val/nll_bits_per_code", "val/bits_per_dim"} <= set(p.data.metrics)
    assert "samples" in {a.path for a in client.list_artifacts(p.info.run_id)}

    assert run.main(_args(tmp_path, "--stage", "sample"))["sample/images"] == 4

    photo = tmp_path / "mine.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(photo)
    scores = run.main(_args(tmp_path, "--stage", "reconstruct", "--input", str(photo)))
    assert set(scores) == {"psnr/mine.png", "psnr_mean"} and (tmp_path / "out" / "reconstruct" / "mine.png").exists()


def test_reconstruct_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="--input PATH_OR_FOLDER goes with --stage reconstruct"):
        run.main(_args(tmp_path, "--stage", "reconstruct"))
    with pytest.raises(ValueError, match="--input PATH_OR_FOLDER goes with --stage reconstruct"):
        run.main(_args(tmp_path, "--input", str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run.main(_args(tmp_path, "--stage", "reconstruct", "--input", str(tmp_path / "nowhere.png")))
    photo = tmp_path / "mine.png"
    Image.new("RGB", (8, 8)).save(photo)
    with pytest.raises(FileNotFoundError):  # no trained VQ-VAE in this output folder yet
        run.main(_args(tmp_path, "--stage", "reconstruct", "--input", str(photo)))
    with pytest.raises(SystemExit, match="--input is an option of: image"):
        run.main(["audio", "--input", str(photo)])


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, monkeypatch):
    run.main(_args(tmp_path / "a", "train.steps=6", "--stage", "vqvae"))

    original = ImageVQVAETrainer.compute_loss

    def killed_at_step_5(self, batch):
        if self.step == 4:  # after the step-3 checkpoint, during step 5
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(ImageVQVAETrainer, "compute_loss", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        run.main(_args(tmp_path / "b", "train.steps=6", "--stage", "vqvae"))
    monkeypatch.setattr(ImageVQVAETrainer, "compute_loss", original)
    assert read_checkpoint(tmp_path / "b" / "out" / "vqvae" / "checkpoints" / "latest.pt")["step"] == 3
    run.main(_args(tmp_path / "b", "train.steps=6", "--stage", "vqvae") + ["--resume"])
    a = read_checkpoint(tmp_path / "a" / "out" / "vqvae" / "checkpoints" / "latest.pt")["model"]
    b = read_checkpoint(tmp_path / "b" / "out" / "vqvae" / "checkpoints" / "latest.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_cli_errors_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="known domains: audio, image, video"):
        run.main(["imagery"])
    with pytest.raises(SystemExit, match="--speaker-convert is an option of: audio"):
        run.main(["image", "--speaker-convert"])
    with pytest.raises(ConfigError, match="unknown config key quantizer.betta"):
        run.main(_args(tmp_path, "quantizer.betta=0.5"))
    with pytest.raises(ConfigError, match="train.steps: expected int"):
        run.main(_args(tmp_path, "train.steps=many"))
    with pytest.raises(ValueError, match="known stages"):
        run.main(_args(tmp_path, "--stage", "decode"))
    with pytest.raises(ConfigError, match="known kinds"):
        run.main(_args(tmp_path, "quantizer.kind=rvq"))
    with pytest.raises(ConfigError, match="model.levels=2 takes quantizer.kind vq or ema"):
        run.main(_args(tmp_path, "model.levels=2", "quantizer.kind=sq"))
    with pytest.raises(ConfigError, match="data.crop_size \\(36\\) must be a multiple of 8"):
        run.main(_args(tmp_path, "model.levels=2", "quantizer.groups=1", "data.crop_size=36"))


def test_bf16_precision_trains_with_float32_weights_and_codebooks(tmp_path, monkeypatch):
    seen = []  # the dtype of the encoder's first convolution's output at every training step
    original = ImageVQVAETrainer.compute_loss

    def recorded(self, batch):
        hook = self.model.encoder.net[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
        try:
            return original(self, batch)
        finally:
            hook.remove()

    monkeypatch.setattr(ImageVQVAETrainer, "compute_loss", recorded)
    monkeypatch.setattr("core.precision.native_bf16", lambda device: True)  # as on a CPU with AVX-512 or AMX
    metrics = run.main(_args(tmp_path, "train.precision=bf16", "--stage", "vqvae"))
    assert math.isfinite(metrics["psnr"]) and metrics["psnr"] > 5
    assert seen and set(seen) == {torch.bfloat16}  # the training forward really ran in bfloat16
    seen.clear()
    run.main(_args(tmp_path / "fp32", "--stage", "vqvae"))
    assert seen and set(seen) == {torch.float32}
    state = read_checkpoint(tmp_path / "out" / "vqvae" / "checkpoints" / "latest.pt")["model"]
    assert all(v.dtype == torch.float32 for k, v in state.items() if v.is_floating_point())
    seen.clear()
    monkeypatch.setattr("core.precision.native_bf16", lambda device: False)  # an AVX2-only CPU: emulated bf16
    run.main(_args(tmp_path / "emulated", "train.precision=bf16", "--stage", "vqvae"))
    assert seen and set(seen) == {torch.float32}
    with pytest.raises(ConfigError, match="known precisions: fp32, bf16"):
        run.main(_args(tmp_path, "train.precision=fp16"))
