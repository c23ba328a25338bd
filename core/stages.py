"""The stage layer every domain runs through: a domain declares its stages once, ``run_domain`` runs them.

A domain's :class:`DomainSpec` names its config class, its stages (name → function of a :class:`StageContext`
returning that stage's metrics) and its plan (which stages ``--stage all`` and the domain's options mean).
``--stage`` takes one name, ``all``, or a comma list (``vqvae,prior``) run in the order given. Each stage finds in
the context the resolved config, the device, the ``resume`` flag, the domain's options (e.g. ``speaker_convert``)
and ``ctx.shared(name, build)``: things several stages use (datasets, episodes), built once on first use.

Before any stage runs, :func:`run_domain` checks what could only fail later: the config (ranges, types), each
stage's prerequisites (a ``prior`` run alone needs the VQ-VAE checkpoint), ``--resume`` (something to resume, and
a config that differs from the checkpoint's only in :data:`core.stored_config.RESUMABLE_KEYS`), the tracking
store, and it takes the run's exclusive hold on ``train.output_dir`` (:mod:`core.isolation`). A stage that raises, or a
``KeyboardInterrupt`` / ``SIGTERM``, ends the MLflow runs it left open as ``FAILED`` / ``KILLED``.

Adding a stage to a domain = one function and one entry in that domain's spec.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from core import distributed
from core.checkpoint import read_checkpoint, stage_checkpoint
from core.config import ConfigError, load_config, to_dict
from core.errors import RunError
from core.isolation import hold_output_dir
from core.stored_config import RESUMABLE_KEYS, config_changes, resumable
from core.tracking import check_tracking, end_open_runs, open_runs
from core.trainer import resolve_device

ALL = "all"


@dataclass
class StageContext:
    """What a stage function gets: the resolved config, the run's flags and options, and shared things."""

    cfg: Any
    resume: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    _shared: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """``cfg.train.device`` resolved (``auto`` → CUDA when available)."""
        return resolve_device(self.cfg.train.device)

    def shared(self, name: str, build: Callable[[], Any]) -> Any:
        """``build()`` on the first call for ``name``, the same object afterwards (data several stages read)."""
        if name not in self._shared:
            self._shared[name] = build()
        return self._shared[name]


Stage = Callable[[StageContext], dict[str, float]]


@dataclass(frozen=True)
class CliOption:
    """A command-line option of one domain: ``--<name with dashes>``, reaching the stages as
    ``ctx.options[name]``.

    Args:
        name: the keyword (``speaker_convert`` → ``--speaker-convert``).
        help: one line for ``--help``.
        value: the metavar when the option takes a value (``PATH``); ``None`` makes it a switch.
    """

    name: str
    help: str
    value: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class DomainSpec:
    """One domain: its config class, its stages, and how a request becomes the list of stages to run.

    Args:
        name: the domain's name on the command line.
        config_class: the dataclass its YAML configs load into.
        stages: stage name → stage function, in their natural order.
        all_stages: the stages ``all`` runs, in order (default: every stage).
        plan: optional ``(requested names, ctx) → names to run``; default: ``all`` → ``all_stages``.
        validate: optional check of the request before any work (``(requested names, ctx) → None``, raising
            ``ValueError``).
        requires: stage → ``cfg → {earlier stage: its checkpoint path}``: checkpoints a stage reads; each must exist
            at start-up unless that earlier stage runs before it in the same plan.
        main_metric: ``(stage, metric key)`` of the held-out number a sweep plots against the step per variant.
        summary_metrics: final metrics (as the stages return them) a sweep's comparison table shows first.
        options: the domain's own command-line options (:class:`CliOption`), declared here so that the entry point
            knows domains only.
    """

    name: str
    config_class: type
    stages: dict[str, Stage]
    all_stages: tuple[str, ...] = ()
    plan: Callable[[list[str], StageContext], list[str]] | None = None
    validate: Callable[[list[str], StageContext], None] | None = None
    requires: dict[str, Callable[[Any], dict[str, Path]]] = field(default_factory=dict)
    main_metric: tuple[str, str] = ("vqvae", "val/psnr")
    summary_metrics: tuple[str, ...] = ()
    options: tuple[CliOption, ...] = ()

    def known(self) -> tuple[str, ...]:
        return (ALL, *self.stages)


def parse_stages(arg: str, known: tuple[str, ...]) -> list[str]:
    """``"vqvae,prior"`` → ``["vqvae", "prior"]``; ``all`` only alone.

    Raises:
        ValueError: naming an unknown stage and the known ones, or ``all`` inside a list.
    """
    names = [part.strip() for part in arg.split(",") if part.strip()]
    if not names:
        raise ValueError(f"--stage is empty; known stages: {', '.join(known)}")
    for name in names:
        if name not in known:
            raise ValueError(f"unknown stage {name!r}; known stages: {', '.join(known)}")
    if ALL in names and len(names) > 1:
        raise ValueError("--stage all cannot be combined with other stages")
    return names


