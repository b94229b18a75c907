"""The worker's stdout/stderr as a bounded log: the first and the last 64 KiB are kept.

A worker flooding its output must neither grow the launcher's memory nor block: the pump
reads the pipe as fast as it is written and drops the middle.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

HEAD_BYTES = 64 * 1024
TAIL_BYTES = 64 * 1024
_CHUNK = 256 * 1024


class BoundedLog:
    """Keeps the first ``head_bytes`` and the last ``tail_bytes`` of a byte stream."""

    def __init__(self, head_bytes: int = HEAD_BYTES, tail_bytes: int = TAIL_BYTES) -> None:
        self._head_limit = head_bytes
        self._tail_limit = tail_bytes
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        if len(data) >= self._tail_limit:
            self._tail = bytearray(data[-self._tail_limit :])
            return
        self._tail += data
        excess = len(self._tail) - self._tail_limit
        if excess > 0:
            del self._tail[:excess]

    def text(self) -> str:
        omitted = self.total - len(self._head) - len(self._tail)
        head = self._head.decode("utf-8", "replace")
        tail = self._tail.decode("utf-8", "replace")
        if omitted <= 0:
            return head + tail
        return f"{head}\n[... {omitted} bytes omitted ...]\n{tail}"


def read_available(fd: int, feed: Callable[[bytes], None], limit: int = 4 * _CHUNK) -> None:
    """Hand ``feed`` what ``fd`` (non-blocking) holds now, up to ``limit`` bytes."""
    while limit > 0:
        try:
            data = os.read(fd, min(_CHUNK, limit))
        except (BlockingIOError, OSError):
            return
        if not data:
            return
        limit -= len(data)
        feed(data)


async def pump(fd: int, feed: Callable[[bytes], None]) -> None:
    """Read ``fd`` until EOF, handing each chunk to ``feed``; closes ``fd``."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    try:
        while True:
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                readable.clear()
                await readable.wait()
                continue
            if not data:
                return
            feed(data)
    finally:
        loop.remove_reader(fd)
        os.close(fd)
