"""Naive against incremental (Fast WaveNet) generation of the audio VQ-VAE's WaveNet decoder.

    python experiments/benchmarks/wavenet_generation.py [--samples 4096] [--batches 1 16] [--naive-steps 2]
        [--speakers 7] [--threads 1] [--config experiments/configs/audio/wavenet.yaml] [--device cpu|cuda]

Two decoder sizes: the config's (``model`` section of ``--config``, by default the WaveNet of ``wavenet.yaml``, else the
``AudioModelConfig`` defaults) and a small one (the same with half the residual and skip channels), each an untrained
float32 WaveNet exactly as ``AudioVQVAE`` builds it (256 μ-law classes, ``z_q`` of ``quantizer.code_dim`` channels at
1/64 of the sample rate, speaker embedding). ``--threads`` defaults to 1: one generation step's matrix products are
too small to split, and on a small shared CPU every extra intra-op thread makes each of the ~10 ops per layer and step
wait for a busy core (0 uses torch's default). For each batch size, the incremental generator draws ``--samples``
samples per stream (timed in full; on CUDA twice: eager, and on static buffers captured as CUDA graphs, the default
there, capture included); the naive one recomputes the whole forward over ``--samples`` positions at every step, so only
its first ``--naive-steps`` steps are timed and the time is extrapolated linearly to ``--samples`` steps (every naive
step costs the same full forward; its total grows with the square of the length, so the speed-up grows with it).
Exactness is checked separately on a float64 copy of the small decoder (full draws of both methods, same seed).

Prints one table: config, B, method, samples/s (over all B streams), × real time at 16 kHz (samples/s ÷ 16000: above
1 is faster than real time), speed-up over naive; then whether the samples were identical.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from audio.config import AudioConfig, AudioModelConfig  # noqa: E402
from core.config import load_config  # noqa: E402
from experiments.benchmarks.timing import benchmark_device, describe, seconds  # noqa: E402
from priors.sampling import gumbel_noise, naive_raster_sample  # noqa: E402
from priors.wavenet import WaveNet  # noqa: E402

SAMPLE_RATE = 16000
DEFAULT_CONFIG = ROOT / "experiments" / "configs" / "audio" / "wavenet.yaml"


def decoder(cfg: AudioModelConfig, code_dim: int, speakers: int) -> WaveNet:
    """The WaveNet decoder ``AudioVQVAE`` builds for ``cfg`` (untrained, eval mode)."""
    torch.manual_seed(0)
    return WaveNet(cfg.mu_law_channels, cfg.residual_channels, cfg.skip_channels, cfg.dilation_layers,
                   cfg.dilation_cycles, cfg.kernel_size, local_channels=code_dim, global_classes=speakers,
                   global_dim=cfg.speaker_dim, local_hop=2 ** cfg.num_downsamples).eval()


def conditioning(net: WaveNet, batch: int, samples: int) -> dict:
    weight = net.embedding.weight
    local = torch.randn(batch, net.local_channels, samples // net.local_hop, dtype=weight.dtype).to(weight.device)
    return dict(local=local, global_ids=(torch.arange(batch) % net.global_classes).to(weight.device))


def _generator(net: WaveNet, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=net.embedding.weight.device).manual_seed(seed)


def time_incremental(net: WaveNet, batch: int, samples: int, graphs: bool | None = None) -> float:
    """Seconds of one incremental draw of ``batch × samples`` (after a short warm-up); ``graphs`` as in
    :meth:`WaveNet.generate` (the CUDA-graph capture of each draw is inside the time)."""
    cond = conditioning(net, batch, samples)
    hop = net.local_hop
    net.generate(hop, cond["local"][..., :1], cond["global_ids"], generator=_generator(net), graphs=graphs)
    device = net.embedding.weight.device
    return seconds(lambda: net.generate(samples, **cond, generator=_generator(net), graphs=graphs), device)


@torch.inference_mode()
def time_naive(net: WaveNet, batch: int, samples: int, steps: int) -> float:
    """Seconds of the first ``steps`` naive steps of a ``batch × samples`` draw, extrapolated to all ``samples``."""
    cond = conditioning(net, batch, samples)
    device = net.embedding.weight.device
    noise = gumbel_noise((batch, samples, net.num_classes), _generator(net), device)
    net(torch.zeros(batch, samples, dtype=torch.long, device=device), **cond)  # warm-up
    taken = seconds(lambda: naive_raster_sample(lambda x: net(x, **cond), noise, max_positions=steps), device)
    return taken * samples / steps


def identical_samples(net: WaveNet, batch: int = 2, samples: int = 256, seed: int = 0) -> bool:
    """Full naive, incremental and static-buffer (CUDA graphs on CUDA) draws of a float64 copy of ``net`` agree
    exactly (same generator seed)."""
    net64 = copy.deepcopy(net).double()
    cond = conditioning(net64, batch, samples)
    draws = [net64.generate(samples, **cond, generator=_generator(net64, seed), method=method, graphs=graphs)
             for method, graphs in (("naive", None), ("incremental", False), ("incremental", True))]
    return all(torch.equal(draws[0], d) for d in draws[1:])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="audio YAML (model, quantizer sections)")
    parser.add_argument("--samples", type=int, default=4096, help="samples per stream (a multiple of the hop)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes B")
    parser.add_argument("--naive-steps", type=int, default=2, help="naive steps timed (then extrapolated)")
    parser.add_argument("--speakers", type=int, default=7, help="speaker ids of the global conditioning")
    parser.add_argument("--check-samples", type=int, default=256, help="length of the float64 equality check")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (timed with CUDA events)")
    args = parser.parse_args(argv)
    device = benchmark_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    source = args.config if args.config.is_file() else None
    cfg = load_config(AudioConfig, source)
    small = dataclasses.replace(cfg.model, residual_channels=max(1, cfg.model.residual_channels // 2),
                                skip_channels=max(1, cfg.model.skip_channels // 2))
    configs = {"default": cfg.model, "small": small}
    nets = {name: decoder(model_cfg, cfg.quantizer.code_dim, args.speakers).to(device)
            for name, model_cfg in configs.items()}

    where = source.resolve().relative_to(ROOT) if source and source.resolve().is_relative_to(ROOT) else source
    print(f"decoder sizes from {where or 'AudioModelConfig defaults'}; {args.samples} samples "
          f"({args.samples / SAMPLE_RATE:.3f} s) per stream; {describe(device)}, float32")
    for name, net in nets.items():
        c = configs[name]
        params = sum(p.numel() for p in net.parameters())
        print(f"  {name}: R={c.residual_channels} S={c.skip_channels} layers={c.dilation_layers}×{c.dilation_cycles} "
              f"k={c.kernel_size} receptive field {net.receptive_field} samples, {params / 1e6:.2f} M parameters")
    rows: list[dict] = []
    print(f"{'config':<9}{'B':>4}  {'method':<40}{'samples/s':>11}{'× real time':>13}{'speed-up':>10}")
    for name, net in nets.items():
        for batch in args.batches:
            timed = [(f"naive (extrapolated from {args.naive_steps} steps)",
                      time_naive(net, batch, args.samples, args.naive_steps))]
            if device.type == "cuda":
                timed += [("incremental, eager", time_incremental(net, batch, args.samples, graphs=False)),
                          ("incremental, CUDA graphs", time_incremental(net, batch, args.samples))]
            else:
                timed.append(("incremental", time_incremental(net, batch, args.samples)))
            naive_s = timed[0][1]
            for method, taken in timed:
                rate = batch * args.samples / taken
                row = dict(config=name, batch=batch, method=method, seconds=taken, samples_per_s=rate,
                           realtime=rate / SAMPLE_RATE, speedup=naive_s / taken)
                rows.append(row)
                print(f"{name:<9}{batch:>4}  {method:<40}{rate:>11.0f}{row['realtime']:>12.3f}×"
                      f"{row['speedup']:>9.1f}×")
    same = identical_samples(nets["small"], samples=args.check_samples)
    print(f"identical samples: {same} (naive, incremental and static-buffer steps"
          f"{' captured as CUDA graphs' if device.type == 'cuda' else ''}, float64 small decoder, B=2, "
          f"{args.check_samples} samples, same seed)")
    return rows


if __name__ == "__main__":
    main()
