"""The host's session against a raw fake worker over a real socketpair: a flood of requestData
from a worker that never reads is not buffered without bound, a write blocked past its deadline
ends the session with a clear reason, and closing is immediate whatever was outstanding."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np

from launcher.params import ParamSource
from launcher.worker.data import WriteStalled
from launcher.worker.session import WorkerSession
from runtime import messages

ELEMENT = 64 << 10
FLOOD = 400_000


def big_param(tmp_path: Path) -> ParamSource:
    """One element of 64 KiB, so that a few answers fill the socket."""
    path = tmp_path / "param"
    path.write_bytes(b"\x07" * ELEMENT)
    fd = os.open(path, os.O_RDONLY)
    return ParamSource("x", fd, np.array([0], np.uint64), np.array([ELEMENT], np.uint64))


class _NoSink:
    def key_writer(self, key: str):
        raise AssertionError(f"unexpected key {key}")


def read_command(sock: socket.socket) -> dict:
    head = sock.recv(9, socket.MSG_WAITALL)
    (length,) = struct.unpack(">Q", head[1:])
    return json.loads(sock.recv(length, socket.MSG_WAITALL))


def flood(sock: socket.socket, dataset: str) -> int:
    """Send requestData until the socket stops taking them; how many went."""
    sock.setblocking(False)
    for i in range(FLOOD):
        try:
            sock.send(messages.RequestData(i, dataset, 0, 1).encode())
        except BlockingIOError:
            return i
    return FLOOD


def test_flood_from_a_worker_that_never_reads_ends_at_the_write_deadline(tmp_path: Path) -> None:
    param = big_param(tmp_path)

    async def main() -> tuple[BaseException | None, int, float, float]:
        host_sock, worker_sock = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=host_sock)
        session = WorkerSession(reader, writer, write_deadline=0.5)
        call = asyncio.create_task(session.create_model_state({"x": param}, [], _NoSink()))
        command = await asyncio.to_thread(read_command, worker_sock)
        dataset = command["params"]["params"][0]["dataset"]
        start = time.monotonic()
        sent = 0
        error: BaseException | None = None
        async with asyncio.timeout(20):
            while not call.done():
                sent += await asyncio.to_thread(flood, worker_sock, dataset)
                await asyncio.sleep(0.05)
        try:
            call.result()
        except BaseException as e:
            error = e
        ended = time.monotonic() - start
        closing = time.monotonic()
        session.close()
        closed = time.monotonic() - closing
        worker_sock.close()
        return error, sent, ended, closed

    try:
        error, sent, ended, closed = asyncio.run(main())
    finally:
        param.close()
    assert isinstance(error, WriteStalled), repr(error)
    assert "the worker stopped reading" in str(error)
    print(f"flood: {sent} requestData taken before the socket blocked; ended after {ended:.2f} s")
    assert sent < FLOOD, "the host kept reading a worker that never reads"
    assert ended < 10 and closed < 1
