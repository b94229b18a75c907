"""Reading worker -> host frames (WORKER-PROTOCOL.md) with limits, into typed messages.

Every byte from a worker is untrusted: lengths are checked against limits before
anything is allocated, and blobs are handed on in bounded chunks as they arrive. A data
event's JSON is at most a few KiB; a message's JSON over ``OFF_LOOP_JSON`` bytes is parsed in a
thread, after a check that it is not made of millions of tiny values (one long string is
fine), and the session is charged for it: it waits as long as the parse took before reading on.

A blob of at least ``DIRECT_MIN`` bytes (a big state key) is not read through the event loop:
the transport is paused, what the ``StreamReader`` already holds is taken, and the rest is
received from the socket by a thread into a few reused buffers while another thread hands them
to the key's writer (``direct_blob.py``). Exactly the blob's bytes are taken from the socket; the
next frame is read by the ``StreamReader`` again, which resumes the transport when it waits.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from launcher.worker.direct_blob import direct_socket, read_direct
from launcher.worker.errors import ConnectionEnded, ProtocolViolation
from launcher.worker.writebehind import WriteBehind
from runtime import messages, protocol

CHUNK = 1 << 20
#: A message's JSON at least this long is parsed off the event loop.
OFF_LOOP_JSON = 64 << 10
#: The most separators (``,`` and ``:``) outside strings that a JSON document of over
#: ``OFF_LOOP_JSON`` may hold: what a worker legitimately sends at length is one long string
#: (exception details) or a hundred key names; millions of tiny values would hold the
#: interpreter for seconds while they are parsed.
MAX_LARGE_JSON_SEPARATORS = 10_000
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


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
        in a thread (``direct_blob.py``) when the stream allows it, any other through the event
        loop with a ``WriteBehind``; either refuses what the other does, with the same errors.
        """
        sock = direct_socket(self._reader, length, transport)
        if sock is not None:
            assert isinstance(transport, asyncio.ReadTransport)
            await read_direct(self._reader, length, write, transport, sock)
            return
        behind = WriteBehind(write)
        try:
            await self.read_blob(length, behind)
        finally:
            await behind.flush()

    async def skip_blob(self, length: int) -> None:
        await self.read_blob(length, lambda _chunk: None)

    async def end_message(self) -> None:
        await self._exactly(1)
