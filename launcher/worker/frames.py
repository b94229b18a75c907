"""Reading worker -> host frames (WORKER-PROTOCOL.md) with limits.

Every byte from a worker is untrusted: lengths are checked against limits before
anything is allocated, and blobs are handed on in bounded chunks as they arrive.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from runtime import protocol

CHUNK = 1 << 20
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class ProtocolViolation(Exception):
    """The worker sent something the protocol does not allow."""


class ConnectionEnded(Exception):
    """The worker closed its socket (cleanly, at a frame boundary or not)."""


@dataclass(frozen=True)
class DataEvent:
    body: dict[str, Any]


@dataclass(frozen=True)
class Message:
    body: dict[str, Any]
    blob_count: int


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

    async def _json(self, length: int) -> dict[str, Any]:
        if length > protocol.MAX_JSON_BYTES:
            raise ProtocolViolation(
                f"a JSON document of {length} bytes is over the limit of {protocol.MAX_JSON_BYTES}"
            )
        raw = await self._exactly(length)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise ProtocolViolation(f"malformed JSON in a frame: {e}") from None
        if not isinstance(body, dict):
            raise ProtocolViolation("a frame's JSON is not an object")
        return body

    async def next_frame(self) -> DataEvent | Message:
        """The next frame's head; for a Message, its blobs must be read next, then ``end``."""
        try:
            kind = await self._reader.readexactly(1)
        except asyncio.IncompleteReadError:
            raise ConnectionEnded("the worker closed its socket") from None
        if kind[0] == protocol.DATA_EVENT:
            (length,) = _U64.unpack(await self._exactly(8))
            return DataEvent(await self._json(length))
        if kind[0] == protocol.MESSAGE:
            head = await self._exactly(12)
            (count,) = _U32.unpack_from(head, 0)
            (length,) = _U64.unpack_from(head, 4)
            if count > self._max_blobs:
                raise ProtocolViolation(f"a message with {count} blobs (limit {self._max_blobs})")
            return Message(await self._json(length), count)
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

    async def skip_blob(self, length: int) -> None:
        await self.read_blob(length, lambda _chunk: None)

    async def end_message(self) -> None:
        await self._exactly(1)
