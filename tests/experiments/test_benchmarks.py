"""The benchmarks run on tiny sizes and report what they measure; the device option checks its argument."""

import math

import pytest
import torch

from experiments.benchmarks import prior_sampling, quantizer, wavenet_generation
from experiments.benchmarks.timing import benchmark_device, median_seconds, seconds

pytestmark = pytest.mark.usefixtures("one_thread")


def test_timing_measures_the_call_and_refuses_unknown_devices():
    cpu = torch.device("cpu")
    import time

    assert 0.015 <= seconds(lambda: time.sleep(0.02), cpu) < 1.0
    assert median_seconds(lambda: None, cpu, repeats=3) < 0.01
    with pytest.raises(SystemExit, match="cpu or cuda"):
        benchmark_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            benchmark_device("cuda")


def test_benchmarks_run_on_tiny_sizes(capsys):
    rows = quantizer.main(["--n", "512", "--codebook-size", "16", "--dim", "8", "--repeats", "1",
                           "--matmul-size", "64", "--device", "cpu"])
    assert [r["name"] for r in rows][:4] == ["VectorQuantizer", "EMAVectorQuantizer", "GaussianSQVectorQuantizer",
                                             "GaussianSQVectorQuantizer(fused=True)"]
    # every ratio is the row's own time over one common floor and over the library's one time
    floors = {round(r["ms"] / r["ratio_to_floor"], 9) for r in rows[:4]}
    assert len(floors) == 1 and all(math.isfinite(r["ms"]) for r in rows[:4])
    library_ms = {r["speedup_vs_library"] * r["ms"] for r in rows[:4]}
    assert all(math.isnan(v) for v in library_ms) or max(library_ms) == pytest.approx(min(library_ms))
    rows = prior_sampling.main(["--grid", "4", "--codes", "8", "--channels", "8", "--layers", "2", "--naive-rows",
                                "4", "--repeats", "1", "--check-grid", "3", "--device", "cpu"])
    assert rows[0]["speedup"] == 1.0 and rows[1]["speedup"] == pytest.approx(rows[0]["seconds"] / rows[1]["seconds"])
    assert "identical samples: True" in capsys.readouterr().out
    rows = wavenet_generation.main(["--config", "none.yaml", "--samples", "128", "--batches", "1", "--naive-steps", "1",
                                    "--check-samples", "64", "--device", "cpu"])
    assert {r["config"] for r in rows} == {"default", "small"}
    assert all(r["samples_per_s"] == pytest.approx(128 / r["seconds"]) and r["realtime"] == pytest.approx(
        r["samples_per_s"] / 16000) for r in rows)
    assert "identical samples: True" in capsys.readouterr().out
