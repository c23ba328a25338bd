"""Forward + backward time of the core quantizers against vector-quantize-pytorch and the matmul floor.

    python experiments/benchmarks/quantizer.py [--n 65536] [--dim 64] [--codebook-size 512] [--repeats 7]

Every quantizer gets the same ``[B, T, D]`` float32 input with ``B·T = n`` vectors in training mode and runs
``out = q(z); (out.z_q.sum() + out.loss).backward()``; vector-quantize-pytorch's ``VectorQuantize`` runs at the
paper's settings (EMA decay 0.99, commitment weight 0.25, rotation trick off). The floor is the nearest-code
matrix product alone, ``2·n·K·D`` FLOPs, at this machine's float32 matmul rate measured in the same run on a
4096² product. Prints one table with the time per call (median) and the ratios to the library and to the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.quantize import EMAVectorQuantizer, GaussianSQVectorQuantizer, VectorQuantizer  # noqa: E402


def _median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def matmul_gflops(size: int = 4096, repeats: int = 5) -> float:
    """Best float32 matmul rate of a ``size``² product, in GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_median_ms(lambda: a @ b, 1, warmup=0) for _ in range(repeats))
    return 2 * size**3 / (best * 1e-3) / 1e9


def _ours(quantizer, z):
    def step():
        zz = z.detach().requires_grad_(True)
        out = quantizer(zz)
        (out.z_q.sum() + out.loss).backward()
    return step


def _library(z, dim: int, codebook_size: int):
    try:
        from vector_quantize_pytorch import VectorQuantize
    except ImportError:
        return None
    vq = VectorQuantize(dim=dim, codebook_size=codebook_size, decay=0.99, commitment_weight=0.25,
                        rotation_trick=False).train()

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
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    n, d, k = args.n, args.dim, args.codebook_size
    z = torch.randn(max(n // 1024, 1), min(n, 1024), d)  # [B, T, D]

    gflops = matmul_gflops()
    floor_ms = 2 * n * k * d / (gflops * 1e9) * 1e3
    cases = {
        "VectorQuantizer": _ours(VectorQuantizer(k, d, beta=0.25).train(), z),
        "EMAVectorQuantizer": _ours(EMAVectorQuantizer(k, d, beta=0.25, decay=0.99).train(), z),
        "GaussianSQVectorQuantizer": _ours(GaussianSQVectorQuantizer(k, d).train(), z),
    }
    library = _library(z, d, k)
    lib_ms = _median_ms(library, args.repeats) if library else float("nan")
    rows = [{"name": name, "ms": _median_ms(fn, args.repeats)} for name, fn in cases.items()]
    rows.append({"name": "vector-quantize-pytorch VectorQuantize", "ms": lib_ms})

    print(f"n={n} D={d} K={k}, {torch.get_num_threads()} threads ({os.cpu_count()} CPUs), torch {torch.__version__}")
    print(f"float32 matmul 4096²: {gflops:.0f} GFLOP/s → floor 2·n·K·D = {floor_ms:.1f} ms")
    print(f"{'quantizer (forward + backward)':<42}{'ms/call':>9}{'library / ours':>16}{'ours / floor':>14}")
    for row in rows:
        row["speedup_vs_library"] = lib_ms / row["ms"]
        row["ratio_to_floor"] = row["ms"] / floor_ms
        print(f"{row['name']:<42}{row['ms']:>9.1f}{row['speedup_vs_library']:>15.1f}×{row['ratio_to_floor']:>13.2f}×")
    return rows


if __name__ == "__main__":
    main()
