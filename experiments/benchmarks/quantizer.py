"""Forward + backward time of the core quantizers against vector-quantize-pytorch and the matmul floor.

    python experiments/benchmarks/quantizer.py [--n 65536] [--dim 64] [--codebook-size 512] [--repeats 7]
        [--device cpu|cuda]

Every quantizer gets the same ``[B, T, D]`` float32 input with ``B·T = n`` vectors in training mode and runs
``out = q(z); (out.z_q.sum() + out.loss).backward()``; vector-quantize-pytorch's ``VectorQuantize`` runs at the
paper's settings (EMA decay 0.99, commitment weight 0.25, rotation trick off). The floor is the nearest-code
matrix product alone, ``2·n·K·D`` FLOPs, at this machine's float32 matmul rate measured in the same run on a
4096² product on the same device. Prints one table with the time per call (median) and the ratios to the library
and to the floor. On CUDA every call is timed with CUDA events (``experiments/benchmarks/timing.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.quantize import EMAVectorQuantizer, GaussianSQVectorQuantizer, VectorQuantizer  # noqa: E402
from experiments.benchmarks.timing import benchmark_device, describe, median_seconds, seconds  # noqa: E402


def _median_ms(fn, device: torch.device, repeats: int, warmup: int = 2) -> float:
    return 1e3 * median_seconds(fn, device, repeats, warmup)


def matmul_gflops(device: torch.device, size: int = 4096, repeats: int = 5) -> float:
    """Best float32 matmul rate of a ``size``² product on ``device``, in GFLOP/s."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    best = min(seconds(lambda: a @ b, device) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _ours(quantizer, z):
    def step():
        zz = z.detach().requires_grad_(True)
        out = quantizer(zz)
        (out.z_q.sum() + out.loss).backward()
    return step


def _library(z, dim: int, codebook_size: int, device: torch.device):
    try:
        from vector_quantize_pytorch import VectorQuantize
    except ImportError:
        return None
    vq = VectorQuantize(dim=dim, codebook_size=codebook_size, decay=0.99, commitment_weight=0.25,
                        rotation_trick=False).to(device).train()

    def step():
        zz = z.detach().requires_grad_(True)
        quantized, _, commit = vq(zz)
        (quantized.sum() + commit.sum()).backward()
    return step


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=65536, help="vectors per call")
    parser.add_argument("--dim", type=int, default=64, help="code dimension D")
    parser.add_argument("--codebook-size", type=int, default=512, help="K")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--matmul-size", type=int, default=4096, help="side of the product that measures the floor")
    args = parser.parse_args(argv)
    device = benchmark_device(args.device)
    torch.manual_seed(0)
    n, d, k = args.n, args.dim, args.codebook_size
    z = torch.randn(max(n // 1024, 1), min(n, 1024), d, device=device)  # [B, T, D]

    gflops = matmul_gflops(device, args.matmul_size)
    floor_ms = 2 * n * k * d / (gflops * 1e9) * 1e3
    cases = {
        "VectorQuantizer": _ours(VectorQuantizer(k, d, beta=0.25).to(device).train(), z),
        "EMAVectorQuantizer": _ours(EMAVectorQuantizer(k, d, beta=0.25, decay=0.99).to(device).train(), z),
        "GaussianSQVectorQuantizer": _ours(GaussianSQVectorQuantizer(k, d).to(device).train(), z),
        "GaussianSQVectorQuantizer(fused=True)": _ours(
            GaussianSQVectorQuantizer(k, d, fused=True).to(device).train(), z),
    }
    library = _library(z, d, k, device)
    lib_ms = _median_ms(library, device, args.repeats) if library else float("nan")
    rows = [{"name": name, "ms": _median_ms(fn, device, args.repeats)} for name, fn in cases.items()]
    rows.append({"name": "vector-quantize-pytorch VectorQuantize", "ms": lib_ms})

    print(f"n={n} D={d} K={k}, {describe(device)}")
    print(f"float32 matmul {args.matmul_size}²: {gflops:.0f} GFLOP/s → floor 2·n·K·D = {floor_ms:.3f} ms")
    print(f"{'quantizer (forward + backward)':<42}{'ms/call':>9}{'library / ours':>16}{'ours / floor':>14}")
    for row in rows:
        row["speedup_vs_library"] = lib_ms / row["ms"]
        row["ratio_to_floor"] = row["ms"] / floor_ms
        print(f"{row['name']:<42}{row['ms']:>9.3f}{row['speedup_vs_library']:>15.1f}×{row['ratio_to_floor']:>13.2f}×")
    return rows


if __name__ == "__main__":
    main()
