"""Sweeps: several variants of one run side by side in the MLflow UI.

``python experiments/run.py image --sweep quantizer.kind=vq,ema,sq --sweep train.seed=0,1`` runs every combination
(here 3 × 2 variants) one after the other. Each variant is the ordinary run with its ``key=value`` overrides added,
its own ``train.output_dir`` (``<output_dir>/sweep/<variant>``) and its own run names. In MLflow (tag
``mlflow.parentRunId``) the sweep is one parent run with one child run per variant, and each variant's stage runs
(``vqvae``, ``prior``, …) are children of its variant run. A variant run holds the variant's resolved config as
params and its final metrics (all stages merged, as ``val/<metric>``), so selecting the variant runs and pressing *Compare* in the UI
lays them side by side (params that differ, metrics, parallel coordinates). The parent run logs, when all
variants are done:

* ``comparison.json`` — one row per variant: the swept values (``quantizer_kind``: the UI's table reads a dot as
  a nested field) and every final metric (``Tracker.log_table``, shown by the UI's artifact viewer), and ``comparison.md``, the same as a Markdown table, also printed;
* ``comparison_<metric>.png`` — the domain's main held-out metric against the training step, one line per
  variant (e.g. ``val/psnr`` of the image VQ-VAE stage);
* ``<variant>/val/<metric>`` metrics with the final values (``kind_vq/val/psnr``: "=" and "," become "_"), so the parent's own chart view compares them too.

With ``--register-best METRIC:max`` (or ``:min``) and ``tracking.register_model=NAME``, the variants register
nothing themselves; when all are done, the variant with the best final ``METRIC`` has each of its stages' logged
models registered as a new version of ``NAME-<stage>`` (tags ``sweep_run_id``, ``variant``, ``METRIC``), and the
parent run is tagged ``best_variant``.

Every variant's config is loaded (and so checked) before the first one starts. A variant that fails is reported
and the others still run; the sweep then ends with a :class:`~core.errors.RunError` naming the failed ones.
Values are split at commas, so a swept value cannot itself contain a comma.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from pathlib import Path
from typing import Any

from core.config import ConfigError, flatten, load_config
from core.errors import USER_ERRORS, RunError
from core.stages import DomainSpec, run_domain
from core.tracking import Tracker, child_runs_of, end_open_runs, git_commit


def parse_sweeps(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["quantizer.kind=vq,ema"]`` → ``[("quantizer.kind", ["vq", "ema"])]``.

    Raises:
        ConfigError: for an item without ``=``, without values, with a repeated value, or a key swept twice.
    """
    sweeps: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, raw = item.partition("=")
        values = [v.strip() for v in raw.split(",")]
        if not sep or not key.strip() or not all(values):
            raise ConfigError(f"--sweep {item!r} must look like key.subkey=value1,value2")
        if len(set(values)) != len(values):
            raise ConfigError(f"--sweep {item!r} repeats a value")
        if key.strip() in {k for k, _ in sweeps}:
            raise ConfigError(f"--sweep: {key.strip()} is swept twice")
        sweeps.append((key.strip(), values))
    return sweeps


def variants(sweeps: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    """Every combination of the swept values, in order (the last key varies fastest)."""
    keys = [k for k, _ in sweeps]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(values for _, values in sweeps))]


def variant_name(variant: dict[str, str]) -> str:
    """A folder- and run-name-safe label: ``kind=vq,seed=1`` (the last part of each key)."""
    label = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in variant.items())
    return re.sub(r"[^A-Za-z0-9_.,=-]", "_", label)


def parse_register_best(item: str) -> tuple[str, str]:
    """``"psnr:max"`` → ``("psnr", "max")``.

    Raises:
        ConfigError: unless the item is ``METRIC:max`` or ``METRIC:min``.
    """
    metric, sep, direction = item.rpartition(":")
    if not sep or not metric.strip() or direction not in ("max", "min"):
        raise ConfigError(f"--register-best {item!r} must look like METRIC:max or METRIC:min, e.g. psnr:max")
    return metric.strip(), direction


def best_variant(results: dict[str, dict[str, float]], metric: str, direction: str) -> str:
    """The variant whose final ``metric`` is highest (``max``) or lowest (``min``); ties go to the first.

    Raises:
        RunError: if no variant reported ``metric`` (the metrics they did report are named).
    """
    scored = {name: m[metric] for name, m in results.items() if m.get(metric) is not None}
    if not scored:
        found = sorted({k for m in results.values() for k in m})
        raise RunError(f"--register-best: no variant reported {metric!r}; their metrics: {', '.join(found)}")
    pick = max if direction == "max" else min
    return pick(scored, key=scored.__getitem__)


