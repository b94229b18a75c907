"""Spool files kept for the next upload (``launcher.store.spool_files``): a big param's file is
taken by the next spool of its folder, written over and cut to the new size (no byte of the
old upload readable), within bounds of count, bytes, age and free disk."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher.store import spool_files
from launcher.store.spool import Spool
from launcher.store.spool_files import SPOOL_FILES, SpoolFiles
from runtime.tensor import deserialize_many, serialize

MIB = 1 << 20


@pytest.fixture(autouse=True)
def empty_pool() -> Iterator[None]:
    SPOOL_FILES.clear()
    yield
    SPOOL_FILES.clear()


def _tensor(mib: int, fill: int) -> bytes:
    return serialize(np.full(mib * MIB, fill, dtype=np.uint8))


def _spooled(folder: Path, data: bytes, piece: int = 4 * MIB) -> Spool:
    spool = Spool(folder, "params[0]", len(data), max_tensors=10)
    for at in range(0, len(data), piece):
        spool.feed(data[at : at + piece])
    return spool


def _inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def test_big_param_file_is_taken_by_the_next_upload_cut_to_its_size(tmp_path: Path) -> None:
    first = _spooled(tmp_path, _tensor(16, 1)).finish("x")
    inode = _inode(first.fd)
    first.close()
    assert SPOOL_FILES.kept == 1
    smaller = _tensor(9, 2)
    second = _spooled(tmp_path, smaller).finish("x")
    assert _inode(second.fd) == inode and SPOOL_FILES.kept == 0
    assert os.fstat(second.fd).st_size == len(smaller)  # nothing of the first past its end
    whole = os.pread(second.fd, len(smaller) + MIB, 0)
    assert whole == smaller
    (tensor,) = deserialize_many(second.read(0))
    assert int(tensor.numpy().min()) == 2
    second.close()


def test_small_params_are_closed_not_kept_and_take_no_kept_file(tmp_path: Path) -> None:
    source = _spooled(tmp_path, _tensor(1, 1)).finish("x")
    source.close()
    assert SPOOL_FILES.kept == 0
    _spooled(tmp_path, _tensor(16, 1)).finish("x").close()
    small = _spooled(tmp_path, _tensor(1, 2)).finish("x")  # a new file of its own
    assert SPOOL_FILES.kept == 1
    small.close()


def test_unfinished_upload_file_is_kept_and_its_bytes_never_reach_the_next(tmp_path: Path) -> None:
    data = _tensor(16, 7)
    aborted = Spool(tmp_path, "params[0]", len(data), max_tensors=10)
    aborted.feed(data[: 12 * MIB])
    aborted.close()
    assert SPOOL_FILES.kept == 1
    smaller = _tensor(9, 3)
    source = _spooled(tmp_path, smaller).finish("x")
    assert SPOOL_FILES.kept == 0  # taken
    assert os.fstat(source.fd).st_size == len(smaller)
    assert os.pread(source.fd, 16 * MIB, 0) == smaller
    source.close()


def test_each_folder_takes_only_its_own_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _spooled(tmp_path / "a", _tensor(16, 1)).finish("x").close()
    assert SPOOL_FILES.take(tmp_path / "b") is None
    fd = SPOOL_FILES.take(tmp_path / "a")
    assert fd is not None
    os.close(fd)


def test_count_and_bytes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = SpoolFiles()
    monkeypatch.setattr(spool_files, "MIN_BYTES", 1)
    monkeypatch.setattr(spool_files, "MAX_BYTES", 10 * MIB)

    def file_of(size: int) -> int:
        fd = os.open(tmp_path, os.O_TMPFILE | os.O_RDWR, 0o600)
        os.ftruncate(fd, size)
        return fd

    for _ in range(spool_files.MAX_FILES + 2):
        pool.give(file_of(MIB), tmp_path)
    assert pool.kept == spool_files.MAX_FILES
    pool.clear()
    pool.give(file_of(6 * MIB), tmp_path)
    pool.give(file_of(6 * MIB), tmp_path)  # 12 MiB in all: over MAX_BYTES, closed
    pool.give(file_of(11 * MIB), tmp_path)  # over MAX_BYTES alone
    assert pool.kept == 1
    pool.clear()


def test_kept_files_are_closed_after_max_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_files, "MAX_IDLE", 0.2)
    pool = SpoolFiles()
    fd = os.open(tmp_path, os.O_TMPFILE | os.O_RDWR, 0o600)
    os.ftruncate(fd, 16 * MIB)
    pool.give(fd, tmp_path)
    assert pool.kept == 1
    deadline = time.monotonic() + 5
    while pool.kept and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.kept == 0
    with pytest.raises(OSError):
        os.fstat(fd)  # closed by the reaper


def test_nothing_kept_on_a_nearly_full_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_files, "MIN_FREE_FRACTION", 1.0)  # never that much free
    _spooled(tmp_path, _tensor(16, 1)).finish("x").close()
    assert SPOOL_FILES.kept == 0
