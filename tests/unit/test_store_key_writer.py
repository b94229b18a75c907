"""KeyWriter's file path: big writes written beside their hashing, pages handed to the disk in
windows while written and dropped once fsync'd (advice only: a refusal changes nothing),
aligned buffers written past the page cache (O_DIRECT) where the file system takes it and the
usual way where not, a failed write discarding the key, and ``discard`` from another thread
waiting for a write in flight instead of closing the file under it."""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from launcher.store import blobs
from launcher.store.blobs import KeyWriter

MIB = 1 << 20


def chunks(n: int, size: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.bytes(size) for _ in range(n)]


@pytest.mark.parametrize("size", [20_000, MIB - 1, MIB, 3 * MIB + 7])
def test_every_write_size_hashes_and_stores_the_same_bytes(tmp_path: Path, size: int) -> None:
    parts = chunks(6, size)
    writer = KeyWriter("k", tmp_path / "k")
    for part in parts:
        writer.write(part)
    key = writer.finish()
    whole = b"".join(parts)
    assert key.byte_size == len(whole)
    assert key.sha256 == hashlib.sha256(whole).hexdigest()
    assert (tmp_path / "k").read_bytes() == whole


def test_pages_are_advised_window_by_window_and_dropped_after_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    advice: list[tuple[int, int]] = []
    events: list[str] = []
    monkeypatch.setattr(blobs, "_fadvise", lambda fd, off, n, how: advice.append((off, n)))
    real_fsync = os.fsync
    monkeypatch.setattr(
        blobs.os, "fsync", lambda fd: (events.append(f"fsync after {len(advice)}"), real_fsync(fd))
    )
    writer = KeyWriter("k", tmp_path / "k", writeback_window=4 * MIB)
    for part in chunks(10, 2 * MIB):  # 20 MiB: windows end at 4, 8, 12, 16 and 20 MiB
        writer.write(part)
    writer.finish()
    w = 4 * MIB
    assert advice[:5] == [(0, w), (0, 2 * w), (w, 2 * w), (2 * w, 2 * w), (3 * w, 2 * w)]
    assert advice[5:] == [(0, 0)], "the whole file is dropped once fsync'd"
    assert events == ["fsync after 5"]


def test_a_small_key_file_is_not_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    advice: list[tuple[int, int]] = []
    monkeypatch.setattr(blobs, "_fadvise", lambda fd, off, n, how: advice.append((off, n)))
    writer = KeyWriter("k", tmp_path / "k")
    writer.write(b"\x01" * (200 << 10))
    writer.finish()
    assert advice == []


def test_refused_advice_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int, off: int, n: int, how: int) -> None:
        raise OSError(errno.ESPIPE, "Illegal seek")

    monkeypatch.setattr(blobs, "_fadvise", refuse)
    parts = chunks(5, 2 * MIB)
    writer = KeyWriter("k", tmp_path / "k", writeback_window=MIB)
    for part in parts:
        writer.write(part)
    key = writer.finish()
    assert key.sha256 == hashlib.sha256(b"".join(parts)).hexdigest()


def test_a_failed_big_write_discards_the_key_and_raises_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = KeyWriter("k", tmp_path / "k")
    writer.write(b"\x00" * (2 * MIB))
    real_write = os.pwrite

    def full(fd: int, data: object, offset: int) -> int:
        if threading.current_thread().name.startswith("key-write"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs.os, "pwrite", full)
    with pytest.raises(OSError) as e:
        writer.write(b"\x00" * (2 * MIB))
    assert e.value.errno == errno.ENOSPC
    assert not (tmp_path / "k").exists()
    with pytest.raises(ValueError, match="already finished or closed"):
        writer.write(b"\x00")
    writer.discard()  # idempotent