def run_sweep(spec: DomainSpec, config_path: str | Path | None, overrides: list[str], sweep_items: list[str],
              stage: str = "all", register_best: str = "", **options: Any) -> dict[str, dict[str, float]]:
    """Run every variant of ``sweep_items`` as child runs of one parent run (see the module docstring).

    Returns:
        variant name → its merged final metrics (failed variants are left out).

    Raises:
        ConfigError: for a malformed sweep or ``register_best``, ``register_best`` without a tracked
            ``tracking.register_model``, or a variant whose config does not load (all before any work).
        RunError: after all variants ran, if some failed (named, with their errors), or none reported the
            ``register_best`` metric.
    """
    sweeps = parse_sweeps(sweep_items)
    base = load_config(spec.config_class, config_path, overrides)
    best_by = parse_register_best(register_best) if register_best else None
    if best_by and not (base.tracking.register_model and base.tracking.enabled):
        raise ConfigError("--register-best needs tracking.register_model=NAME (and tracking enabled): the name the "
                          "best variant's models are registered under")
    runs = variants(sweeps)
    root = Path(base.train.output_dir) / "sweep"
    prefix = base.tracking.run_name or time.strftime("%Y%m%d-%H%M%S")
    plans = []
    for variant in runs:
        name = variant_name(variant)
        extra = [f"{k}={v}" for k, v in variant.items()] + [f"train.output_dir={root / name}",
                                                            f"tracking.run_name={prefix}-{name}"]
        extra += ["tracking.register_model="] if best_by else []  # only the best variant is registered, at the end
        cfg = load_config(spec.config_class, config_path, overrides + extra)  # all checked before any work
        plans.append((name, variant, overrides + extra, cfg))
    parent = Tracker(dataclasses.replace(base.tracking, run_name=f"{prefix}-sweep"))
    parent.log_params({"sweep": " ".join(sweep_items), "overrides": " ".join(overrides), "stage": stage,
                       "variants": len(plans), **{f"sweep.{k}": ",".join(v) for k, v in sweeps}})
    results: dict[str, dict[str, float]] = {}
    failed: dict[str, str] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    run_ids: dict[str, str] = {}
    try:
        for name, variant, variant_overrides, cfg in plans:
            print(f"\n=== sweep variant {name} ({len(results) + len(failed) + 1}/{len(plans)})")
            with child_runs_of(parent.run_id):
                run = Tracker(cfg.tracking)  # named <prefix>-<variant>
            run_ids[name] = run.run_id
            run.log_params({**flatten(cfg), "stage": stage, "git_commit": git_commit(),
                            **{f"sweep.{k}": v for k, v in variant.items()}})
            try:
                with child_runs_of(run.run_id):
                    results[name] = run_domain(spec, config_path, variant_overrides, stage=stage, **options)
            except USER_ERRORS as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"
                print(f"sweep variant {name} failed: {exc}")
                run.end("FAILED")
                continue
            run.log_metrics({f"val/{k}": v for k, v in results[name].items()}, 0)
            curves[name] = run.child_metric_history(f"-{spec.main_metric[0]}", spec.main_metric[1])
            run.end()
        _log_comparison(parent, spec, plans, results, failed, curves)
        if best_by and results:
            _register_best(parent, results, run_ids, best_by, base.tracking.register_model)
    except KeyboardInterrupt:  # the parent and the variant run under way
        end_open_runs("KILLED")
        raise
    except BaseException:
        end_open_runs("FAILED")
        raise
    parent.end("FAILED" if failed else "FINISHED")
    if failed:
        raise RunError("sweep variants failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return results


def _log_comparison(parent: Tracker, spec: DomainSpec, plans, results, failed, curves) -> None:
    """The parent's table, Markdown, per-variant final metrics and the main metric's curves."""
    found = {k for metrics in results.values() for k in metrics}
    metric_names = [m for m in spec.summary_metrics if m in found] + sorted(found - set(spec.summary_metrics))
    swept = list(plans[0][1]) if plans else []
    # the UI's table reads a dot in a column name as a nested field: "quantizer.kind" is shown as "quantizer_kind"
    columns: dict[str, list[Any]] = {"variant": [], **{k.replace(".", "_"): [] for k in swept}, "status": [],
                                     **{m: [] for m in metric_names}}
    for name, variant, _, _ in plans:
        columns["variant"].append(name)
        for k in swept:
            columns[k.replace(".", "_")].append(variant[k])
        columns["status"].append("failed" if name in failed else "finished")
        for m in metric_names:
            columns[m].append(results.get(name, {}).get(m))
    parent.log_table(columns, "comparison.json")
    shown = [m for m in spec.summary_metrics if m in metric_names] or metric_names
    header = ["variant", "status", *shown]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, name in enumerate(columns["variant"]):
        cells = [name, columns["status"][i]] + [_cell(columns[m][i]) for m in shown]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print("\nsweep comparison (final metrics):\n" + table)
    parent.log_text(table + "\n", "comparison.md")
    for name, metrics in results.items():
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)  # MLflow metric names allow no "=" or ","
        parent.log_metrics({f"{safe}/val/{m}": v for m, v in metrics.items() if m in shown}, 0)
    key = spec.main_metric[1]
    parent.log_figure(_curves_figure(curves, key), f"comparison_{key.replace('/', '_')}.png")
    print(f"MLflow UI: {parent.ui_command()}")


def _register_best(parent: Tracker, results: dict[str, dict[str, float]], run_ids: dict[str, str],
                   best_by: tuple[str, str], name: str) -> None:
    """Register the best variant's logged models and tag the parent run with the choice."""
    metric, direction = best_by
    best = best_variant(results, metric, direction)
    value = results[best][metric]
    registered = parent.register_child_models(run_ids[best], name, {"sweep_run_id": parent.run_id, "variant": best,
                                                                   metric: f"{value:.6g}"})
    parent.set_tags({"best_variant": best, "best_by": f"{metric}:{direction}", f"best_{metric}": f"{value:.6g}"})
    versions = ", ".join(f"{n} version {v}" for n, v in registered) or "no logged models (tracking.log_models=false?)"
    print(f"best variant by {metric} ({direction}): {best} ({value:.4g}); registered {versions}")


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _curves_figure(curves: dict[str, list[tuple[int, float]]], key: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        if points:
            steps, values = zip(*sorted(points))
            ax.plot(steps, values, marker="o", label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(key)
    ax.set_title(f"{key} per variant")
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    return fig
