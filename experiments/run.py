"""The suite's one entry point.

    python experiments/run.py DOMAIN [--config FILE] [--stage STAGE] [--resume] [--tracking-uri URI] [key=value ...]

DOMAIN picks the experiment (``image`` …); ``--config`` defaults to ``experiments/configs/DOMAIN/default.yaml``;
``key=value`` overrides any config entry by its dotted name (``quantizer.kind=ema``, ``train.steps=200``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = ROOT / "experiments" / "configs"

# domain name → module whose ``main(config_path, overrides, resume, stage)`` runs it
DOMAINS = {
    "image": "image.experiment",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one domain of the VQ-VAE suite.")
    parser.add_argument("domain", help=f"one of: {', '.join(sorted(DOMAINS))}")
    parser.add_argument("--config", default=None, help="YAML config (default: experiments/configs/DOMAIN/default.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoints")
    parser.add_argument("--stage", default="all", help="which stage(s) to run, e.g. all, vqvae, prior, sample")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: ./mlflow.db)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. quantizer.beta=0.5")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None):
    args = parse_args(argv)
    if args.domain not in DOMAINS:
        raise SystemExit(f"unknown domain {args.domain!r}; known domains: {', '.join(sorted(DOMAINS))}")
    config = args.config or CONFIGS / args.domain / "default.yaml"
    overrides = list(args.overrides)
    if args.tracking_uri:
        overrides.append(f"tracking.tracking_uri={args.tracking_uri}")
    module = importlib.import_module(DOMAINS[args.domain])
    return module.main(config, overrides, resume=args.resume, stage=args.stage)


if __name__ == "__main__":
    main()
