"""Receiving a big blob straight from the worker's socket, off the event loop.

A blob of at least ``DIRECT_MIN`` bytes is taken from the stream's transport (paused; what its
``StreamReader`` already holds taken first) by one thread into a few reused buffers while
another hands each filled buffer to the writer: no per-chunk loop turn and no copy through
the reader. ``FrameReader.stream_blob`` chooses this path when the stream allows it and
refuses what the loop path refuses, with the same errors.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import queue
import socket
import threading
from collections.abc import Callable

from launcher.worker.errors import ConnectionEnded

#: A blob at least this long is received straight from the socket in threads.
DIRECT_MIN = 8 << 20
#: The buffers a direct blob is received into: their number and size bound its memory. They
#: are page-aligned (anonymous maps) and, after the blob's first bytes, each is filled at a
#: multiple of DIRECT_ALIGN of the blob: the key's writer can hand them to the device as they
#: are (``KeyWriter``'s O_DIRECT writes).
DIRECT_BUFFERS = 3
DIRECT_BUFFER_BYTES = 4 << 20
DIRECT_ALIGN = 4096
#: Seconds a direct receive waits for bytes before it looks whether it was stopped.
DIRECT_POLL_SECONDS = 0.1


def direct_socket(
    reader: asyncio.StreamReader, length: int, transport: asyncio.BaseTransport | None
) -> socket.socket | None:
    """The socket to receive a blob of ``length`` bytes from directly, or None (a small
    blob, one the stream already holds, a stream that ended, or not a socket stream)."""
    buffered = getattr(reader, "_buffer", None)
    if length < DIRECT_MIN or not isinstance(transport, asyncio.ReadTransport):
        return None
    same_transport = getattr(reader, "_transport", None) is transport
    if (
        not same_transport
        or not isinstance(buffered, bytearray)
        or len(buffered) >= length
        or not isinstance(getattr(reader, "_paused", None), bool)
        or getattr(reader, "_eof", True)
        or reader.exception() is not None
        or transport.is_closing()
    ):
        return None
    raw = transport.get_extra_info("socket")
    fd = raw.fileno() if raw is not None else -1
    if fd < 0:
        return None
    # A descriptor of its own: closing the transport meanwhile cannot hand the thread a
    # number reused by another file.
    sock = socket.socket(fileno=os.dup(fd))
    sock.settimeout(DIRECT_POLL_SECONDS)  # the file stays non-blocking, as the loop wants
    return sock


async def read_direct(
    reader: asyncio.StreamReader,
    length: int,
    write: Callable[[memoryview | bytes], object],
    transport: asyncio.ReadTransport,
    sock: socket.socket,
) -> None:
    buffered: bytearray = reader._buffer  # type: ignore[attr-defined]
    # No more data_received until the StreamReader resumes the transport itself, which it
    # does when it next waits for data (it takes the transport as paused by its own flow
    # control).
    loop = asyncio.get_running_loop()
    finished = loop.create_future()

    def done() -> None:  # in the writer thread
        try:
            loop.call_soon_threadsafe(_resolve, finished)
        except RuntimeError:
            pass  # the loop is closed: nobody waits

    try:
        transport.pause_reading()
        reader._paused = True  # type: ignore[attr-defined]
        head = bytes(memoryview(buffered)[: len(buffered)])
        del buffered[:]
        blob = _DirectBlob(sock, length, head, write, done)
    except BaseException:
        sock.close()
        raise
    blob.start()  # closes the socket if it cannot start
    try:
        await asyncio.shield(finished)
    except asyncio.CancelledError:
        blob.stop()
        await finished  # the threads stop within DIRECT_POLL_SECONDS and a write
        raise
    blob.raise_error()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_pool_lock = threading.Lock()
_pool: list[mmap.mmap] = []


def _take_buffers() -> list[mmap.mmap]:
    """``DIRECT_BUFFERS`` receive buffers: kept ones first (their pages are already mapped)."""
    with _pool_lock:
        taken = _pool[:DIRECT_BUFFERS]
        del _pool[:DIRECT_BUFFERS]
    fresh = [mmap.mmap(-1, DIRECT_BUFFER_BYTES) for _ in range(DIRECT_BUFFERS - len(taken))]
    return taken + fresh


def _give_buffers(buffers: list[mmap.mmap]) -> None:
    """Keep at most one blob's buffers for the next one; the rest are freed."""
    with _pool_lock:
        _pool.extend(buffers[: DIRECT_BUFFERS - len(_pool)])


