"""Reading worker -> host frames (WORKER-PROTOCOL.md) with limits, into typed messages.

Every byte from a worker is untrusted: lengths are checked against limits before
anything is allocated, and blobs are handed on in bounded chunks as they arrive. A data
event's JSON is at most a few KiB; a message's JSON over ``OFF_LOOP_JSON`` bytes is parsed in a
thread, after a check that it is not made of millions of tiny values (one long string is
fine), and the session is charged for it: it waits as long as the parse took before reading on.

A blob of at least ``DIRECT_MIN`` bytes (a big state key) is not read through the event loop:
the transport is paused, what the ``StreamReader`` already holds is taken, and the rest is
received from the socket by a thread into a few reused buffers while another thread hands them
to the key's writer (``_DirectBlob``). Exactly the blob's bytes are taken from the socket; the
next frame is read by the ``StreamReader`` again, which resumes the transport when it waits.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from launcher.worker.writebehind import WriteBehind
from runtime import messages, protocol

CHUNK = 1 << 20
#: A blob at least this long is received straight from the socket in threads.
DIRECT_MIN = 8 << 20
#: The buffers a direct blob is received into: their number and size bound its memory.
DIRECT_BUFFERS = 3
DIRECT_BUFFER_BYTES = 4 << 20
#: Seconds a direct receive waits for bytes before it looks whether it was stopped.
DIRECT_POLL_SECONDS = 0.1
#: A message's JSON at least this long is parsed off the event loop.
OFF_LOOP_JSON = 64 << 10
#: The most separators (``,`` and ``:``) outside strings that a JSON document of over
#: ``OFF_LOOP_JSON`` may hold: what a worker legitimately sends at length is one long string
#: (exception details) or a hundred key names; millions of tiny values would hold the
#: interpreter for seconds while they are parsed.
MAX_LARGE_JSON_SEPARATORS = 10_000
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class ProtocolViolation(Exception):
    """The worker sent something the protocol does not allow."""


class ConnectionEnded(Exception):
    """The worker closed its socket (cleanly, at a frame boundary or not)."""


@dataclass(frozen=True)
class DataEvent:
    event: messages.DataEvent


@dataclass(frozen=True)
class Message:
    """A message's head: its blobs are read next, then ``end_message``."""

    body: dict[str, Any]
    blob_count: int

    def parse(self) -> messages.WorkerMessage:
        """The typed message (checked only now, so a reader can skip what it does not use)."""
        try:
            return messages.parse_message(self.body)
        except messages.MessageError as e:
            raise ProtocolViolation(str(e)) from None


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ProtocolViolation(f"malformed JSON in a frame: {str(e)[:200]}") from None


def separators_outside_strings(raw: bytes, limit: int) -> int:
    """How many ``,`` and ``:`` of ``raw`` lie outside JSON strings (counting stops past
    ``limit``). Python code, so a thread running it lets the event loop have the interpreter;
    every byte is looked at once at most."""
    count, pos, end = 0, 0, len(raw)
    while count <= limit:
        quote = raw.find(b'"', pos)
        stop = end if quote < 0 else quote
        count += raw.count(b",", pos, stop) + raw.count(b":", pos, stop)
        if quote < 0:
            break
        pos = quote + 1
        while True:  # to the string's closing quote: one not escaped by a backslash
            quote = raw.find(b'"', pos)
            if quote < 0:
                return count  # an unterminated string: the parser says so
            first = quote
            while first > pos and raw[first - 1] == 0x5C:
                first -= 1
            pos = quote + 1
            if (quote - first) % 2 == 0:
                break
    return count


def _loads_large(raw: bytes) -> Any:
    separators = separators_outside_strings(raw, MAX_LARGE_JSON_SEPARATORS)
    if separators > MAX_LARGE_JSON_SEPARATORS:
        raise ProtocolViolation(
            f"a JSON document of {len(raw)} bytes with over {MAX_LARGE_JSON_SEPARATORS} values; "
            f"one over {OFF_LOOP_JSON} bytes may hold at most that many"
        )
    return _loads(raw)


async def _loads_off_loop(raw: bytes) -> Any:
    start = time.monotonic()
    try:
        return await asyncio.to_thread(_loads_large, raw)
    finally:
        await asyncio.sleep(time.monotonic() - start)  # the session pays for the time it took


