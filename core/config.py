"""Typed configs: YAML files loaded into dataclasses, with dotted command-line overrides.

``load_config(ImageConfig, "experiments/configs/image/default.yaml", ["quantizer.beta=0.5"])`` reads the file,
applies the overrides (values parsed as YAML scalars), and builds the nested dataclasses. An unknown key or a
value of the wrong type raises :class:`ConfigError` naming the dotted key, and so does a value outside the range a
section declares in its ``LIMITS`` (``{"steps": (">=", 1)}``): a cadence of 0 or a temperature of 0 is refused when
the config loads, before any work, not mid-run. A section may also define ``check(self)`` for rules that tie several
fields together (it raises :class:`ConfigError`); it runs once the section is built. The shared sections (quantizer,
training loop, tracking) live here; each domain composes them with its own sections.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from core.per_kind import PerKindError, resolve_per_kind

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A config file or override that does not match the typed config."""


Limits = dict[str, tuple]  # field → (op, bound, op, bound, …) with op one of ">=", ">", "<=", "<"
_OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}
LR_SCHEDULES = ("constant", "cosine")


def check_limits(cfg: Any, prefix: str = "") -> None:
    """Check the fields of one config section against its class's ``LIMITS`` (and ``CHOICES``: field → allowed
    values).

    Raises:
        ConfigError: naming the dotted key, the rule and the value, e.g. ``train.eval_every must be >= 1, got 0``.
    """
    for name, rule in getattr(type(cfg), "LIMITS", {}).items():
        value = getattr(cfg, name)
        for op, bound in zip(rule[::2], rule[1::2]):
            if not _OPS[op](value, bound):
                raise ConfigError(f"{prefix}{name} must be {op} {bound}, got {value!r}")
    for name, allowed in getattr(type(cfg), "CHOICES", {}).items():
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"{prefix}{name}: unknown value {getattr(cfg, name)!r}; known {name}s: "
                              f"{', '.join(map(str, allowed))}")


