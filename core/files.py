"""Files the suite writes: one atomic writer and one keyed cache, used by every domain.

An atomic write goes into a temporary file in the target's folder, is flushed to disk, and is renamed over the
target (``os.replace``), so a killed run leaves either the old file or the new one, never half of one; the temporary
file is removed when writing fails, and a write that fails for lack of space raises
:class:`~core.errors.DiskFullError` naming the file and the free space. The keyed cache stores a value with the key it was computed for and hands it back
only for an equal key; it is read with ``torch.load(weights_only=True)``, so a cache file cannot run code.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from core.errors import DiskFullError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(handle)`` atomically (see the module docstring); creates parent folders.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        if _out_of_space(exc, path.parent):
            raise DiskFullError(f"no space left on device writing {path} ({_free(path.parent)} free); nothing "
                                f"half-written was left and the previous {path.name}, if any, is kept: free some "
                                "space and continue with --resume") from exc
        raise
    return path


# what torch's zip writer raises when a write comes up short (it hides the operating system's errno)
_SHORT_WRITE = ("unexpected pos", "file write failed", "PytorchStreamWriter failed writing")
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
LOW_SPACE = 64 * 2**20  # bytes: below this, a failed write is put down to the full disk


def _out_of_space(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of space: an ``ENOSPC``/``EDQUOT`` error, or torch's short-write error on a
    filesystem with less than :data:`LOW_SPACE` left."""
    for err in (exc, exc.__cause__, exc.__context__):
        if isinstance(err, OSError) and err.errno in _SPACE_ERRNOS:
            return True
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _SHORT_WRITE):
        try:
            return shutil.disk_usage(folder).free < LOW_SPACE
        except OSError:
            return False
    return False


def _free(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB"
    except OSError:
        return "unknown space"


def atomic_save(path: str | Path, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def read_keyed(path: str | Path, key: Any) -> Any | None:
    """The value :func:`save_keyed` stored in ``path`` for ``key``; ``None`` if the file is missing, unreadable, not
    such a file, or stored for another key. Read with ``torch.load(weights_only=True)``: the file cannot run code."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated, foreign or unsafe file
        return None
    if isinstance(stored, dict) and set(stored) == {"key", "value"} and stored["key"] == key:
        return stored["value"]
    return None


def save_keyed(path: str | Path, key: Any, value: Any) -> Path:
    """Store ``value`` with the ``key`` it belongs to in ``path``, atomically. Both must be made of tensors, numbers,
    strings, lists, tuples and dicts (what ``torch.load(weights_only=True)`` reads back)."""
    return atomic_save(path, {"key": key, "value": value})


def keyed_cache(path: str | Path, key: Any, compute: Callable[[], Any]) -> Any:
    """The value stored in ``path`` for ``key`` (:func:`read_keyed`), or else ``compute()``, stored there with
    ``key`` (:func:`save_keyed`) and returned."""
    value = read_keyed(path, key)
    if value is None:
        value = compute()
        save_keyed(path, key, value)
    return value
