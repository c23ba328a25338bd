"""The suite's one entry point.

    python experiments/run.py DOMAIN [--config FILE] [--stage STAGE] [--resume] [--tracking-uri URI] [key=value ...]
    python experiments/run.py audio --speaker-convert        # train, then convert held-out speech between speakers
    python experiments/run.py audio --probe                  # phoneme probe of the trained codes
    python experiments/run.py image --stage reconstruct --input PHOTO_OR_FOLDER   # decode(encode(x)) of own images

DOMAIN picks the experiment (``image``, ``audio``, ``video``); ``--config`` defaults to ``experiments/configs/DOMAIN/default.yaml``;
``key=value`` overrides any config entry by its dotted name (``quantizer.kind=ema``, ``train.steps=200``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import audio.experiment  # noqa: E402  (after the path set-up above, for `python experiments/run.py`)
import image.experiment  # noqa: E402
import video.experiment  # noqa: E402

CONFIGS = ROOT / "experiments" / "configs"

# domain name → its ``main(config_path, overrides, resume, stage, **domain options)``
DOMAINS = {
    "image": image.experiment.main,
    "audio": audio.experiment.main,
    "video": video.experiment.main,
}

# options only some domains take: keyword of the domain's main → the domains that accept it
DOMAIN_FLAGS = {
    "speaker_convert": ("audio",),
    "probe": ("audio",),
    "input": ("image",),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one domain of the VQ-VAE suite.")
    parser.add_argument("domain", help=f"one of: {', '.join(sorted(DOMAINS))}")
    parser.add_argument("--config", default=None, help="YAML config (default: experiments/configs/DOMAIN/default.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoints")
    parser.add_argument("--stage", default="all", help="which stage(s) to run: all, one stage, or a comma list such as vqvae,prior")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: ./mlflow.db)")
    parser.add_argument("--speaker-convert", action="store_true",
                        help="audio: convert held-out utterances into every other speaker and score them")
    parser.add_argument("--probe", action="store_true", help="audio: the phoneme probe of the trained codes")
    parser.add_argument("--input", default=None,
                        help="image --stage reconstruct: an image file or a folder of images to reconstruct")
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
    extra = {}
    for flag, domains in DOMAIN_FLAGS.items():
        value = getattr(args, flag)
        if value:
            if args.domain not in domains:
                raise SystemExit(f"--{flag.replace('_', '-')} is an option of: {', '.join(domains)}")
            extra[flag] = value
    return DOMAINS[args.domain](config, overrides, resume=args.resume, stage=args.stage, **extra)


if __name__ == "__main__":
    main()