def check_prerequisites(spec: DomainSpec, names: list[str], cfg: Any) -> None:
    """Every checkpoint a planned stage reads exists, or the stage that writes it runs earlier in the plan.

    Raises:
        FileNotFoundError: naming the stage, the missing checkpoint and the stage to run first.
    """
    for i, name in enumerate(names):
        for producer, path in spec.requires.get(name, lambda _: {})(cfg).items():
            if producer not in names[:i] and not Path(path).is_file():
                raise FileNotFoundError(f"--stage {name} needs the {producer} stage's checkpoint {path}, which does "
                                        f"not exist: run --stage {producer} first (same train.output_dir) or point "
                                        f"the config at a trained checkpoint")


def check_resume(spec: DomainSpec, names: list[str], cfg: Any, strict: bool) -> None:
    """``--resume``: some planned stage has a checkpoint (``strict``; ``--resume-if-present`` starts fresh
    otherwise), and each such checkpoint's config differs from this one only in resumable keys
    (:func:`core.stored_config.resumable`) or in the sections of the domain's other stages (``prior.*`` for ``vqvae``).

    Raises:
        RunError: nothing to resume (``strict``).
        ConfigError: listing the changed entries that would make the resumed run a different experiment.
    """
    found = [n for n in names if stage_checkpoint(cfg.train.output_dir, n).is_file()]
    if strict and not found:
        raise RunError(f"--resume: no checkpoint of {', '.join(names)} under {cfg.train.output_dir}; start the run "
                       "without --resume, or use --resume-if-present to resume only where a checkpoint exists")
    for name in found:
        stored = read_checkpoint(stage_checkpoint(cfg.train.output_dir, name))["config"]
        others = tuple(f"{s}." for s in spec.stages if s != name)
        changed = {k: v for k, v in config_changes(stored, to_dict(cfg)).items()
                   if not resumable(k) and not k.startswith(others)}
        if changed:
            listed = "; ".join(f"{k}: {a!r} → {b!r}" for k, a, b in ((k, *v) for k, v in changed.items()))
            raise ConfigError(f"--resume of stage {name} with a config that differs from its checkpoint's ({listed}); "
                              f"only {', '.join(RESUMABLE_KEYS)} may change on resume: start a new run with its own "
                              "train.output_dir instead")


def run_domain(spec: DomainSpec, config_path: str | Path, overrides: list[str], resume: bool = False,
               stage: str = ALL, resume_if_present: bool = False, **options: Any) -> dict[str, float]:
    """Load the config, plan the stages, check everything that could fail later (see the module docstring), run
    the stages in order holding ``train.output_dir``, and return their metrics merged (a later stage's value wins on
    a shared key). Prints the wall time of each stage.

    Args:
        resume: continue from the stages' checkpoints; an error if none of the planned stages has one.
        resume_if_present: as ``resume``, but start fresh where no checkpoint exists.

    Raises:
        ValueError: for an unknown stage or a request the domain's ``validate`` refuses (before any work).
        ConfigError / FileNotFoundError: for a bad config, a missing prerequisite or a refused resume.
        RunError: output folder in use or not writable, nothing to resume, tracking store unusable.
    """
    requested = parse_stages(stage, spec.known())
    ctx = StageContext(cfg=None, resume=resume or resume_if_present, options=options)
    if spec.validate:
        spec.validate(requested, ctx)
    ctx.cfg = load_config(spec.config_class, config_path, overrides)
    main = distributed.is_main_process()
    with hold_output_dir(ctx.cfg.train.output_dir) if main else contextlib.nullcontext():
        if spec.plan:
            names = spec.plan(requested, ctx)
        else:  # ``all`` → all_stages (default: every stage); named stages as given
            names = list(spec.all_stages or spec.stages) if requested == [ALL] else requested
        check_prerequisites(spec, names, ctx.cfg)
        if ctx.resume:
            check_resume(spec, names, ctx.cfg, strict=resume)
        check_tracking(ctx.cfg.tracking)
        return _run_stages(spec, names, ctx)


def _run_stages(spec: DomainSpec, names: list[str], ctx: StageContext) -> dict[str, float]:
    metrics: dict[str, float] = {}
    timings: dict[str, float] = {}
    before = open_runs()  # e.g. a sweep's parent and variant runs: not this run's to end
    try:
        for name in names:
            start = time.perf_counter()
            metrics.update(spec.stages[name](ctx))
            timings[name] = time.perf_counter() - start
    except KeyboardInterrupt:
        end_open_runs("KILLED", keep=before)
        raise
    except BaseException:
        end_open_runs("FAILED", keep=before)
        raise
    if len(timings) > 1:
        print("\nwall time per stage: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()))
    return metrics
