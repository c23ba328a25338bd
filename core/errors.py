"""The suite's own run-time errors: what ``experiments/run.py`` prints as one line (exit code 2) instead of a traceback.

Configuration mistakes raise :class:`core.config.ConfigError` (a ``ValueError``); missing files ``FileNotFoundError``;
what goes wrong once a run is under way raises a :class:`RunError` subclass with a message that says what to do.
"""

from __future__ import annotations


class RunError(RuntimeError):
    """A run cannot start or go on (output folder in use, nothing to resume, tracking store unreachable, …)."""


class DiskFullError(RunError):
    """A file could not be written for lack of space; nothing half-written was left and the previous file is kept."""


# what experiments/run.py reports as one line: the suite's own errors and the bad-input errors its checks raise
USER_ERRORS = (RunError, ValueError, OSError)


def out_of_range(values: "torch.Tensor", size: int) -> bool:
    """Whether an integer of ``values`` lies outside ``[0, size)`` (False for an empty tensor). False while
    ``torch.export`` traces: a check on values cannot be traced, and an exported program takes its inputs as given
    (the logged MLflow models, :mod:`core.export`)."""
    import torch

    if torch.compiler.is_exporting() or not values.numel():
        return False
    return bool(values.min() < 0 or values.max() >= size)
