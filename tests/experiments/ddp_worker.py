"""Trains the image VQ-VAE of the debug config in one process of a ``torchrun`` launch (or alone) and saves this
rank's final weights and buffers to ``<out>/rank<r>.pt``; used by ``test_distributed.py``.

    torchrun --standalone --nproc_per_node=2 tests/experiments/ddp_worker.py OUT [key=value ...]
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core import distributed  # noqa: E402
from core.config import load_config  # noqa: E402
from core.data import data_variance  # noqa: E402
from image.config import ImageConfig  # noqa: E402
from image.data import build_image_datasets  # noqa: E402
from image.vqvae_stage import ImageVQVAETrainer  # noqa: E402

DEBUG = ROOT / "experiments" / "configs" / "image" / "debug.yaml"


def main(out: str, *overrides: str) -> None:
    distributed.init_from_env()
    cfg = load_config(ImageConfig, DEBUG, [f"train.output_dir={out}/run", "tracking.enabled=false", "train.threads=1",
                                           *overrides])
    train, val = build_image_datasets(cfg.data, cfg.train.seed)
    trainer = ImageVQVAETrainer(cfg, train, val, data_variance(train))
    trainer.fit()
    torch.save(trainer.model.state_dict(), Path(out) / f"rank{distributed.rank()}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
