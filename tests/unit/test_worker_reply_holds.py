"""A param's file stays open while answers to the worker still read it, even once the job is
over and its request closed: a spool file goes back to the pool (where another upload may
write over it) only after the last queued answer was sent or dropped."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from pathlib import Path

import numpy as np

from launcher.params import ParamSource
from launcher.worker.session import WorkerSession
from runtime import messages

MIB = 1 << 20
ELEMENTS = 8  # of 1 MiB each: more than the session's send buffer holds


class _NoSink:
    def key_writer(self, key: str):
        raise AssertionError(f"unexpected key {key}")


def _source(tmp_path: Path, released: list[int]) -> tuple[ParamSource, bytes]:
    blob = b"".join(bytes([i + 1]) * MIB for i in range(ELEMENTS))
    (tmp_path / "param").write_bytes(blob)
    fd = os.open(tmp_path / "param", os.O_RDONLY)

    def release(fd: int) -> None:
        released.append(fd)
        os.close(fd)

    offsets = np.arange(ELEMENTS, dtype=np.uint64) * MIB
    lengths = np.full(ELEMENTS, MIB, np.uint64)
    return ParamSource("x", fd, offsets, lengths, release=release), blob


def _read_command(sock: socket.socket) -> dict:
    head = sock.recv(9, socket.MSG_WAITALL)
    (length,) = struct.unpack(">Q", head[1:])
    return json.loads(sock.recv(length, socket.MSG_WAITALL))


def _receive(sock: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        piece = sock.recv(min(size - len(got), 1 << 20))
        if not piece:
            break
        got += piece
    return bytes(got)


def _ask_all_then_return(sock: socket.socket, command: dict) -> None:
    dataset = command["params"]["params"][0]["dataset"]
    for i in range(ELEMENTS):
        sock.sendall(messages.RequestData(i, dataset, i, 1).encode())
    sock.sendall(b"".join(bytes(b) for b in messages.CallResult(command["params"]["id"]).encode()))


def test_close_while_held_keeps_the_file_until_the_last_reader_lets_go(tmp_path: Path) -> None:
    released: list[int] = []
    source, _ = _source(tmp_path, released)
    source.hold()
    source.hold()
    source.close()
    source.close()
    assert released == []
    source.let_go()
    assert released == []
    os.fstat(source.fd)  # still open
    source.let_go()
    assert released == [source.fd]


async def _job_over_with_answers_queued(
    source: ParamSource,
) -> tuple[WorkerSession, socket.socket]:
    """A call whose worker asked for every element, read none, and returned; then the job's
    end closes the source (``request.close()``) while the answers are still queued."""
    host_sock, worker_sock = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=host_sock)
    session = WorkerSession(reader, writer, write_deadline=30, max_outstanding=2 * ELEMENTS)
    call = asyncio.create_task(session.create_model_state({"x": source}, [], _NoSink()))
    command = await asyncio.to_thread(_read_command, worker_sock)
    await asyncio.to_thread(_ask_all_then_return, worker_sock, command)
    result = await asyncio.wait_for(call, 10)
    assert result.error_details is None
    source.close()
    return session, worker_sock


async def _until_released(released: list[int]) -> None:
    for _ in range(100):
        if released:
            return
        await asyncio.sleep(0.01)


FRAME = 1 + 8 + 8 + MIB  # kind, request id and count, the blob's length, the blob


def test_answers_queued_when_the_job_ends_are_sent_from_the_same_file(tmp_path: Path) -> None:
    released: list[int] = []
    source, blob = _source(tmp_path, released)

    async def main() -> bytes:
        session, worker_sock = await _job_over_with_answers_queued(source)
        assert released == [], "the file went while answers still had to read it"
        got = await asyncio.to_thread(_receive, worker_sock, ELEMENTS * FRAME)
        await _until_released(released)
        session.close()
        worker_sock.close()
        return got

    got = asyncio.run(main())
    for i in range(ELEMENTS):
        assert got[i * FRAME + 17 : (i + 1) * FRAME] == blob[i * MIB : (i + 1) * MIB]
    assert released == [source.fd]


def test_answers_dropped_at_the_sessions_end_let_the_file_go(tmp_path: Path) -> None:
    released: list[int] = []
    source, _ = _source(tmp_path, released)

    async def main() -> None:
        session, worker_sock = await _job_over_with_answers_queued(source)
        session.close()  # the worker never read its answers
        worker_sock.close()
        await _until_released(released)

    asyncio.run(main())
    assert released == [source.fd]
