"""The collective helpers under a two-process ``torchrun`` launch (gloo); saves what each rank saw to
``<out>/rank<r>.pt``. Used by ``test_distributed.py``.

    torchrun --standalone --nproc_per_node=2 tests/experiments/collective_worker.py OUT
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core import distributed  # noqa: E402
from core.quantize import VectorQuantizer  # noqa: E402
from core.trainer import seed_everything  # noqa: E402


def main(out: str) -> None:
    distributed.init_from_env()
    rank = distributed.rank()
    # rows: rank r holds r + 2 rows of value r
    gathered = distributed.all_gather_rows(torch.full((rank + 2, 3), float(rank)))
    # a parameter only rank 1 reaches, one both reach
    shared, only_one = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    loss = (shared * (rank + 1)).sum() + ((only_one * 4).sum() if rank == 1 else 0)
    loss.backward()
    distributed.average_gradients([shared, only_one])
    # data init of a codebook from both ranks' encoder outputs: rank 0's are all 0, rank 1's all 1
    seed_everything(0)
    quantizer = VectorQuantizer(64, 2, beta=0.25, data_init=True).train()
    quantizer(torch.full((8, 2), float(rank)))
    seed_everything(distributed.rank_seed(7))
    torch.save({"gathered": gathered, "shared_grad": shared.grad, "only_one_grad": only_one.grad,
                "codebook": quantizer.codebook.detach(), "noise": torch.rand(4)}, Path(out) / f"rank{rank}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