@dataclass
class QuantizerConfig:
    """Which core quantizer and its settings (defaults are the paper's: K = 512, D = 64, β = 0.25, γ = 0.99)."""

    kind: str = "vq"  # "vq" (paper eq. 3), "ema" (appendix A.1) or "sq" (SQ-VAE, Gaussian)
    codebook_size: int = 512
    code_dim: int = 64
    groups: int = 1  # G codebooks per latent vector, each quantizing its own slice of D (product quantization)
    beta: float = 0.25  # vq, ema
    decay: float = 0.99  # ema
    epsilon: float = 1e-5  # ema: Laplace smoothing
    variance: str = "shared"  # sq: "shared" (variant I) or "elementwise" (variant IV)
    init_variance: float = 20.0  # sq
    temperature_init: float = 1.0  # sq
    temperature_decay: float = 1e-5  # sq
    temperature_min: float = 0.0  # sq
    fused: bool = False  # sq: the hand-written autograd function (core.quantize.stochastic) instead of the formulas
    codebook_lr_scale: float = 1.0  # vq: Adam learning rate of the codebook ÷ the model's (1: the paper's)
    data_init: bool = False  # beyond the paper
    dead_code_restart: bool = False  # beyond the paper
    restart_every: int = 100
    restart_threshold: float = 1.0

    RENAMED: ClassVar[dict[str, str]] = {"num_codebooks": "groups"}  # old key → its name now (refused by name)
    KIND_FIELD: ClassVar[str] = "kind"  # a YAML quantizer.per_kind table holds each kind's own settings (core.per_kind)
    LIMITS: ClassVar[Limits] = {"codebook_size": (">=", 1), "code_dim": (">=", 1), "groups": (">=", 1),
                                "beta": (">=", 0), "decay": (">", 0, "<", 1), "epsilon": (">", 0),
                                "init_variance": (">", 0), "temperature_init": (">", 0), "codebook_lr_scale": (">", 0),
                                "restart_every": (">=", 1), "restart_threshold": (">=", 0)}

    @staticmethod
    def known_kinds() -> list[str]:
        """The quantizer kinds (keys of :data:`core.quantize.QUANTIZERS`)."""
        from core.quantize import QUANTIZERS

        return sorted(QUANTIZERS)

    def check(self) -> None:
        """Refuse a combination known to collapse.

        Raises:
            ConfigError: for ``kind="sq"`` with ``data_init``: codes drawn from the first batch's (still clustered)
                encoder outputs leave SQ-VAE's quantization posterior near uniform and training ends on a few codes.
        """
        if self.kind == "sq" and self.data_init:
            raise ConfigError("quantizer.kind=sq with quantizer.data_init=true collapses to a few used codes (the "
                              "codebook starts inside the untrained encoder's cluster); set quantizer.data_init=false, "
                              "or give SQ its own settings under quantizer.per_kind.sq")

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the selected quantizer class: the entries its constructor (with the shared
        :class:`~core.quantize.base.CodebookQuantizer` ones) accepts, read from its signature.

        Raises:
            ConfigError: for an unknown kind, or an entry set away from its default that the kind does not take
                (it would be ignored silently otherwise).
        """
        import inspect

        from core.quantize import QUANTIZERS, CodebookQuantizer

        if self.kind not in QUANTIZERS:
            raise ConfigError(f"quantizer.kind: unknown kind {self.kind!r}; known kinds: {sorted(QUANTIZERS)}")
        accepted = {name for cls in (QUANTIZERS[self.kind], CodebookQuantizer)
                    for name, p in inspect.signature(cls.__init__).parameters.items()
                    if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
        defaults = QuantizerConfig()
        kwargs = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "kind":
                continue
            if f.name in accepted:
                kwargs[f.name] = value
            elif value != getattr(defaults, f.name):
                raise ConfigError(f"quantizer.{f.name} is not a setting of quantizer.kind={self.kind!r} "
                                  f"(it takes: {', '.join(sorted(accepted))})")
        return kwargs


@dataclass
class TrainConfig:
    """The training loop shared by every domain and stage."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-4  # Adam, as in the paper
    warmup_steps: int = 0  # linear warm-up over these steps (0: none, the paper's setting)
    lr_schedule: str = "constant"  # "constant" (the paper's setting) or "cosine" (decay to 0 at the last step)
    eval_every: int = 500
    log_every: int = 50
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    output_dir: str = "outputs/run"  # checkpoints and media of this run
    threads: int = 0  # torch intra-op threads on the CPU (0: torch's default)
    # "fp32" (the papers') or "bf16": the forward pass under torch.autocast with bfloat16 on the run's device
    # (CUDA or CPU); parameters, Adam, and the quantizers' distances, EMA updates and restarts stay float32
    precision: str = "fp32"

    LIMITS: ClassVar[Limits] = {"steps": (">=", 1), "batch_size": (">=", 1), "lr": (">", 0),
                                "warmup_steps": (">=", 0), "eval_every": (">=", 1), "log_every": (">=", 1),
                                "checkpoint_every": (">=", 1), "threads": (">=", 0)}
    CHOICES: ClassVar[dict[str, tuple]] = {"lr_schedule": LR_SCHEDULES, "precision": ("fp32", "bf16")}


