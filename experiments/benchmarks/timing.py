"""Timing for the benchmarks, on the CPU and on a CUDA device.

On the CPU a call is timed with ``time.perf_counter``; on CUDA with a pair of CUDA events recorded around it after a
synchronize, the end event waited for, so the time covers the kernels the call queued and not only their launch.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch


def benchmark_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"`` (``"cuda:N"``) as a device.

    Raises:
        SystemExit: for another name, or CUDA when no CUDA device is available.
    """
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise SystemExit(f"--device must be cpu or cuda, got {name!r}")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return device


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes on ``device`` (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    start_s = time.perf_counter()
    fn()
    return time.perf_counter() - start_s


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 0) -> float:
    """Median of ``repeats`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return statistics.median(seconds(fn, device) for _ in range(repeats))


def describe(device: torch.device) -> str:
    """The machine a table was measured on, for its header line."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA events"
    return f"CPU, {torch.get_num_threads()} threads ({os.cpu_count()} CPUs), torch {torch.__version__}"
