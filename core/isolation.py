"""One run per output folder: an exclusive lock on ``train.output_dir`` held for the whole run.

Two runs started with the same ``output_dir`` would overwrite each other's checkpoints and a later stage could load
the other run's model; so :func:`hold_output_dir` takes an exclusive, non-blocking ``fcntl.flock`` on
``<output_dir>/.run.lock`` before any work, and a second run there fails at once with a message naming the holder's
process id. The operating system releases the lock when the process ends, however it ends (also ``kill -9``), so a
stale lock never blocks a later run. Holding the lock, the run then removes the temporary files
(``.<name>.*.tmp``, see :func:`core.files.atomic_write`) that killed runs left behind. Creating the lock file
also proves the folder is writable before any training step is spent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from core.errors import RunError

LOCK_NAME = ".run.lock"


def remove_stray_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.*.tmp`` files of interrupted atomic writes under ``folder`` (recursively; a subfolder with its
    own ``.run.lock`` is another run's, e.g. a sweep variant's, and is left alone); returns them."""
    removed = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not os.path.exists(os.path.join(root, d, LOCK_NAME))]
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                path = Path(root) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


@contextlib.contextmanager
def hold_output_dir(output_dir: str | Path) -> Iterator[Path]:
    """Hold ``output_dir`` exclusively for the ``with`` block (creating it), after removing stray temporaries.

    Raises:
        RunError: if another live process holds it (the message names its pid), or the folder cannot be written.
    """
    folder = Path(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a+")
    except OSError as exc:
        raise RunError(f"train.output_dir {folder} cannot be written ({exc.strerror or exc}); "
                       "choose a writable folder") from exc
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunError(f"another run (pid {holder}) is using train.output_dir {folder}; wait for it to finish or "
                           "give this run its own train.output_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        remove_stray_temporaries(folder)
        yield folder
    finally:
        handle.close()  # closing the descriptor releases the lock
