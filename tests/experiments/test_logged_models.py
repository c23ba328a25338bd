"""Each training stage logs an MLflow model that ``mlflow.pytorch.load_model`` brings back, reproducing the job's
held-out reconstructions (VQ-VAE) and logits (prior) exactly, tagged with the VQ-VAE's weight hash and registered
when asked."""

from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from core.checkpoint import read_checkpoint
from core.config import load_config
from core.tracking import using_tracking_uri
from experiments import run
from image.config import ImageConfig
from image.data import build_image_datasets
from image.prior_stage import load_frozen_vqvae, load_prior

DEBUG = Path(run.__file__).resolve().parent / "configs" / "image" / "debug.yaml"


def test_image_job_logs_loadable_models_that_reproduce_its_reconstructions_and_logits(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    run.main(["image", "--tracking-uri", uri, "--config", str(DEBUG), "--stage", "vqvae,prior",
              f"train.output_dir={out}", "tracking.register_model=photos"])
    frozen = load_frozen_vqvae(out / "vqvae" / "checkpoints" / "latest.pt", torch.device("cpu"))
    prior, grid, _ = load_prior(out / "prior" / "checkpoints" / "latest.pt", frozen, torch.device("cpu"))
    vqvae_run = read_checkpoint(out / "vqvae" / "checkpoints" / "latest.pt")["mlflow_run_id"]
    prior_run = read_checkpoint(out / "prior" / "checkpoints" / "latest.pt")["mlflow_run_id"]

    with using_tracking_uri(uri):  # mlflow.set_tracking_uri(uri), undone afterwards
        _check_loaded_models(uri, frozen, prior, grid, vqvae_run, prior_run)


def _check_loaded_models(uri, frozen, prior, grid, vqvae_run, prior_run):
    model = mlflow.pytorch.load_model(f"runs:/{vqvae_run}/model")
    cfg = load_config(ImageConfig, DEBUG)
    _, val = build_image_datasets(cfg.data, cfg.train.seed)
    x = torch.stack([val[i][0] for i in range(len(val))])  # every held-out crop the job scores
    with torch.no_grad():
        assert torch.equal(model(x), frozen.model(x).x_hat)
        bigger = torch.rand(2, 3, 64, 96)  # the sides are dynamic: whole images of other sizes
        assert torch.equal(model(bigger), frozen.model(bigger).x_hat)

    logits_model = mlflow.pytorch.load_model(f"runs:/{prior_run}/model")
    codes = torch.randint(frozen.model.quantizer.codebook_size, (3, *grid))
    with torch.no_grad():
        assert torch.equal(logits_model(codes), prior(codes))

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    models = {m.source_run_id: m for m in mlflow.search_logged_models(experiment_ids=experiments, output_format="list")}
    assert set(models) == {vqvae_run, prior_run}
    for name, run_id in (("photos-vqvae", vqvae_run), ("photos-prior", prior_run)):
        versions = client.search_model_versions(f"name = '{name}'")
        assert len(versions) == 1 and versions[0].run_id == run_id
        logged = models[run_id]
        assert logged.tags["vqvae_hash"] == frozen.vqvae_hash and logged.tags["stage"] == name.split("-")[1]
        assert logged.params["quantizer.codebook_size"] == str(cfg.quantizer.codebook_size)
    spec = mlflow.models.get_model_info(f"runs:/{vqvae_run}/model").signature.inputs.inputs
    assert [(s.name, s.shape) for s in spec] == [("x", (-1, 3, -1, -1))]


def test_log_models_false_logs_none(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run.main(["image", "--tracking-uri", uri, "--config", str(DEBUG), "--stage", "vqvae",
              f"train.output_dir={tmp_path / 'out'}", "tracking.log_models=false"])
    experiments = [e.experiment_id for e in MlflowClient(uri).search_experiments()]
    with using_tracking_uri(uri):
        assert mlflow.search_logged_models(experiment_ids=experiments, output_format="list") == []