class FrameReader:
    """Reads frames from one worker's stream, never trusting a length it has not checked."""

    def __init__(self, reader: asyncio.StreamReader, max_blobs: int = protocol.MAX_STATE_KEYS):
        self._reader = reader
        self._max_blobs = max_blobs

    async def _exactly(self, n: int) -> bytes:
        try:
            return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError as e:
            raise ConnectionEnded(
                f"the worker closed its socket ({len(e.partial)}/{n} bytes)"
            ) from None

    async def _json(self, length: int, limit: int) -> Any:
        if length > limit:
            raise ProtocolViolation(
                f"a JSON document of {length} bytes is over the limit of {limit}"
            )
        raw = await self._exactly(length)
        return await _loads_off_loop(raw) if length >= OFF_LOOP_JSON else _loads(raw)

    async def next_frame(self) -> DataEvent | Message:
        """The next frame's head; for a Message, its blobs must be read next, then ``end``."""
        try:
            kind = await self._reader.readexactly(1)
        except asyncio.IncompleteReadError:
            raise ConnectionEnded("the worker closed its socket") from None
        try:
            if kind[0] == protocol.DATA_EVENT:
                (length,) = _U64.unpack(await self._exactly(8))
                doc = await self._json(length, messages.MAX_DATA_EVENT_JSON)
                return DataEvent(messages.parse_data_event(doc))
            if kind[0] == protocol.MESSAGE:
                head = await self._exactly(12)
                (count,) = _U32.unpack_from(head, 0)
                (length,) = _U64.unpack_from(head, 4)
                if count > self._max_blobs:
                    raise ProtocolViolation(
                        f"a message with {count} blobs (limit {self._max_blobs})"
                    )
                doc = await self._json(length, protocol.MAX_JSON_BYTES)
                if not isinstance(doc, dict):
                    raise ProtocolViolation("a frame's JSON is not an object")
                return Message(doc, count)
        except messages.MessageError as e:
            raise ProtocolViolation(str(e)) from None
        raise ProtocolViolation(f"unknown frame kind 0x{kind[0]:02x}")

    async def blob_length(self, limit: int) -> int:
        (length,) = _U64.unpack(await self._exactly(8))
        if length > limit:
            raise ProtocolViolation(f"a blob of {length} bytes is over the limit of {limit}")
        return length

    async def read_blob(self, length: int, sink: Callable[[bytes], Awaitable[None] | None]) -> None:
        """Pass ``length`` bytes to ``sink`` in chunks of at most CHUNK bytes."""
        remaining = length
        while remaining:
            chunk = await self._reader.read(min(remaining, CHUNK))
            if not chunk:
                raise ConnectionEnded(
                    f"the worker closed its socket inside a blob ({remaining} left)"
                )
            remaining -= len(chunk)
            result = sink(chunk)
            if result is not None:
                await result

    async def stream_blob(
        self,
        length: int,
        write: Callable[[memoryview | bytes], object],
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        """Pass ``length`` bytes to ``write``, which runs in threads, one call at a time and in
        order. A blob of at least ``DIRECT_MIN`` bytes is received from ``transport``'s socket
        in a thread (``_DirectBlob``) when the stream allows it, any other through the event
        loop with a ``WriteBehind``; either refuses what the other does, with the same errors.
        """
        sock = self._direct_socket(length, transport)
        if sock is not None:
            assert isinstance(transport, asyncio.ReadTransport)
            await self._read_direct(length, write, transport, sock)
            return
        behind = WriteBehind(write)
        try:
            await self.read_blob(length, behind)
        finally:
            await behind.flush()

    def _direct_socket(
        self, length: int, transport: asyncio.BaseTransport | None
    ) -> socket.socket | None:
        """The socket to receive a blob of ``length`` bytes from directly, or None (a small
        blob, one the stream already holds, a stream that ended, or not a socket stream)."""
        reader = self._reader
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

    async def _read_direct(
        self,
        length: int,
        write: Callable[[memoryview | bytes], object],
        transport: asyncio.ReadTransport,
        sock: socket.socket,
    ) -> None:
        reader = self._reader
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

    async def skip_blob(self, length: int) -> None:
        await self.read_blob(length, lambda _chunk: None)

    async def end_message(self) -> None:
        await self._exactly(1)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_pool_lock = threading.Lock()
_pool: list[bytearray] = []


def _take_buffers() -> list[bytearray]:
    """``DIRECT_BUFFERS`` receive buffers: kept ones first (their pages are already mapped)."""
    with _pool_lock:
        taken = _pool[:DIRECT_BUFFERS]
        del _pool[:DIRECT_BUFFERS]
    return taken + [bytearray(DIRECT_BUFFER_BYTES) for _ in range(DIRECT_BUFFERS - len(taken))]


def _give_buffers(buffers: list[bytearray]) -> None:
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
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._filled: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._buffers: list[bytearray] = []
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
        try:
            while self._remaining and not self._stopped.is_set():
                buffer = self._free.get()
                view = memoryview(buffer)[: min(len(buffer), self._remaining)]
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