class _DirectBlob:
    """One blob's ``length`` bytes: ``head`` (what the stream held), then the rest received
    from ``sock`` by one thread into reused buffers while another passes each filled buffer
    to ``write``. ``done`` is called (in a thread) once both threads are finished."""

    def __init__(
        self,
        sock: socket.socket,
        length: int,
        head: bytes,
        write: Callable[[memoryview | bytes], object],
        done: Callable[[], None],
    ) -> None:
        self._sock = sock
        self._remaining = length - len(head)
        self._head = head
        self._write = write
        self._done = done
        self._stopped = threading.Event()
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._filled: queue.SimpleQueue[tuple[mmap.mmap, int] | None] = queue.SimpleQueue()
        self._buffers: list[mmap.mmap] = []
        self._read_error: BaseException | None = None
        self._write_error: BaseException | None = None

    def start(self) -> None:
        self._buffers = _take_buffers()
        for buffer in self._buffers:
            self._free.put(buffer)
        writer = threading.Thread(target=self._pass_on, name="blob-write", daemon=True)
        receiver = threading.Thread(target=self._receive, name="blob-receive", daemon=True)
        try:
            writer.start()
        except BaseException:
            self._sock.close()
            _give_buffers(self._buffers)
            raise
        try:
            receiver.start()
        except BaseException:
            self._stopped.set()
            self._sock.close()
            self._filled.put(None)  # the writer ends (and calls ``done``, harmless)
            raise

    def stop(self) -> None:
        """Stop receiving and writing (the blob is abandoned)."""
        self._stopped.set()

    def raise_error(self) -> None:
        """The blob's error: a write's first (as through a WriteBehind), then the socket's."""
        if self._write_error is not None:
            raise self._write_error
        if self._read_error is not None:
            raise self._read_error

    def _receive(self) -> None:
        sock = self._sock
        # The first buffer takes only what brings the blob to a multiple of DIRECT_ALIGN
        # after the head; every later one then starts at such a multiple.
        filler = -len(self._head) % DIRECT_ALIGN
        try:
            while self._remaining and not self._stopped.is_set():
                buffer = self._free.get()
                size = filler or len(buffer)
                filler = 0
                view = memoryview(buffer)[: min(size, self._remaining)]
                got = 0
                while got < len(view):
                    try:
                        n = sock.recv_into(view[got:])
                    except TimeoutError:
                        if self._stopped.is_set():
                            return
                        continue
                    if not n:
                        if got:  # what came is written, as on the event loop
                            self._filled.put((buffer, got))
                        raise ConnectionEnded(
                            "the worker closed its socket inside a blob "
                            f"({self._remaining - got} left)"
                        )
                    got += n
                self._remaining -= got
                self._filled.put((buffer, got))
        except BaseException as e:
            self._read_error = e
        finally:
            sock.close()
            self._filled.put(None)

    def _pass_on(self) -> None:
        try:
            if self._head:
                self._call_write(self._head)
            while True:
                filled = self._filled.get()
                if filled is None:
                    break
                buffer, size = filled
                if not self._stopped.is_set():
                    self._call_write(memoryview(buffer)[:size])
                self._free.put(buffer)
        finally:
            _give_buffers(self._buffers)
            self._done()

    def _call_write(self, data: memoryview | bytes) -> None:
        try:
            self._write(data)
        except BaseException as e:
            self._write_error = e
            self._stopped.set()
