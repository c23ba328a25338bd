"""The loss-trained codebook at the image default: at the paper's learning rate the encoder outruns the codes in the
first steps; the default's ``per_kind.vq`` multiple keeps them together (README, "Why vq is fragile")."""

import torch

from core.config import load_config
from core.data import data_variance, step_batch_indices
from core.optim import parameter_groups, set_learning_rate
from core.trainer import seed_everything
from image.config import ImageConfig
from image.data import build_image_datasets
from image.hierarchy import build_image_vqvae


def _largest_commitment(train, variance, cfg, steps: int) -> float:
    seed_everything(cfg.train.seed)
    model = build_image_vqvae(cfg.model, cfg.quantizer, data_variance=variance)
    optimizer = torch.optim.Adam(parameter_groups(model), lr=cfg.train.lr)
    set_learning_rate(optimizer, cfg.train.lr)
    largest = 0.0
    for step in range(steps):
        x = torch.stack([train[i][0] for i in step_batch_indices(len(train), 32, cfg.train.seed, step)])
        out = model(x)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        largest = max(largest, out.quantizer.commitment_loss.item())
    return largest


def test_the_default_codebook_learning_rate_keeps_vq_codes_with_the_encoder():
    config = "experiments/configs/image/default.yaml"
    cfg = load_config(ImageConfig, config, ["quantizer.kind=vq", "train.seed=1"])
    assert cfg.quantizer.codebook_lr_scale == 100.0  # the default config's per_kind.vq
    paper = load_config(ImageConfig, config, ["quantizer.kind=vq", "train.seed=1", "quantizer.codebook_lr_scale=1"])
    train, _ = build_image_datasets(cfg.data, cfg.train.seed)
    variance = data_variance(train)
    assert _largest_commitment(train, variance, paper, 20) > 10.0  # the runaway (mean squared distance per element)
    assert _largest_commitment(train, variance, cfg, 20) < 1.0