@dataclass
class TrackingConfig:
    """MLflow tracking. An empty ``tracking_uri`` means ``$MLFLOW_TRACKING_URI`` or else a local sqlite store
    ``mlflow.db`` with artifacts in ``mlartifacts/``, both in the working directory."""

    tracking_uri: str = ""
    experiment_name: str = "vqvae"
    run_name: str = ""
    enabled: bool = True
    log_models: bool = True  # every training stage logs its final model as an MLflow model (core/export.py)
    register_model: str = ""  # non-empty: register each logged model as "<register_model>-<stage>"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int accepted for float); raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {tp}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {_type_name(tp)} fields, got {value!r}")
        return _build(tp, value, key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):  # YAML 1.1 reads "1e-4" as a string
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    renamed = getattr(cls, "RENAMED", {})
    for old in values:
        if old in renamed:
            raise ConfigError(f"config key {prefix}{old} was renamed to {prefix}{renamed[old]}; use that name")
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]!s}; known keys in "
                          f"{prefix.rstrip('.') or cls.__name__}: {', '.join(names)}")
    defaults = {f.name: f.default_factory() for f in dataclasses.fields(cls)
                if f.default_factory is not dataclasses.MISSING}
    kwargs = {}
    for k, v in values.items():
        if isinstance(v, dict) and dataclasses.is_dataclass(defaults.get(k)):
            v = _merge(dataclasses.asdict(defaults[k]), v)  # a partial section keeps the field's own defaults
        kwargs[k] = _coerce(v, hints[k], prefix + k)
    cfg = cls(**kwargs)
    check_limits(cfg, prefix)
    if callable(getattr(cfg, "check", None)):
        cfg.check()  # rules across fields or sections
    return cfg


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``["a.b=1", ...]`` to a nested dict (values parsed as YAML scalars); returns a new dict.

    Raises:
        ConfigError: for an override without ``=``.
    """
    result = yaml.safe_load(yaml.safe_dump(values)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.subkey=value")
        key, raw = item.split("=", 1)
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return result


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None) -> Any:
    """Load ``cls`` (a dataclass) from a YAML file plus dotted overrides.

    Args:
        cls: the top-level config dataclass.
        path: YAML file; ``None`` uses the dataclass defaults. A top-level ``base: other.yaml`` entry reads that file
            (from the same folder) first; the file's own sections override it key by key.
        overrides: ``["quantizer.beta=0.5", ...]``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ConfigError: for malformed YAML, an unknown key or a wrong type (the message names the dotted key).
    """
    values = _read_yaml(Path(path)) if path is not None else {}
    values = apply_overrides(values, overrides or [])
    try:  # a section's per_kind entry for its selected kind (core.per_kind); the command line still wins
        values = resolve_per_kind(cls, values, apply_overrides({}, overrides or []))
    except PerKindError as exc:
        raise ConfigError(str(exc)) from None
    cfg = _build(cls, values)
    _check_stage_train_configs(cfg)
    return cfg


# entries of a later stage's TrainConfig that always come from the run's own ``train`` section
RUN_WIDE_TRAIN_KEYS = ("output_dir", "device")


def _check_stage_train_configs(cfg: Any) -> None:
    """Reject a later stage's ``<section>.train.output_dir`` / ``.device`` set apart from the run's ``train``:
    every stage writes under the run's folder on the run's device (:func:`stage_train_config`), so such an entry
    would be ignored."""
    if not dataclasses.is_dataclass(cfg) or not isinstance(getattr(cfg, "train", None), TrainConfig):
        return
    defaults = TrainConfig()
    for section in dataclasses.fields(cfg):
        stage = getattr(getattr(cfg, section.name), "train", None)
        if section.name == "train" or not isinstance(stage, TrainConfig):
            continue
        for key in RUN_WIDE_TRAIN_KEYS:
            value = getattr(stage, key)
            if value != getattr(defaults, key) and value != getattr(cfg.train, key):
                raise ConfigError(f"{section.name}.train.{key} cannot differ from train.{key}: every stage runs "
                                  f"under the run's folder on the run's device; set train.{key} instead")


def stage_train_config(stage: TrainConfig, run: TrainConfig) -> TrainConfig:
    """A later stage's loop settings: its own, with ``output_dir`` and ``device`` of the run's ``train`` section
    and the run's ``threads`` where the stage sets none."""
    return dataclasses.replace(stage, output_dir=run.output_dir, device=run.device, threads=stage.threads or run.threads)


def _merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, section by section (a new dict)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The mapping of a YAML config; a top-level ``base: FILE`` (relative to the file's folder) is read first and
    overridden section by section by the rest of the file.

    Raises:
        FileNotFoundError: if ``path`` (or a base) does not exist.
        ConfigError: for malformed YAML, a top level that is not a mapping, or a cycle of bases.
    """
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: its base chain comes back to itself")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be a file name, got {base!r}")
    return _merge(_read_yaml(path.parent / base, (*seen, path.resolve())), values)


def to_dict(cfg: Any) -> dict:
    """The config as nested plain dicts (for checkpoints and YAML)."""
    return dataclasses.asdict(cfg)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted ``{"quantizer.beta": 0.25, ...}`` view of a config (MLflow params)."""
    out: dict[str, Any] = {}
    items = dataclasses.asdict(cfg).items() if dataclasses.is_dataclass(cfg) else cfg.items()
    for key, value in items:
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def from_dict(cls: type, values: dict) -> Any:
    """Rebuild a config dataclass from :func:`to_dict` output (e.g. the one stored in a checkpoint)."""
    return _build(cls, values)


__all__ = ["ConfigError", "QuantizerConfig", "TrackingConfig", "TrainConfig", "apply_overrides", "check_limits",
           "flatten", "from_dict", "load_config", "to_dict"]
