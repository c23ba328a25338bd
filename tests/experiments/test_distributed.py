"""Training under ``torchrun`` on the CPU (gloo, two processes): identical ranks, the same result as one process
with the combined batch, rank 0 alone logging and writing checkpoints, and resume."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from core.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
COLLECTIVES = Path(__file__).with_name("collective_worker.py")
DEBUG = ROOT / "experiments" / "configs" / "image" / "debug.yaml"


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _states(folder: Path, ranks: int) -> list[dict]:
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(ranks)]


def test_two_processes_keep_bit_identical_codebooks_with_ema_restarts_and_data_init(tmp_path):
    # the debug config: EMA codebook, data-dependent init and a dead-code restart every 2 steps
    _torchrun(2, str(WORKER), str(tmp_path), "train.steps=6")
    rank0, rank1 = _states(tmp_path, 2)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    assert int(rank0["quantizer.initialized"]) == 1


def test_two_processes_keep_identical_weights_with_the_stochastic_quantizer_and_restarts(tmp_path):
    # SQ: each rank draws its own Gumbel noise for its shard; the weights, the learned variance, the temperature
    # step and the restarted codes stay the same on both ranks
    _torchrun(2, str(WORKER), str(tmp_path), "train.steps=6", "quantizer.kind=sq", "quantizer.code_dim=8")
    rank0, rank1 = _states(tmp_path, 2)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    assert int(rank0["quantizer.step"]) == 6


def test_collectives_gather_every_rank_and_average_gradients_only_some_ranks_reached(tmp_path):
    _torchrun(2, str(COLLECTIVES), str(tmp_path))
    rank0, rank1 = _states(tmp_path, 2)
    expected = torch.cat([torch.zeros(2, 3), torch.ones(3, 3)])  # rank 0's 2 rows, then rank 1's 3
    assert torch.equal(rank0["gathered"], expected) and torch.equal(rank1["gathered"], expected)
    for state in (rank0, rank1):
        assert state["shared_grad"].tolist() == [1.5, 1.5]  # (1 + 2) / 2
        assert state["only_one_grad"].tolist() == [2.0, 2.0]  # (0 + 4) / 2: rank 0 had none
    # data init drew from both ranks' encoder outputs (0s on rank 0, 1s on rank 1), identically on both
    assert torch.equal(rank0["codebook"], rank1["codebook"])
    assert set(rank0["codebook"].unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(rank0["noise"], rank1["noise"])  # each rank its own random stream


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_of_one_process_each_rendezvous_and_keep_identical_ranks(tmp_path):
    # two torchrun agents on this machine as two "nodes" (c10d rendezvous, world size 2), as on two hosts
    endpoint = f"127.0.0.1:{_free_port()}"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=two-nodes", str(WORKER),
               str(tmp_path), "train.steps=4"]
    agents = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    for agent in agents:
        _, err = agent.communicate(timeout=300)
        assert agent.returncode == 0, err[-3000:]
    rank0, rank1 = _states(tmp_path, 2)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key


def test_two_processes_equal_one_process_with_the_combined_batch(tmp_path):
    plain = ["quantizer.data_init=false", "quantizer.dead_code_restart=false", "train.steps=5"]
    _torchrun(2, str(WORKER), str(tmp_path / "two"), *plain)
    (tmp_path / "one").mkdir()
    subprocess.run([sys.executable, str(WORKER), str(tmp_path / "one"), *plain], cwd=ROOT, check=True, timeout=300)
    two, one = _states(tmp_path / "two", 1)[0], _states(tmp_path / "one", 1)[0]
    for key in one:
        if one[key].is_floating_point():
            torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
        else:
            assert torch.equal(two[key], one[key]), key
    moved = torch.load(tmp_path / "two" / "run" / "vqvae" / "checkpoints" / "latest.pt", weights_only=True)["model"]
    assert torch.equal(moved["quantizer.codebook"], two["quantizer.codebook"])  # rank 0 wrote the checkpoint


def test_run_py_under_torchrun_logs_once_writes_once_and_resumes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [str(ROOT / "experiments" / "run.py"), "image", "--config", str(DEBUG), "--stage", "vqvae",
            "--tracking-uri", uri, f"train.output_dir={tmp_path / 'out'}"]
    _torchrun(2, *args, "train.steps=4")
    _torchrun(2, *args, "train.steps=6", "--resume")
    ckpt = read_checkpoint(tmp_path / "out" / "vqvae" / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 6
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("vqvae-image").experiment_id])
    assert [r.info.run_id for r in runs] == [ckpt["mlflow_run_id"]] and runs[0].info.status == "FINISHED"
    steps = Counter(m.step for m in client.get_metric_history(ckpt["mlflow_run_id"], "train/loss"))
    assert sorted(steps) == [1, 2, 3, 4, 5, 6] and set(steps.values()) == {1}
    assert not list((tmp_path / "out").rglob(".*.tmp"))


def test_a_global_batch_that_does_not_split_evenly_is_refused(tmp_path):
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(ROOT / "experiments" / "run.py"), "image", "--config", str(DEBUG), "--stage", "vqvae",
                           "tracking.enabled=false", f"train.output_dir={tmp_path / 'out'}",
                           "train.batch_size=7"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "train.batch_size 7 (the global batch) must divide evenly over 2 processes" in done.stderr
