"""The suite's one entry point.

    python experiments/run.py DOMAIN [--config FILE] [--stage STAGE] [--resume | --resume-if-present]
                                     [--tracking-uri URI] [--debug] [key=value ...]
    python experiments/run.py audio --speaker-convert        # train, then convert held-out speech between speakers
    python experiments/run.py audio --probe                  # phoneme probe of the trained codes
    python experiments/run.py image --stage reconstruct --input PHOTO_OR_FOLDER   # decode(encode(x)) of own images

DOMAIN picks the experiment (``image``, ``audio``, ``video``); ``--config`` defaults to ``experiments/configs/DOMAIN/default.yaml``;
``key=value`` overrides any config entry by its dotted name (``quantizer.kind=ema``, ``train.steps=200``).

A bad config, a missing file, an output folder in use or any other error of the suite's own checks is printed as one
line ``error: …`` with exit code 2 (the traceback only with ``--debug``); ``Ctrl-C`` or ``SIGTERM`` ends the run's
open MLflow runs as ``KILLED`` and exits with 130. Under ``torchrun`` every process runs this script; the process
group is started from torchrun's environment (:func:`core.distributed.init_from_env`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import audio.experiment  # noqa: E402  (after the path set-up above, for `python experiments/run.py`)
import image.experiment  # noqa: E402
import video.experiment  # noqa: E402
from core import distributed  # noqa: E402
from core.config import ConfigError  # noqa: E402
from core.errors import USER_ERRORS  # noqa: E402
from core.stages import run_domain  # noqa: E402
from core.sweep import run_sweep  # noqa: E402

CONFIGS = ROOT / "experiments" / "configs"

# domain name → its stage spec (config class, stages, plan)
DOMAINS = {
    "image": image.experiment.SPEC,
    "audio": audio.experiment.SPEC,
    "video": video.experiment.SPEC,
}


def _domain_options() -> dict[str, tuple]:
    """Each domain option's flag → (its declaration, the domains that take it), from the domains' specs."""
    found: dict[str, tuple] = {}
    for name, spec in DOMAINS.items():
        for option in spec.options:
            declared, domains = found.get(option.flag, (option, ()))
            found[option.flag] = (declared, (*domains, name))
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one domain of the VQ-VAE suite.")
    parser.add_argument("domain", help=f"one of: {', '.join(sorted(DOMAINS))}")
    parser.add_argument("--config", default=None, help="YAML config (default: experiments/configs/DOMAIN/default.yaml)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue from the run's latest checkpoints (an error if there is none)")
    resume.add_argument("--resume-if-present", action="store_true",
                        help="continue where a checkpoint exists, start fresh otherwise")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not one line")
    parser.add_argument("--stage", default="all", help="which stage(s) to run: all, one stage, or a comma list such as vqvae,prior")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: ./mlflow.db)")
    for flag, (option, domains) in _domain_options().items():
        kind = {"metavar": option.value, "default": None} if option.value else {"action": "store_true"}
        parser.add_argument(flag, dest=option.name, help=f"{', '.join(domains)}: {option.help}", **kind)
    parser.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                        help="run one variant per value (several --sweep: every combination) as child runs of one "
                             "MLflow parent run that compares them, e.g. --sweep quantizer.kind=vq,ema,sq")
    parser.add_argument("--register-best", default="", metavar="METRIC:max|min",
                        help="with --sweep and tracking.register_model=NAME: register only the best variant's models "
                             "(by its final METRIC, e.g. psnr:max) as NAME-<stage>")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. quantizer.beta=0.5")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Parse ``argv`` and run the domain's stages; returns their metrics. Errors propagate (see :func:`cli`)."""
    args = parse_args(argv)
    if args.domain not in DOMAINS:
        raise SystemExit(f"unknown domain {args.domain!r}; known domains: {', '.join(sorted(DOMAINS))}")
    config = args.config or CONFIGS / args.domain / "default.yaml"
    overrides = list(args.overrides)
    if args.tracking_uri:
        overrides.append(f"tracking.tracking_uri={args.tracking_uri}")
    extra = {}
    for flag, (option, domains) in _domain_options().items():
        value = getattr(args, option.name)
        if value:
            if args.domain not in domains:
                raise SystemExit(f"{flag} is an option of: {', '.join(domains)}")
            extra[option.name] = value
    if args.register_best and not args.sweep:
        raise ConfigError("--register-best picks among --sweep variants; to register one run's models, set "
                          "tracking.register_model=NAME")
    if args.sweep:
        if args.resume or args.resume_if_present:
            raise SystemExit("--sweep starts fresh variants; resume a variant by its own train.output_dir instead")
        return run_sweep(DOMAINS[args.domain], config, overrides, args.sweep, stage=args.stage,
                         register_best=args.register_best, **extra)
    return run_domain(DOMAINS[args.domain], config, overrides, resume=args.resume, stage=args.stage,
                      resume_if_present=args.resume_if_present, **extra)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def cli(argv: list[str] | None = None) -> int:
    """The command line: :func:`main` with the suite's errors as one line on stderr (exit code 2; the traceback
    with ``--debug``), ``SIGTERM``/``SIGHUP`` handled like ``Ctrl-C`` (exit code 130), and the process group of a
    ``torchrun`` launch started and ended."""
    argv = sys.argv[1:] if argv is None else argv
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        distributed.init_from_env()
        main(argv)
        return 0
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc or 'Ctrl-C'}); continue with --resume", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if "--debug" in argv:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(cli())
