"""KeyWriter's file path: big writes written beside their hashing, pages handed to the disk in
windows while written and dropped once fsync'd (advice only: a refusal changes nothing), a
failed write discarding the key, and ``discard`` from another thread waiting for a write in
flight instead of closing the file under it."""

from __future__ import annotations

import errno
import hashlib
import os
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
    real_write = os.write

    def full(fd: int, data: object) -> int:
        if threading.current_thread().name.startswith("key-write"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs.os, "write", full)
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
    real_write = os.write
    closed_during_write: list[bool] = []

    def slow(fd: int, data: object) -> int:
        if not threading.current_thread().name.startswith("key-write"):
            return real_write(fd, data)  # type: ignore[arg-type]
        entered.set()
        release.wait(5)
        try:
            os.fstat(fd)
        except OSError:
            closed_during_write.append(True)
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs.os, "write", slow)
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
