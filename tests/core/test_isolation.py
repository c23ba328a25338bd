"""One run per output folder: the exclusive hold, its release, stray temporaries, unwritable folders."""

import os
import subprocess
import sys

import pytest

from core.errors import RunError
from core.files import atomic_write
from core.isolation import LOCK_NAME, hold_output_dir, remove_stray_temporaries

HOLD_IN_CHILD = """
import sys, time
from core.isolation import hold_output_dir
with hold_output_dir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_process_is_refused_at_once_and_the_hold_ends_with_the_holder(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", HOLD_IN_CHILD, str(tmp_path / "out")], stdout=subprocess.PIPE,
                             text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=f"another run \\(pid {child.pid}\\) is using train.output_dir"):
            with hold_output_dir(tmp_path / "out"):
                pass
    finally:
        child.kill()  # like kill -9: the operating system releases the lock
        child.wait()
    with hold_output_dir(tmp_path / "out") as folder:
        assert (folder / LOCK_NAME).read_text() == str(os.getpid())


def test_the_same_process_cannot_hold_a_folder_twice(tmp_path):
    with hold_output_dir(tmp_path):
        with pytest.raises(RunError, match="another run"):
            with hold_output_dir(tmp_path):
                pass


def test_stray_temporaries_of_killed_writes_are_removed_and_real_files_kept(tmp_path):
    ck = tmp_path / "vqvae" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / ".latest.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (ck / "latest.pt").write_bytes(b"kept")
    (tmp_path / "notes.tmp").write_text("not ours: no leading dot")
    variant = tmp_path / "sweep" / "kind=vq"  # another run's folder inside this one
    variant.mkdir(parents=True)
    (variant / LOCK_NAME).write_text("123")
    (variant / ".latest.pt.xyz.tmp").write_bytes(b"being written by that run")
    with hold_output_dir(tmp_path):
        pass
    assert sorted(p.name for p in ck.iterdir()) == ["latest.pt"]
    assert (tmp_path / "notes.tmp").exists() and (variant / ".latest.pt.xyz.tmp").exists()
    atomic_write(tmp_path / "x.bin", lambda f: f.write(b"1"))
    assert remove_stray_temporaries(tmp_path) == []


def test_an_unwritable_output_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(RunError, match="train.output_dir .*file/run cannot be written"):
        with hold_output_dir(blocker / "run"):
            pass
