"""The stage layer every domain runs through: a domain declares its stages once, ``run_domain`` runs them.

A domain's :class:`DomainSpec` names its config class, its stages (name → function of a :class:`StageContext`
returning that stage's metrics) and its plan (which stages ``--stage all`` and the domain's options mean).
``--stage`` takes one name, ``all``, or a comma list (``vqvae,prior``) run in the order given. Each stage finds in
the context the resolved config, the device, the ``resume`` flag, the domain's options (e.g. ``speaker_convert``)
and ``ctx.shared(name, build)``: things several stages use (datasets, episodes), built once on first use.

Adding a stage to a domain = one function and one entry in that domain's spec.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from core.config import load_config
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
    """

    name: str
    config_class: type
    stages: dict[str, Stage]
    all_stages: tuple[str, ...] = ()
    plan: Callable[[list[str], StageContext], list[str]] | None = None
    validate: Callable[[list[str], StageContext], None] | None = None

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


def run_domain(spec: DomainSpec, config_path: str | Path, overrides: list[str], resume: bool = False,
               stage: str = ALL, **options: Any) -> dict[str, float]:
    """Load the config, plan the stages, run them in order and return their metrics merged (a later stage's value
    wins on a shared key). Prints the wall time of each stage.

    Raises:
        ValueError: for an unknown stage or a request the domain's ``validate`` refuses (before any work).
        ConfigError / FileNotFoundError: for a bad config.
    """
    requested = parse_stages(stage, spec.known())
    ctx = StageContext(cfg=None, resume=resume, options=options)
    if spec.validate:
        spec.validate(requested, ctx)
    ctx.cfg = load_config(spec.config_class, config_path, overrides)
    if spec.plan:
        names = spec.plan(requested, ctx)
    else:  # ``all`` → all_stages (default: every stage); named stages as given
        names = list(spec.all_stages or spec.stages) if requested == [ALL] else requested
    metrics: dict[str, float] = {}
    timings: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        metrics.update(spec.stages[name](ctx))
        timings[name] = time.perf_counter() - start
    if len(timings) > 1:
        print("\nwall time per stage: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()))
    return metrics
