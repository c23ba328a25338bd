"""Settings that belong to one kind of a component: a config section's ``per_kind`` table.

A config dataclass that names its ``KIND_FIELD`` (:class:`core.config.QuantizerConfig`: ``kind``) and lists its kinds
(``known_kinds()``) may carry, in a YAML file or an override, a ``per_kind`` mapping from each kind to entries of
that same section. :func:`core.config.load_config` applies the entry of the selected kind over the section's own
keys, so a sweep over kinds trains each kind in its own setting; a key of the section given on the command line
(``quantizer.data_init=true``) wins over both::

    quantizer:
      kind: ema
      data_init: true          # every kind ...
      per_kind:
        sq: {data_init: false}  # ... except SQ, whenever quantizer.kind=sq

Order, last wins: the dataclass defaults, the file's keys of the section, ``per_kind.<selected kind>``, the
command-line overrides of the section's keys. The table itself is not part of the built config (nor of its
MLflow params or checkpoints): they hold the resolved values.
"""

from __future__ import annotations

import dataclasses
import typing
PER_KIND = "per_kind"


class PerKindError(ValueError):
    """A malformed ``per_kind`` table (:class:`core.config.ConfigError` derives the user-facing error from it)."""


def resolve_per_kind(cls: type, values: dict, explicit: dict, prefix: str = "") -> dict:
    """Apply every ``per_kind`` table in ``values`` (the nested dict of ``cls``, file and overrides merged).

    Args:
        cls: the dataclass ``values`` describes; nested dataclass sections are resolved too.
        values: the merged config dict (not modified).
        explicit: the command-line overrides alone, nested the same way; their keys win over ``per_kind``.
        prefix: dotted path of ``values`` for messages.

    Returns:
        A new dict without ``per_kind`` entries.

    Raises:
        PerKindError: for a ``per_kind`` table in a section without kinds, an unknown kind, an entry that is not a
            mapping, or a key that is not a field of the section (the message names the dotted key).
    """
    out = dict(values)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(out.get(f.name), dict):
            sub = explicit.get(f.name) if isinstance(explicit.get(f.name), dict) else {}
            out[f.name] = resolve_per_kind(tp, out[f.name], sub, f"{prefix}{f.name}.")
    if PER_KIND not in out:
        return out
    table = out.pop(PER_KIND)
    where = f"{prefix}{PER_KIND}"
    kind_field = getattr(cls, "KIND_FIELD", None)
    if kind_field is None:
        raise PerKindError(f"{where}: {prefix.rstrip('.') or cls.__name__} has no kinds to set entries for")
    if not isinstance(table, dict):
        raise PerKindError(f"{where}: expected a mapping from kind to settings, got {table!r}")
    kinds = cls.known_kinds()
    names = {f.name for f in dataclasses.fields(cls)} - {kind_field}
    for kind, settings in table.items():
        if kind not in kinds:
            raise PerKindError(f"{where}.{kind}: unknown kind; known kinds: {', '.join(sorted(kinds))}")
        if not isinstance(settings, dict):
            raise PerKindError(f"{where}.{kind}: expected a mapping of {prefix.rstrip('.')} keys, got {settings!r}")
        for key in settings:
            if key not in names:
                raise PerKindError(f"unknown config key {where}.{kind}.{key}; known keys: {', '.join(sorted(names))}")
    selected = out.get(kind_field, {f.name: f.default for f in dataclasses.fields(cls)}[kind_field])
    for key, value in (table.get(selected) or {}).items():
        if key not in explicit:
            out[key] = value
    return out


__all__ = ["PER_KIND", "PerKindError", "resolve_per_kind"]
