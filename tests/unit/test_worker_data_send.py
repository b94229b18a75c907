"""Answering requestData over a real socketpair: the worker receives the same provide-data
frame whether an element goes by sendfile or is read and written (any order, any offset,
sizes on both sides of the threshold), a worker that stops reading a large element ends the
answer at the write deadline, and a file shorter than its element is an error either way."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from launcher.params import ParamSource
from launcher.worker import data
from launcher.worker.data import Reply, WriteStalled, send_elements

MiB = 1 << 20
SIZES = [0, 5, data.SENDFILE_MIN - 1, data.SENDFILE_MIN, 3 * MiB + 5, 17, 2 * MiB]


def make_source(tmp_path: Path, sizes: list[int], gap: int = 3) -> tuple[ParamSource, bytes]:
    """Elements of ``sizes`` bytes, ``gap`` bytes apart in one file."""
    rng = np.random.default_rng(5)
    blob = rng.integers(0, 256, sum(sizes) + gap * len(sizes), dtype=np.uint8).tobytes()
    offsets = np.array([sum(sizes[:i]) + gap * (i + 1) for i in range(len(sizes))], np.uint64)
    path = tmp_path / "param"
    path.write_bytes(blob)
    fd = os.open(path, os.O_RDONLY)
    return ParamSource("x", fd, offsets, np.array(sizes, np.uint64)), blob


def expected_frame(reply: Reply, blob: bytes) -> bytes:
    out = [b"\x01", struct.pack(">II", reply.request_id, reply.count)]
    for i in range(reply.start, reply.start + reply.count):
        j = i if reply.order is None else int(reply.order[i])
        offset, length = int(reply.source.offsets[j]), int(reply.source.lengths[j])
        out += [struct.pack(">Q", length), blob[offset : offset + length]]
    return b"".join(out)


def receive(sock: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        piece = sock.recv(min(size - len(got), 1 << 16))
        if not piece:
            break
        got += piece
    return bytes(got)


async def answer(reply: Reply, size: int, deadline: float = 5.0) -> bytes:
    host, worker = socket.socketpair()
    _, writer = await asyncio.open_connection(sock=host)
    received = asyncio.create_task(asyncio.to_thread(receive, worker, size))
    try:
        await send_elements(writer, reply, deadline)
        return await received
    finally:
        writer.close()  # the receiver sees the end, if it still waits
        await asyncio.wait([received])
        worker.close()


@pytest.mark.parametrize("path", ["sendfile", "read", "unavailable"])
def test_the_worker_receives_the_same_frame_by_either_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    sent: list[int] = []  # bytes of each sendfile call
    original = os.sendfile

    def counted(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        if path == "unavailable":
            raise OSError(errno.EINVAL, "not this file")
        n = original(out_fd, in_fd, offset, count)
        sent.append(n)
        return n

    monkeypatch.setattr(os, "sendfile", counted)
    if path == "read":
        monkeypatch.setattr(data, "SENDFILE_MIN", 1 << 62)
    source, blob = make_source(tmp_path, SIZES)
    try:
        order = np.array([4, 0, 6, 3, 1, 5, 2])
        for reply in (
            Reply(7, source, None, 0, len(SIZES)),
            Reply(8, source, order, 1, 5),
        ):
            want = expected_frame(reply, blob)
            assert asyncio.run(answer(reply, len(want))) == want
    finally:
        source.close()
    # the large elements went by sendfile: 256 KiB, 3 MiB + 5 and 2 MiB in the first answer,
    # 2 MiB and 256 KiB in the second
    large = (data.SENDFILE_MIN + 3 * MiB + 5 + 2 * MiB) + (2 * MiB + data.SENDFILE_MIN)
    assert sum(sent) == {"sendfile": large, "read": 0, "unavailable": 0}[path]


def test_a_worker_that_stops_reading_a_large_element_ends_at_the_write_deadline(
    tmp_path: Path,
) -> None:
    source, _ = make_source(tmp_path, [64 * MiB])

    async def main() -> float:
        host, worker = socket.socketpair()
        try:
            _, writer = await asyncio.open_connection(sock=host)
            start = time.monotonic()
            with pytest.raises(WriteStalled, match="the worker stopped reading"):
                await send_elements(writer, Reply(1, source, None, 0, 1), 0.3)
            took = time.monotonic() - start
            writer.close()
            return took
        finally:
            worker.close()

    try:
        assert asyncio.run(main()) < 5
    finally:
        source.close()


@pytest.mark.parametrize("threshold", [data.SENDFILE_MIN, 1 << 62])
def test_a_file_shorter_than_its_element_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    monkeypatch.setattr(data, "SENDFILE_MIN", threshold)
    source, _ = make_source(tmp_path, [2 * MiB])
    os.truncate(tmp_path / "param", MiB)
    try:
        with pytest.raises(OSError, match="its file ended early"):
            asyncio.run(answer(Reply(1, source, None, 0, 1), 3 * MiB))
    finally:
        source.close()


def test_a_large_element_widens_the_send_buffer_of_the_launchers_end(tmp_path: Path) -> None:
    source, blob = make_source(tmp_path, [data.SENDFILE_MIN])

    async def main() -> tuple[int, int, bool]:
        host, worker = socket.socketpair()
        _, writer = await asyncio.open_connection(sock=host)
        before = host.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        reply = Reply(1, source, None, 0, 1)
        want = expected_frame(reply, blob)
        received = asyncio.create_task(asyncio.to_thread(receive, worker, len(want)))
        try:
            await send_elements(writer, reply, 5.0)
            after = host.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            return before, after, (await received) == want
        finally:
            writer.close()
            await asyncio.wait([received])
            worker.close()

    try:
        before, after, same = asyncio.run(main())
    finally:
        source.close()
    assert same
    assert before < data.SEND_BUFFER <= after
