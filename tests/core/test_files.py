"""The one atomic writer and the one keyed cache."""

import pytest
import torch

from core.files import atomic_save, atomic_write, atomic_write_text, keyed_cache, read_keyed, save_keyed


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "file.bin"
    atomic_write_text(path, "old")

    def half_then_fail(handle):
        handle.write(b"new but")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]


def test_keyed_cache_computes_once_per_key_and_recomputes_for_another(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return (torch.arange(3), [torch.ones(2)])

    path = tmp_path / "cache.pt"
    first = keyed_cache(path, {"hash": "a", "count": 3}, compute)
    again = keyed_cache(path, {"hash": "a", "count": 3}, compute)
    assert len(calls) == 1 and torch.equal(first[0], again[0]) and isinstance(again, tuple)
    keyed_cache(path, {"hash": "b", "count": 3}, compute)
    assert len(calls) == 2
    assert read_keyed(path, {"hash": "a", "count": 3}) is None and read_keyed(tmp_path / "none.pt", "k") is None


class _Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('the cache ran code')",))


def test_a_damaged_or_code_carrying_cache_file_is_recomputed_not_run(tmp_path):
    path = tmp_path / "cache.pt"
    path.write_bytes(b"not a torch file")
    assert keyed_cache(path, "k", lambda: torch.zeros(2)).tolist() == [0.0, 0.0]
    atomic_save(path, {"key": "k", "value": _Boom()})  # a pickle that would execute code when unpickled
    assert read_keyed(path, "k") is None
    save_keyed(path, "k", torch.ones(1))
    assert read_keyed(path, "k").tolist() == [1.0]


def test_a_write_that_runs_out_of_space_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno
    import shutil

    from core.errors import DiskFullError

    target = atomic_write_text(tmp_path / "a.txt", "old")

    def no_space(handle):
        handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=r"no space left on device writing .*a\.txt \(.* free\)"):
        atomic_write(target, no_space)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]

    def short_write(handle):  # torch's zip writer hides the errno behind this message
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 2883584 vs 2883472")

    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DiskFullError, match="1000 B free|0.0 MiB free"):
        atomic_write(target, short_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**12, 10**9, 10**11))
    with pytest.raises(RuntimeError, match="unexpected pos") as raised:  # plenty of space: some other failure
        atomic_write(target, short_write)
    assert not isinstance(raised.value, DiskFullError) and target.read_text() == "old"
