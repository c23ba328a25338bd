"""Naive against cached sampling of the gated PixelCNN prior.

    python experiments/benchmarks/prior_sampling.py [--grid 32] [--codes 512] [--channels 64] [--layers 8]
        [--batch 1] [--naive-rows 4] [--repeats 3] [--threads 0] [--device cpu|cuda]

Both methods draw a ``B × grid × grid`` sample of an untrained float32 prior with K codes. The naive sampler
recomputes the whole network once per position; with ``--naive-rows N`` (< grid) only its first N rows are timed and
the time is extrapolated linearly to the full grid (each naive step costs the same full forward), which the table
says. The cached sampler is timed on the full grid (median of ``--repeats``). Exactness is checked separately on a
smaller float64 copy (``--check-grid``, full samples from both methods with the same generator seed).
Prints one table: method, seconds per grid (a draw of B grids / B), codes/s, speed-up over naive, then whether the
samples were identical. ``--device cuda`` runs everything on the GPU, timed with CUDA events (``timing.py``), and
times the cached sampler twice: eager, and with each column's step captured as a CUDA graph (the default there; the
capture is inside the time); the equality check then covers the captured sampler too.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from priors.pixelcnn import GatedPixelCNN  # noqa: E402
from experiments.benchmarks.timing import benchmark_device, describe, median_seconds, seconds  # noqa: E402
from priors.sampling import gumbel_noise, naive_raster_sample  # noqa: E402


def _generator(device: torch.device, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def time_naive(model: GatedPixelCNN, batch: int, grid: int, rows: int, device: torch.device) -> float:
    """Seconds of naive sampling for the first ``rows`` rows of a ``batch × grid × grid`` draw."""
    noise = gumbel_noise((batch, grid, grid, model.num_codes), _generator(device), device)
    model(torch.zeros(batch, grid, grid, dtype=torch.long, device=device))  # warm-up
    return seconds(lambda: naive_raster_sample(model, noise, max_positions=rows * grid), device)


def identical_samples(model: GatedPixelCNN, batch: int, grid: int, device: torch.device, seed: int = 0) -> bool:
    """Full naive and cached samples of a float64 copy of ``model`` on a ``batch × grid × grid`` grid agree."""
    model64 = copy.deepcopy(model).double()
    draws = [model64.sample((batch, grid, grid), generator=_generator(device, seed), method=method, graphs=graphs)
             for method, graphs in (("naive", None), ("cached", False), ("cached", None))]
    return all(torch.equal(draws[0], d) for d in draws[1:])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=int, default=32, help="H = W of the code grid")
    parser.add_argument("--codes", type=int, default=512, help="K")
    parser.add_argument("--channels", type=int, default=64, help="C")
    parser.add_argument("--layers", type=int, default=8, help="L")
    parser.add_argument("--kernel", type=int, default=5, help="k")
    parser.add_argument("--batch", type=int, default=1, help="B")
    parser.add_argument("--naive-rows", type=int, default=4, help="rows of naive sampling to time (≥ grid: all)")
    parser.add_argument("--repeats", type=int, default=3, help="cached runs (median)")
    parser.add_argument("--check-grid", type=int, default=8, help="grid of the float64 equality check")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    device = benchmark_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GatedPixelCNN(args.codes, args.channels, args.layers, args.kernel).to(device).eval()
    b, n = args.batch, args.grid
    codes = b * n * n

    rows = min(args.naive_rows, n)
    naive_s = time_naive(model, b, n, rows, device) * n / rows
    variants = {"cached": None} if device.type == "cpu" else {"cached, eager": False, "cached, CUDA graphs": None}
    cached = {name: median_seconds(lambda: model.sample((b, n, n), generator=_generator(device), graphs=graphs),
                                   device, args.repeats, warmup=1) for name, graphs in variants.items()}
    same = identical_samples(model, b, args.check_grid, device)

    print(f"B={b} grid={n}×{n} K={args.codes} C={args.channels} L={args.layers} k={args.kernel}, "
          f"{describe(device)}, float32")
    naive_note = f" (extrapolated from {rows} of {n} rows)" if rows < n else ""
    rows_out = [{"method": "naive" + naive_note, "seconds": naive_s}] + [
        {"method": f"{name} (median of {args.repeats})", "seconds": taken} for name, taken in cached.items()]
    print(f"{'method':<44}{'s/grid':>10}{'codes/s':>11}{'speed-up':>10}")
    for row in rows_out:
        row["seconds_per_grid"] = row["seconds"] / b
        row["codes_per_s"] = codes / row["seconds"]
        row["speedup"] = naive_s / row["seconds"]
        print(f"{row['method']:<44}{row['seconds_per_grid']:>10.3f}{row['codes_per_s']:>11.0f}{row['speedup']:>9.1f}×")
    print(f"identical samples: {same} (naive vs cached{' eager and captured' if device.type == 'cuda' else ''}, "
          f"float64, B={b} {args.check_grid}×{args.check_grid}, "
          f"same seed)")
    return rows_out


if __name__ == "__main__":
    main()