def test_discard_waits_for_a_write_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An aborted job discards its keys from another thread while the session may still be
    writing one: the descriptor is closed only after that write, never under it."""
    writer = KeyWriter("k", tmp_path / "k")
    writer.write(b"\x00" * (2 * MIB))
    entered, release = threading.Event(), threading.Event()
    real_write = os.pwrite
    closed_during_write: list[bool] = []

    def slow(fd: int, data: object, offset: int) -> int:
        if not threading.current_thread().name.startswith("key-write"):
            return real_write(fd, data, offset)  # type: ignore[arg-type]
        entered.set()
        release.wait(5)
        try:
            os.fstat(fd)
        except OSError:
            closed_during_write.append(True)
        return real_write(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs.os, "pwrite", slow)
    failure: list[BaseException] = []

    def write() -> None:
        try:
            writer.write(b"\x00" * (2 * MIB))
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=write)
    thread.start()
    assert entered.wait(5)
    discarding = threading.Thread(target=writer.discard)
    discarding.start()
    time.sleep(0.1)
    assert discarding.is_alive(), "discard did not wait for the write in flight"
    release.set()
    thread.join(5)
    discarding.join(5)
    assert not closed_during_write and not failure
    assert not (tmp_path / "k").exists()


def _aligned(data: bytes) -> memoryview:
    """``data`` in a page-aligned, writable buffer (as the direct blob receiver hands them)."""
    buffer = mmap.mmap(-1, len(data))
    buffer[:] = data
    return memoryview(buffer)


def _opened_direct(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The flags of every open of a key file with O_DIRECT, recorded."""
    seen: list[int] = []
    real_open = os.open

    def recording(path: object, flags: int, *rest: object) -> int:
        if flags & getattr(os, "O_DIRECT", 0):
            seen.append(flags)
        return real_open(path, flags, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs.os, "open", recording)
    return seen


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="O_DIRECT is Linux's")
@pytest.mark.parametrize("head", [0, 1000, 4096])
def test_aligned_buffers_go_past_the_page_cache_and_the_key_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, head: int
) -> None:
    seen = _opened_direct(monkeypatch)
    first, *parts = chunks(6, 4 * MIB)
    writer = KeyWriter("k", tmp_path / "k")
    pieces: list[bytes | memoryview] = []
    if head:
        pieces += [first[:head], first[head : -(head % 4096) or None]]
    else:
        pieces.append(_aligned(first))
    pieces += [_aligned(p) for p in parts] + [b"tail-not-aligned"]
    for piece in pieces:
        writer.write(piece)
    key = writer.finish()
    whole = b"".join(bytes(p) for p in pieces)
    assert key.byte_size == len(whole)
    assert key.sha256 == hashlib.sha256(whole).hexdigest()
    assert (tmp_path / "k").read_bytes() == whole
    if not head % 4096:  # aligned offsets: the file was opened for direct writes once
        assert len(seen) == 1


def test_a_file_system_without_o_direct_or_a_refused_direct_write_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = chunks(4, 4 * MIB, seed=3)
    real_pwrite = os.pwrite
    direct_fds: set[int] = set()
    real_open = os.open

    def opening(path: object, flags: int, *rest: object) -> int:
        fd = real_open(path, flags, *rest)  # type: ignore[arg-type]
        if flags & getattr(os, "O_DIRECT", 0):
            direct_fds.add(fd)
        return fd

    def refusing(fd: int, data: object, offset: int) -> int:
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs.os, "open", opening)
    monkeypatch.setattr(blobs.os, "pwrite", refusing)
    writer = KeyWriter("k", tmp_path / "k")
    for part in parts:
        writer.write(_aligned(part))
    key = writer.finish()
    whole = b"".join(parts)
    assert key.sha256 == hashlib.sha256(whole).hexdigest()
    assert (tmp_path / "k").read_bytes() == whole
    shm = Path("/dev/shm")
    if shm.is_dir():  # tmpfs refuses O_DIRECT at open: the usual writes
        with tempfile.TemporaryDirectory(dir=shm) as folder:
            monkeypatch.undo()
            writer = KeyWriter("k", Path(folder) / "k")
            for part in parts:
                writer.write(_aligned(part))
            assert writer.finish().sha256 == key.sha256
            assert (Path(folder) / "k").read_bytes() == whole
