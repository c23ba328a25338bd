"""Configs stored in checkpoints, set against the config of the run that reads them: which entries differ
(:func:`config_changes`), which of them may change when a run is resumed (:func:`resumable`), and the renames that
let an old checkpoint's config load (:func:`migrate_stored`). Configs are :func:`core.config.to_dict` dicts."""

from __future__ import annotations

from typing import Any

from core.config import QuantizerConfig, flatten

# entries that may change when a run is resumed (matched as the end of the dotted key): how long and how often, where
# it runs, and the MLflow run's name; anything else would make the resumed run a different experiment
RESUMABLE_KEYS = ("train.steps", "train.eval_every", "train.log_every", "train.checkpoint_every", "train.threads",
                  "train.device", "data.num_workers", "tracking.run_name")


def same_value(a: Any, b: Any) -> bool:
    """``a == b`` with lists and tuples (nested) compared alike: a tuple stored in a checkpoint or YAML comes back
    as a list."""
    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    return plain(a) == plain(b)


def config_changes(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old value, new value)}`` of every entry that differs between two :func:`to_dict` configs
    (a key present in only one of them counts, with ``None`` for the missing side; see :func:`same_value`)."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if not same_value(a.get(k), b.get(k))}


def resumable(key: str) -> bool:
    """Whether ``key`` (dotted) may change on resume (:data:`RESUMABLE_KEYS`)."""
    return any(key == allowed or key.endswith("." + allowed) for allowed in RESUMABLE_KEYS)


def migrate_stored(values: Any) -> Any:
    """A stored config (nested dict, e.g. a checkpoint's) with the entries of renamed keys under their names now
    (``quantizer.num_codebooks`` → ``quantizer.groups``), so that checkpoints written before a rename still load
    and resume; a config a user writes is refused with the old name instead (:func:`load_config`)."""
    if not isinstance(values, dict):
        return values
    out = {k: migrate_stored(v) for k, v in values.items()}
    for old, new in _STORED_RENAMES.items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    return out


# every RENAMED entry of the config classes, for stored configs (whose sections are plain dicts)
_STORED_RENAMES = dict(QuantizerConfig.RENAMED)


__all__ = ["RESUMABLE_KEYS", "config_changes", "migrate_stored", "resumable", "same_value"]
