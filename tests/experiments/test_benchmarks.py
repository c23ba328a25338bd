"""The benchmarks run on tiny sizes and report what they measure; the device option checks its argument."""

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
    assert all(r["ms"] > 0 and r["ratio_to_floor"] > 0 for r in rows[:4])
    rows = prior_sampling.main(["--grid", "4", "--codes", "8", "--channels", "8", "--layers", "2", "--naive-rows",
                                "4", "--repeats", "1", "--check-grid", "3", "--device", "cpu"])
    assert rows[1]["speedup"] > 0 and "identical samples: True" in capsys.readouterr().out
    rows = wavenet_generation.main(["--config", "none.yaml", "--samples", "128", "--batches", "1", "--naive-steps", "1",
                                    "--check-samples", "64", "--device", "cpu"])
    assert {r["config"] for r in rows} == {"default", "small"} and all(r["samples_per_s"] > 0 for r in rows)
    assert "identical samples: True" in capsys.readouterr().out
