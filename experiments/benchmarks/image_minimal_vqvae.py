"""A minimal single-file image VQ-VAE, the baseline the suite's image job must beat on the same crops.

Independent of ``core``'s quantizers, trainer and the suite's model: its own encoder/decoder (the sonnet example's
layout: the decoder starts with a 3×3 convolution from the code space), its own EMA codebook (appendix A.1) with
data initialisation and dead-code restart, Adam at a constant learning rate, and ``MSE / data_variance + β·commitment``.
It trains on the suite's embedded training crops and scores the suite's held-out crops, so its number sits beside
the suite's on identical data.

    python -m experiments.benchmarks.image_minimal_vqvae [--steps 5000] [--device cpu] [--seed 0] [--no-debian-photos]

Prints one JSON line: held-out ``psnr`` (PSNR of the pooled MSE, dB), ``psnr_per_image`` (mean per-crop PSNR, dB),
``mse``, ``perplexity`` over the held-out codes, ``steps`` and the wall time in seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from core.data import data_variance
from core.metrics import psnr_of_mse
from image.config import ImageDataConfig
from image.data import build_image_datasets


def _res(ch: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(ch, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, ch, 1))


class _Residual(nn.Module):
    def __init__(self, ch: int, hidden: int):
        super().__init__()
        self.body = _res(ch, hidden)

    def forward(self, x):
        return x + self.body(x)


class MinimalVQVAE(nn.Module):
    """128 hidden, 32 residual hidden, two residual blocks, K codes of dimension D, 32×32 → 8×8 latents."""

    def __init__(self, k: int = 512, d: int = 64, hidden: int = 128, res_hidden: int = 32, decay: float = 0.99):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, hidden // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(hidden // 2, hidden, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), _Residual(hidden, res_hidden), _Residual(hidden, res_hidden),
            nn.ReLU(), nn.Conv2d(hidden, d, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(d, hidden, 3, padding=1), _Residual(hidden, res_hidden), _Residual(hidden, res_hidden),
            nn.ReLU(), nn.ConvTranspose2d(hidden, hidden // 2, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(hidden // 2, 3, 4, 2, 1))
        self.decay, self.k = decay, k
        self.register_buffer("codebook", torch.zeros(k, d))
        self.register_buffer("count", torch.ones(k))
        self.register_buffer("total", torch.zeros(k, d))
        self.register_buffer("usage", torch.zeros(k))
        self.initialised = False

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z: [N, D]`` → (nearest codes ``[N, D]``, indices ``[N]``); EMA update in training mode."""
        if self.training and not self.initialised:
            self.codebook.copy_(z[torch.randperm(len(z), device=z.device)[:self.k]])
            self.total.copy_(self.codebook)
            self.initialised = True
        idx = torch.cdist(z, self.codebook).argmin(1)
        if self.training:
            onehot = F.one_hot(idx, self.k).float()
            self.count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
            self.total.mul_(self.decay).add_(onehot.t() @ z, alpha=1 - self.decay)
            n = self.count.sum()
            smoothed = (self.count + 1e-5) / (n + self.k * 1e-5) * n
            self.codebook.copy_(self.total / smoothed[:, None])
            self.usage += onehot.sum(0)
        return self.codebook[idx], idx

    def restart_dead_codes(self, z: torch.Tensor) -> None:
        """Move codes unused since the last call onto random encoder outputs of ``z: [N, D]``."""
        dead = self.usage < 1
        if dead.any():
            fresh = z[torch.randint(len(z), (int(dead.sum()),), device=z.device)]
            self.codebook[dead], self.total[dead], self.count[dead] = fresh, fresh, 1.0
        self.usage.zero_()

    def forward(self, x: torch.Tensor):
        z = self.encoder(x - 0.5)  # [B, D, 8, 8]
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # [N, D]
        with torch.no_grad():
            e, idx = self.quantize(flat.detach())
        commitment = F.mse_loss(flat, e)
        z_q = (flat + (e - flat).detach()).reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        return self.decoder(z_q) + 0.5, commitment, idx, flat.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-debian-photos", action="store_true", help="train on the wheels' photos only")
    parser.add_argument("--photo-root", default=ImageDataConfig.photo_root)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    data_cfg = ImageDataConfig(debian_photos=not args.no_debian_photos, photo_root=args.photo_root)
    train, val = build_image_datasets(data_cfg, seed=args.seed)
    variance = data_variance(train)
    model = MinimalVQVAE().to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)
    for step in range(args.steps):
        rows = torch.randint(len(train), (args.batch_size,), generator=gen).tolist()
        x = torch.stack([train[i][0] for i in rows]).to(args.device)
        x_hat, commitment, _, flat = model(x)
        loss = F.mse_loss(x_hat, x) / variance + 0.25 * commitment
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            model.restart_dead_codes(flat)
    model.eval()
    sq_sum, psnrs, counts = 0.0, [], torch.zeros(model.k)
    with torch.no_grad():
        for i in range(0, len(val), 256):
            x = torch.stack([val[j][0] for j in range(i, min(i + 256, len(val)))]).to(args.device)
            x_hat, _, idx, _ = model(x)
            err = (x_hat.clamp(0, 1) - x).square().flatten(1).mean(1).cpu()  # [B] per-crop MSE
            sq_sum += float(err.sum())
            psnrs += (10 * torch.log10(1 / err.clamp_min(1e-10))).tolist()
            counts += torch.bincount(idx.cpu(), minlength=model.k).float()
    p = counts / counts.sum()
    mse = sq_sum / len(val)
    print(json.dumps({"model": "minimal", "steps": args.steps, "psnr": psnr_of_mse(mse),
                      "psnr_per_image": sum(psnrs) / len(psnrs), "mse": mse,
                      "perplexity": float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())),
                      "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
