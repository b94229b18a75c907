"""The worker's end of the socket: serialized vectored writes and a buffered frame reader.

Writes come from the model's thread (state data, data events, results) and must not interleave,
so one lock guards them; big buffers go to ``sendmsg`` as they are, never joined into a frame.
Reads happen on one reader thread only: small fields are parsed out of one reusable receive
buffer, and a large blob is received with ``recv_into`` straight into its own buffer.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable

from runtime.protocol import Buffer

#: Size of the reusable receive buffer that small fields and small blobs are parsed from.
RECV_BUFFER_BYTES = 256 << 10
#: Blobs at least this large skip the receive buffer and land directly in their own buffer.
DIRECT_RECV_BYTES = 64 << 10
#: The most buffers handed to one ``sendmsg`` (Linux's IOV_MAX is 1024).
_MAX_IOV = 1024

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class ConnectionClosed(Exception):
    """The host closed the socket; ``mid_frame`` tells whether a frame was cut short."""

    def __init__(self, mid_frame: bool) -> None:
        super().__init__("connection closed in the middle of a frame" if mid_frame else "closed")
        self.mid_frame = mid_frame


class Connection:
    """One connected stream socket to the host."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self._sock = sock
        self._write_lock = threading.Lock()
        self._buf = bytearray(RECV_BUFFER_BYTES)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    # -- writing (any thread) --------------------------------------------------------------

    def send(self, buffers: Iterable[Buffer]) -> None:
        """Write ``buffers`` back to back as one uninterrupted unit."""
        views = [memoryview(b).cast("B") for b in buffers if len(b)]
        with self._write_lock:
            while views:
                sent = self._sock.sendmsg(views[:_MAX_IOV])
                views = _advance(views, sent)

    # -- reading (the reader thread only) ----------------------------------------------------

    def read_u8(self, at_boundary: bool = False) -> int:
        self._fill(1, mid_frame=not at_boundary)
        value = self._buf[self._start]
        self._start += 1
        return value

    def read_u32(self) -> int:
        self._fill(4)
        (value,) = _U32.unpack_from(self._buf, self._start)
        self._start += 4
        return value

    def read_u64(self) -> int:
        self._fill(8)
        (value,) = _U64.unpack_from(self._buf, self._start)
        self._start += 8
        return value

    def read_blob(self, length: int, kind: type[bytearray] = bytearray) -> bytearray:
        """The next ``length`` bytes in a buffer of their own (writable, so numpy views are),
        of type ``kind`` (``bytearray`` or a subclass)."""
        out = kind(length)
        view = memoryview(out)
        have = min(length, self._end - self._start)
        view[:have] = self._view[self._start : self._start + have]
        self._start += have
        remaining = length - have
        if remaining >= DIRECT_RECV_BYTES:
            while have < length:
                n = self._sock.recv_into(view[have:])
                if n == 0:
                    raise ConnectionClosed(mid_frame=True)
                have += n
        elif remaining:
            self._fill(remaining)
            view[have:] = self._view[self._start : self._start + remaining]
            self._start += remaining
        return out

    def _fill(self, need: int, mid_frame: bool = True) -> None:
        """Make at least ``need`` (<= the buffer size) bytes available in the receive buffer."""
        if self._end - self._start >= need:
            return
        if len(self._buf) - self._start < need:
            pending = self._end - self._start
            self._view[:pending] = self._view[self._start : self._end]
            self._start, self._end = 0, pending
        while self._end - self._start < need:
            n = self._sock.recv_into(self._view[self._end :])
            if n == 0:
                raise ConnectionClosed(mid_frame=mid_frame or self._end > self._start)
            self._end += n


def _advance(views: list[memoryview], sent: int) -> list[memoryview]:
    """Drop the first ``sent`` bytes from a list of byte views."""
    i = 0
    while i < len(views) and sent >= len(views[i]):
        sent -= len(views[i])
        i += 1
    rest = views[i:]
    if sent:
        rest[0] = rest[0][sent:]
    return rest
