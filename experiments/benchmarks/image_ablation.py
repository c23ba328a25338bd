"""Ablations of the image job's VQ-VAE stage: one named variant of the default config per call.

    python -m experiments.benchmarks.image_ablation VARIANT [key=value ...]
    python -m experiments.benchmarks.image_ablation --list

Each variant is the default config (``experiments/configs/image/default.yaml``) set back to the settings the README's
ablation started from (``PREVIOUS``), then a few overrides or one patched component, trained with tracking off into
``outputs/ablation/<variant>``. Prints one JSON line with the variant, its held-out metrics (:mod:`image.scoring`:
``psnr`` of the pooled MSE, ``psnr_per_image``, ``bicubic_psnr``, ``perplexity``, and the same under ``nature/`` for
the second held-out set) and the wall time in seconds. Extra ``key=value`` arguments are applied after the
variant's own (e.g. ``train.device=cuda``).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path

import image.experiment
from core.stages import run_domain
import image.model

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "image" / "default.yaml"
OLD_DATA = ["data.debian_photos=false"]  # the wheels' photos only (the training set before the Debian photos)
# the settings the variants below were measured from (README): one code of D = 64 from K = 512, cosine lr, no colour
# augmentation; each variant changes some of them
PREVIOUS = ["quantizer.codebook_size=512", "quantizer.groups=1", "quantizer.code_dim=64",
            "train.lr_schedule=cosine", "data.colour_augment=none"]


@contextmanager
def _unit_variance():
    """Reconstruction term plain MSE (not divided by the data variance): β weighs ~16× more against it."""
    original = image.experiment.data_variance
    image.experiment.data_variance = lambda dataset, max_items=4096: 1.0
    try:
        yield
    finally:
        image.experiment.data_variance = original


@contextmanager
def _nothing():
    yield


# name → (overrides, patch); the "old_" variants train on the wheels' photos only (as before the Debian photos)
C3 = ["train.lr_schedule=constant"]  # with the default decoder_input_kernel=3
VARIANTS = {
    "old_base": (OLD_DATA + ["model.decoder_input_kernel=1"], _nothing),
    "old_constant_lr_3x3": (OLD_DATA + C3, _nothing),
    "base_1x1_cosine": (["model.decoder_input_kernel=1", "train.lr_schedule=cosine"], _nothing),
    "c3": (C3, _nothing),
    "c3_seed1": (C3 + ["train.seed=1"], _nothing),
    "c3_d32": (C3 + ["quantizer.code_dim=32"], _nothing),
    "c3_d16": (C3 + ["quantizer.code_dim=16"], _nothing),
    "c3_g2": (C3 + ["quantizer.groups=2", "quantizer.code_dim=32"], _nothing),
    "c3_g3": (C3 + ["quantizer.groups=3", "quantizer.code_dim=32"], _nothing),
    "c3_lr2e-3": (C3 + ["train.lr=2e-3"], _nothing),
    "c3_decay0.95": (C3 + ["quantizer.decay=0.95"], _nothing),
    "c3_res64": (C3 + ["model.residual_channels=64"], _nothing),
    "c3_unit_variance": (C3, _unit_variance),
    "c3_beta0.1": (C3 + ["quantizer.beta=0.1"], _nothing),
    "c3_hidden192": (C3 + ["model.hidden_channels=192", "model.residual_channels=48"], _nothing),
    "c3_steps10000": (C3 + ["train.steps=10000"], _nothing),
    "c3_d16_seed1": (C3 + ["quantizer.code_dim=16", "train.seed=1"], _nothing),
    "c3_d16_unit_variance": (C3 + ["quantizer.code_dim=16"], _unit_variance),
    "c3_d16_unit_variance_seed1": (C3 + ["quantizer.code_dim=16", "train.seed=1"], _unit_variance),
    "c3_d16_unit_variance_lr2e-3": (C3 + ["quantizer.code_dim=16", "train.lr=2e-3"], _unit_variance),
    "c3_d16_lr2e-3": (C3 + ["quantizer.code_dim=16", "train.lr=2e-3"], _nothing),
    "c3_d32_unit_variance": (C3 + ["quantizer.code_dim=32"], _unit_variance),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", nargs="?")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list or args.variant is None:
        print("\n".join(VARIANTS))
        return
    if args.variant not in VARIANTS:
        raise SystemExit(f"unknown variant {args.variant!r}; known: {', '.join(VARIANTS)}")
    overrides, patch = VARIANTS[args.variant]
    start = time.perf_counter()
    with patch():
        metrics = run_domain(image.experiment.SPEC, CONFIG, [*PREVIOUS, *overrides, "tracking.enabled=false",
                                                             f"train.output_dir=outputs/ablation/{args.variant}",
                                                             *args.overrides], stage="vqvae")
    print(json.dumps({"variant": args.variant, **metrics, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
