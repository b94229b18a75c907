"""Writing an upload's chunks: rolling writeback of a direct upload, batches in one pwritev.

``WriteBehind`` starts each full window's writeback and waits for and drops the window before
it, never a byte past what was written; a file system that does not do it turns it off, but a
write error it meets fails the upload (the commit's fsync would not see it again). Batches of
chunks across keys, short writes and a small window keep every entry exact.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher.errors import RequestError
from launcher.store.datasets import DatasetStore, KeyDef, writeback
from launcher.store.datasets import append as append_module
from launcher.store.db import Database
from runtime.tensor import serialize


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    seen: list[tuple[str, int, int]] = []
    monkeypatch.setattr(writeback, "_sync_file_range", lambda *a: 0)
    monkeypatch.setattr(
        writeback,
        "_sync_range",
        lambda fd, start, size, flags: seen.append(("wait" if flags & 4 else "start", start, size)),
    )
    monkeypatch.setattr(
        writeback.os,
        "posix_fadvise",
        lambda fd, start, size, advice: seen.append(("drop", start, size)),
    )
    return seen


def test_each_window_is_started_then_waited_for_and_dropped(
    calls: list[tuple[str, int, int]],
) -> None:
    behind = writeback.WriteBehind(fd=-1, start=100, window=10)
    behind.written(105)  # less than a window: nothing yet
    assert calls == []
    behind.written(112)
    assert calls == [("start", 100, 12)]
    behind.written(130)
    assert calls[1:] == [("start", 112, 18), ("wait", 100, 12), ("drop", 100, 12)]
    behind.written(135)
    assert len(calls) == 4


def test_an_unsupported_file_turns_it_off_and_a_write_error_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(code: int) -> None:
        def sync(fd: int, start: int, size: int, flags: int) -> None:
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(writeback, "_sync_range", sync)

    refuse(errno.EINVAL)
    behind = writeback.WriteBehind(fd=-1, start=0, window=1)
    behind.written(5)
    assert not behind.enabled
    behind.written(10)  # stays off, no error
    refuse(errno.EIO)
    behind = writeback.WriteBehind(fd=-1, start=0, window=1)
    with pytest.raises(OSError) as raised:
        behind.written(5)
    assert raised.value.errno == errno.EIO


def test_writeback_of_a_real_file_keeps_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        behind = writeback.WriteBehind(fd, 0, window=4096)
        data = os.urandom(64 << 10)
        for at in range(0, len(data), 3000):
            os.pwrite(fd, data[at : at + 3000], at)
            behind.written(min(at + 3000, len(data)))
        assert path.read_bytes() == data
    finally:
        os.close(fd)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DatasetStore]:
    db = Database(tmp_path / "launcher.db")
    yield DatasetStore(tmp_path, db)
    db.close()


def entries(store: DatasetStore, dataset_id: str, key: str) -> list[bytes]:
    source = store.open_param(dataset_id, key, "p")
    try:
        return [source.read(i) for i in range(source.amount)]
    finally:
        source.close()


def _cut(data: bytes, sizes: list[int]) -> list[memoryview]:
    view, out, at, i = memoryview(data), [], 0, 0
    while at < len(data):
        out.append(view[at : at + sizes[i % len(sizes)]])
        at += sizes[i % len(sizes)]
        i += 1
    return out


@pytest.mark.parametrize("direct", [True, False])
def test_batches_across_keys_with_short_writes_and_a_small_window_keep_every_entry(
    store: DatasetStore, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    monkeypatch.setattr(writeback, "WINDOW", 1000)
    real = os.pwritev

    def short(fd: int, buffers: list[memoryview], at: int) -> int:
        return real(fd, [bytes(buffers[0][:333])], at)  # at most 333 bytes a call

    monkeypatch.setattr(append_module.os, "pwritev", short)
    dataset_id = store.create("d", "", [KeyDef("a"), KeyDef("b")]).id
    if not direct:  # a direct upload in progress: this one is staged
        holder = store.begin_add(dataset_id, [("a", 0), ("b", 0)])
    a = [serialize(np.arange(i * 50, dtype=np.float32)) for i in range(1, 8)]
    b = [serialize(np.full(i, i, dtype=np.int16)) for i in range(7)]
    data = b"".join(a) + b"".join(b)
    pending = store.begin_add(dataset_id, [("a", len(b"".join(a))), ("b", len(b"".join(b)))])
    pieces = _cut(data, [1, 700, 13, 2048, 5])
    for first in range(0, len(pieces), 4):
        pending.write_many(pieces[first : first + 4])
    pending.commit()
    if not direct:
        holder.abort()
    assert entries(store, dataset_id, "a") == a
    assert entries(store, dataset_id, "b") == b


@pytest.mark.parametrize("extra", [b"\xee\xee\xee\xee", b"\x00"])
def test_a_refused_chunk_in_a_batch_refuses_the_upload_and_changes_nothing(
    store: DatasetStore, extra: bytes
) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    good = serialize(np.arange(10, dtype=np.float32))
    # Bytes that are not a tensor, or (announced size exactly the good tensors) one too many.
    size = 2 * len(good) + (len(extra) if extra != b"\x00" else 0)
    pending = store.begin_add(dataset_id, [("x", size)])
    with pytest.raises(RequestError) as raised:
        pending.write_many([good, good, extra])
    name = "keys[0].data[2]" if extra != b"\x00" else "chunk"
    assert raised.value.parameter_name == name
    with pytest.raises(RequestError) as again:  # the batch was not written: no commit
        pending.commit()
    assert again.value is raised.value
    pending.abort()
    assert store.get(dataset_id).entries == 0
    assert (store.dir / dataset_id / "key0.0.data").stat().st_size == 0
