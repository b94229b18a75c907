"""The platform's HTTP framing (PLATFORM-HTTP.md §2–3): varints, the request frame read as it
arrives, and the response frame written piece by piece.

Request: ``u8 N, varint J, N varints L[i], J bytes of JSON, the blobs back to back``; every
size is known from the header (at most 2 305 bytes), so the body is never held whole: the JSON
is read (bounded by ``max_json``) and each blob is handed on in pieces.
Response: ``varint J, JSON, then per blob varint L and L bytes``.

Blob bytes are given out as ``bytes`` pieces (``pieces``), or, for a consumer that lets go of
each before asking for the next but one (the createState intake), as views of a few reused
buffers (``views``): the bytes are copied once, from the chunks the server received.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from launcher.http.body import Body, ByteSource, unexported

__all__ = [
    "MAX_HEADER",
    "PIECE",
    "VIEW_PIECE",
    "ByteSource",
    "FrameError",
    "RequestFrame",
    "encode_varint",
    "read_varint",
    "response_head",
]

#: Blob bytes are handed on in pieces of at most this size.
PIECE = 1 << 20
#: ``views`` gives out blob bytes in views of at most this size (fewer hand-offs to a thread).
VIEW_PIECE = 4 << 20
#: ``views`` keeps at most this many buffers for reuse.
_SPARE_BUFFERS = 3
#: The header's most bytes: u8 count, one JSON varint and 255 blob varints of 9 bytes each.
MAX_HEADER = 1 + 9 + 255 * 9


class FrameError(Exception):
    """The body is not a frame (answered 400), or its JSON is over the cap (413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def encode_varint(value: int) -> bytes:
    """The shortest form of ``value``."""
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"varint out of range: {value}")
    if value <= 252:
        return bytes([value])
    if value <= 0xFFFF:
        return b"\xfd" + value.to_bytes(2, "big")
    if value <= 0xFFFFFFFF:
        return b"\xfe" + value.to_bytes(4, "big")
    return b"\xff" + value.to_bytes(8, "big")


_WIDTH = {0xFD: 2, 0xFE: 4, 0xFF: 8}


async def _read(source: ByteSource, n: int, what: str, idle: float | None) -> bytes:
    try:
        return await asyncio.wait_for(source.readexactly(n), idle)
    except TimeoutError:
        raise FrameError(f"the body sent nothing for {idle:g} s (inside the {what})") from None
    except Exception:  # IncompleteReadError, or the connection ended
        raise FrameError(f"the body ends inside the {what}") from None


async def read_varint(source: ByteSource, what: str, idle: float | None = None) -> tuple[int, int]:
    """A varint (non-minimal forms accepted) and how many bytes it took."""
    first = (await _read(source, 1, what, idle))[0]
    width = _WIDTH.get(first)
    if width is None:
        return first, 1
    return int.from_bytes(await _read(source, width, what, idle), "big"), 1 + width


class RequestFrame:
    """A request frame being read: ``params`` (the JSON object) once ``open`` returns, then
    the blobs in order through ``pieces(i)`` / ``read_blob(i)``; ``drain`` reads what is left."""

    def __init__(
        self, source: ByteSource, content_length: int | None, idle: float | None = None
    ) -> None:
        self._source = Body(source)
        self._content_length = content_length
        #: A body that sends nothing for this many seconds is ended (None: never).
        self._idle = idle
        #: How reading the body failed, if it did (whoever caught the error).
        self.failure: FrameError | None = None
        self.params: dict[str, Any] = {}
        self.blob_lengths: list[int] = []
        self._next_blob = 0
        self._left_in_body: int | None = None
        #: ``views``'s buffers, used again once no view of them is alive.
        self._buffers: list[bytearray] = []

    async def open(self, max_json: int) -> None:
        count = (await _read(self._source, 1, "blob count", self._idle))[0]
        json_length, used = await read_varint(self._source, "JSON length", self._idle)
        header = 1 + used
        for i in range(count):
            length, used = await read_varint(self._source, f"length of blob {i}", self._idle)
            self.blob_lengths.append(length)
            header += used
        if json_length > max_json:
            raise FrameError(f"the JSON part is {json_length} bytes; at most {max_json}", 413)
        expected = header + json_length + sum(self.blob_lengths)
        if self._content_length is not None and self._content_length != expected:
            what = "ends early" if self._content_length < expected else "has trailing bytes"
            raise FrameError(
                f"the body {what}: Content-Length {self._content_length}, the frame's header "
                f"gives {expected} bytes"
            )
        raw = await _read(self._source, json_length, "JSON", self._idle)
        try:
            params = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise FrameError(f"the JSON part is not valid UTF-8 JSON: {e}") from None
        if not isinstance(params, dict):
            raise FrameError("the JSON part is not an object")
        self.params = params

    async def _take(self, n: int, what: str) -> bytes:
        try:
            return await _read(self._source, n, what, self._idle)
        except FrameError as e:
            self.failure = e
            raise

    def _start_blob(self, index: int) -> int:
        if index != self._next_blob:
            raise RuntimeError(f"blob {index} read out of order (next is {self._next_blob})")
        self._next_blob += 1
        return self.blob_lengths[index]

    async def pieces(self, index: int) -> AsyncIterator[bytes]:
        """Blob ``index`` in pieces of at most ``PIECE`` bytes (blobs must be read in order)."""
        left = self._start_blob(index)
        while left:
            piece = await self._take(min(left, PIECE), f"blob {index}")
            left -= len(piece)
            yield piece

    async def views(self, index: int) -> AsyncIterator[memoryview]:
        """Blob ``index`` in views of at most ``VIEW_PIECE`` bytes, as ``pieces``. A view's
        buffer is filled again only once no view of it is alive, so a consumer that keeps
        one only costs a fresh buffer; one that drops each in time reuses two or three."""
        left = self._start_blob(index)
        what = f"blob {index}"
        while left:
            size = min(left, VIEW_PIECE)
            view = memoryview(self._buffer())[:size]
            try:
                await self._source.readinto(view, self._idle)
            except TimeoutError:
                self.failure = FrameError(
                    f"the body sent nothing for {self._idle:g} s (inside the {what})"
                )
                raise self.failure from None
            except Exception:  # IncompleteReadError, or the connection ended
                self.failure = FrameError(f"the body ends inside the {what}")
                raise self.failure from None
            left -= size
            yield view

    def _buffer(self) -> bytearray:
        for buffer in self._buffers:
            if unexported(buffer):
                return buffer
        buffer = bytearray(VIEW_PIECE)
        if len(self._buffers) < _SPARE_BUFFERS:
            self._buffers.append(buffer)
        return buffer

    async def read_blob(self, index: int) -> bytes:
        return b"".join([piece async for piece in self.pieces(index)])

    async def drain(self) -> None:
        """Read the rest of the body, so that a refusal reaches a client still sending."""
        try:
            while await asyncio.wait_for(self._source.read(PIECE), self._idle):
                pass
        except TimeoutError:
            raise FrameError(f"the body sent nothing for {self._idle:g} s") from None

    async def check_end(self) -> None:
        """Without a Content-Length (chunked), trailing bytes show only at the end."""
        if self._content_length is None and await self._source.read(1):
            raise FrameError("the body has trailing bytes after the frame")


def response_head(body: dict[str, Any]) -> bytes:
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return encode_varint(len(raw)) + raw
