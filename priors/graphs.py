"""Step functions on static buffers, run eagerly or captured once as CUDA graphs and replayed.

An autoregressive sampler spends its time launching the many small kernels of one step (a few microseconds each on a
GPU, where the arithmetic of a step at batch 1 takes less). A CUDA graph records the kernels of a step once and replays
them with one launch. Graphs replay fixed kernels on fixed addresses, so a step written for them reads and writes only
tensors allocated before capture (inputs are copied in, positions are device-side counters, outputs are copied out)
and allocates nothing that outlives it. The same step functions run eagerly anywhere, which is how the CPU tests check
their arithmetic against the naive samplers; under capture their kernels are recorded, not run.

Reference: ``torch.cuda.graphs`` (capture after a warm-up on a side stream, shared memory pool).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch


def use_graphs(device: torch.device, graphs: bool | None) -> bool:
    """Whether a sampler takes its static-buffer path: ``graphs`` if given, else on CUDA only.

    Raises:
        ValueError: if ``graphs`` is not None or a bool.
    """
    if graphs is not None and not isinstance(graphs, bool):
        raise ValueError(f"graphs must be None, True or False, got {graphs!r}")
    return device.type == "cuda" if graphs is None else graphs


class StepGraphs:
    """Runs named step functions: eagerly, or (``capture`` on a CUDA device) each captured once and then replayed.

    ``prepare`` captures every step before sampling starts; the warm-up it runs first really executes the step once,
    so the caller resets its state buffers after preparing. ``run`` then replays (or calls) the step.

    Args:
        device: where the step's tensors live.
        capture: record CUDA graphs (only honoured on CUDA; elsewhere steps run eagerly).
    """

    def __init__(self, device: torch.device, capture: bool):
        self.capture = capture and device.type == "cuda"
        self.device = device
        self._graphs: dict[Hashable, torch.cuda.CUDAGraph] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.capture else None

    def prepare(self, key: Hashable, step: Callable[[], None]) -> None:
        """Capture ``step`` under ``key`` (after one eager warm-up run on a side stream); no-op when not capturing."""
        if not self.capture or key in self._graphs:
            return
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            step()  # warm-up: initialises library handles and workspaces outside the capture
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            step()
        self._graphs[key] = graph

    def run(self, key: Hashable, step: Callable[[], None]) -> None:
        """Replay the graph captured under ``key``, or call ``step`` when not capturing."""
        if self.capture:
            self._graphs[key].replay()
        else:
            step()
