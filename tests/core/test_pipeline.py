"""The core pipeline with a new domain written only as an adapter, a config and a spec: 1-D signals (sines) through
vqvae → prior → sample, run by :func:`core.stages.run_domain` like the suite's own domains."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from core.checkpoint import FrozenVQVAE, load_frozen_vqvae, read_checkpoint
from core.config import QuantizerConfig, TrackingConfig, TrainConfig, from_dict, to_dict
from core.pipeline import (
    LN2,
    PipelineAdapter,
    PriorTrainer,
    code_cache,
    load_prior,
    pipeline_requires,
    pipeline_stages,
)
from core.quantize import build_quantizer
from core.stages import DomainSpec, run_domain
from core.trainer import Trainer, vqvae_loss_terms
from priors.wavenet import WaveNet

LENGTH = 32  # samples per signal; codes per signal = LENGTH / 2


# ---------------------------------------------------------------------------------------------- the config
@dataclass
class ToyPriorConfig:
    vqvae_checkpoint: str = ""
    samples: int = 3
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=6, batch_size=8, lr=3e-3, eval_every=3,
                                                                   log_every=3, checkpoint_every=3, device="cpu"))


@dataclass
class ToyConfig:
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(codebook_size=8, code_dim=4))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=8, batch_size=8, lr=3e-3, eval_every=4,
                                                                   log_every=4, checkpoint_every=4, device="cpu"))
    prior: ToyPriorConfig = field(default_factory=ToyPriorConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(enabled=False))


# ----------------------------------------------------------------------------------------------- the model
def sines(count: int, seed: int) -> torch.Tensor:
    """``[count, 1, LENGTH]`` sines of random frequency and phase."""
    g = torch.Generator().manual_seed(seed)
    freq, phase = torch.rand(count, 1, 1, generator=g) * 0.5 + 0.1, torch.rand(count, 1, 1, generator=g) * 6.28
    return torch.sin(freq * torch.arange(LENGTH) + phase)


class ToyVQVAE(nn.Module):
    def __init__(self, qcfg: QuantizerConfig):
        super().__init__()
        self.encoder = nn.Conv1d(1, qcfg.code_dim, 4, stride=2, padding=1)
        self.quantizer = build_quantizer(qcfg.kind, **qcfg.build_kwargs())
        self.decoder = nn.ConvTranspose1d(qcfg.code_dim, 1, 4, stride=2, padding=1)

    def forward(self, x):
        q = self.quantizer(self.encoder(x).transpose(1, 2))  # z_e: [B, N, D]
        x_hat = self.decoder(q.z_q.transpose(1, 2))
        recon = (x_hat - x).square().mean()
        return SimpleNamespace(loss=recon + q.loss, recon_loss=recon, quantizer=q, x_hat=x_hat)

    def encode(self, x):
        return self.quantizer(self.encoder(x).transpose(1, 2)).indices  # [B, N]

    def decode(self, codes):
        return self.decoder(self.quantizer.lookup(codes).transpose(1, 2))


def _prior(codebook_size: int) -> WaveNet:
    """An unconditional causal WaveNet over the code sequence."""
    return WaveNet(codebook_size, 8, 8, 2, 1, 2, local_channels=None, global_classes=None)


# ------------------------------------------------------------------------------------- the domain's adapter
class ToyVQVAETrainer(Trainer):
    def __init__(self, cfg: ToyConfig):
        self.val = sines(16, seed=1)
        super().__init__(lambda: ToyVQVAE(cfg.quantizer), TensorDataset(sines(64, seed=0)), cfg.train,
                         cfg.tracking, to_dict(cfg), name="vqvae")

    def compute_loss(self, batch):
        return vqvae_loss_terms(self.model(batch[0]))

    @torch.no_grad()
    def evaluate(self):
        return {"recon_loss": float(self.model(self.val).recon_loss)}


class ToyPriorTrainer(PriorTrainer):
    def __init__(self, cfg: ToyConfig, frozen: FrozenVQVAE, train_codes, val_codes):
        self.val_codes = val_codes
        k = frozen.model.quantizer.codebook_size
        super().__init__(cfg, frozen, lambda: _prior(k), TensorDataset(train_codes),
                         fits={"codebook_size": k}, derived={"code_items": len(train_codes)})

    def batch_nll(self, batch):
        return self.model.loss(batch[0])

    @torch.no_grad()
    def evaluate(self):
        return {"nll_bits_per_code": float(self.model.loss(self.val_codes)) / LN2}


class ToyAdapter(PipelineAdapter):
    def vqvae_trainer(self, ctx):
        return ToyVQVAETrainer(ctx.cfg)

    def load_vqvae(self, ctx, path):
        return load_frozen_vqvae(path, lambda d: from_dict(ToyConfig, d), lambda c, _: ToyVQVAE(c.quantizer),
                                 ctx.device)

    def prior_trainer(self, ctx, frozen):
        codes = {split: frozen.model.encode(sines(n, seed)) for split, n, seed in (("train", 64, 0), ("val", 16, 1))}
        for split, c in codes.items():  # cached where every domain caches its codes
            code_cache(ctx.cfg, split).parent.mkdir(parents=True, exist_ok=True)
            torch.save(c, code_cache(ctx.cfg, split))
        return ToyPriorTrainer(ctx.cfg, frozen, codes["train"], codes["val"])

    def load_prior(self, ctx, frozen, path):
        k = frozen.model.quantizer.codebook_size
        return load_prior(path, frozen, {"codebook_size": k}, lambda _: _prior(k),
                          ctx.device)

    def sample(self, ctx, frozen, prior, payload, tracker):
        gen = torch.Generator().manual_seed(0)
        codes = prior.generate(LENGTH // 2, batch=ctx.cfg.prior.samples, generator=gen)
        signals = frozen.model.decode(codes)
        return {"signals": float(len(signals)), "rms": float(signals.square().mean().sqrt())}


TOY = DomainSpec(name="toy", config_class=ToyConfig, stages=pipeline_stages(ToyAdapter()),
                 requires=pipeline_requires(), main_metric=("vqvae", "val/recon_loss"))


# ----------------------------------------------------------------------------------------------- the tests
@pytest.fixture
def out(tmp_path):
    return tmp_path


def test_a_toy_domain_runs_vqvae_prior_and_sample_through_the_core_pipeline(out):
    metrics = run_domain(TOY, None, [f"train.output_dir={out}"])
    assert {"recon_loss", "nll_bits_per_code", "sample/signals", "sample/rms"} <= set(metrics)
    assert metrics["sample/signals"] == 3
    # the prior learned something: fewer bits than the uniform code (log2 K = 3 bits) after 6 steps
    assert metrics["nll_bits_per_code"] < math.log2(8)
    # one record, one hash, one cache: the prior's checkpoint carries the VQ-VAE's weight hash
    vqvae = load_frozen_vqvae(out / "vqvae" / "checkpoints" / "latest.pt", lambda d: from_dict(ToyConfig, d),
                              lambda c, _: ToyVQVAE(c.quantizer))
    prior = read_checkpoint(out / "prior" / "checkpoints" / "latest.pt")
    assert prior["vqvae_hash"] == vqvae.vqvae_hash and prior["codebook_size"] == 8
    assert isinstance(vqvae.cfg, ToyConfig) and vqvae.cfg.quantizer.codebook_size == 8
    assert (out / "codes" / "train.pt").is_file()


def test_the_sample_stage_alone_repeats_the_samples_and_refuses_another_vqvae(out):
    first = run_domain(TOY, None, [f"train.output_dir={out}"])
    again = run_domain(TOY, None, [f"train.output_dir={out}"], stage="sample")
    assert again["sample/rms"] == first["sample/rms"]
    frozen = ToyAdapter().load_vqvae(SimpleNamespace(device="cpu"), out / "vqvae" / "checkpoints" / "latest.pt")
    other = FrozenVQVAE(frozen.model, frozen.cfg, "0" * 16)
    with pytest.raises(ValueError, match="vqvae_hash"):
        ToyAdapter().load_prior(SimpleNamespace(device="cpu"), other, out / "prior" / "checkpoints" / "latest.pt")


def test_a_later_stage_alone_needs_the_earlier_checkpoint(out):
    with pytest.raises(FileNotFoundError, match="--stage prior needs the vqvae stage's checkpoint"):
        run_domain(TOY, None, [f"train.output_dir={out}"], stage="prior")


def test_the_stage_seed_alone_sets_the_initial_weights(out):
    cfg = ToyConfig()
    cfg.train.output_dir = str(out)
    a, b = ToyVQVAETrainer(cfg).model, ToyVQVAETrainer(cfg).model
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    cfg.train.seed = 1
    c = ToyVQVAETrainer(cfg).model
    assert not torch.equal(a.encoder.weight, c.encoder.weight)
