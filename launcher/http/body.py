"""A request body as the frame parser reads it: exact reads for the header, and blob bytes
copied straight into reused buffers for consumers that take views.

aiohttp's ``readexactly`` joins the received chunks into a new ``bytes`` per read (a copy into
freshly allocated memory, which on a virtual machine costs page faults as much as the copy);
here each chunk the server received is taken as it is (``readchunk``) and copied once, into
a buffer that is used again once nobody holds a view of it. A chunk that runs past what was
asked for is kept and handed out first by the next read.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable


class ByteSource(Protocol):
    async def readexactly(self, n: int) -> bytes: ...

    async def read(self, n: int = -1) -> bytes: ...


@runtime_checkable
class ChunkSource(ByteSource, Protocol):
    """aiohttp's ``StreamReader``: each received chunk as it is (``(b"", False)`` at the end)."""

    async def readchunk(self) -> tuple[bytes, bool]: ...

    def at_eof(self) -> bool: ...


def unexported(buffer: bytearray) -> bool:
    """Whether no view of ``buffer`` is alive: a bytearray refuses to change size while one
    is, so it is shortened by a byte and given it back (no copy, the contents do not matter)."""
    if not buffer:
        return True
    try:
        del buffer[-1:]
    except BufferError:
        return False
    buffer.append(0)
    return True


class Body:
    """``source`` read through one cursor: ``read``/``readexactly`` as ``ByteSource``'s, and
    ``readinto`` a view."""

    def __init__(self, source: ByteSource) -> None:
        self._source = source
        #: aiohttp's StreamReader hands out each received chunk without joining any.
        self._chunks = source if isinstance(source, ChunkSource) else None
        #: Bytes received past the last read (given out first).
        self._left: memoryview | None = None

    async def _some(self, n: int) -> bytes | memoryview:
        """At most ``n`` bytes (any number when ``n`` < 0); empty at the end of the body."""
        data: bytes | memoryview
        if self._left is not None:
            data = self._left
            self._left = None
        elif self._chunks is None:
            return await self._source.read(n)
        else:
            while True:
                data, end_of_http_chunk = await self._chunks.readchunk()
                # (b"", False) is the end of the body; (b"", True) the end of an HTTP chunk,
                # or, once the end was told (an empty body's reader), the end again.
                if data or not end_of_http_chunk or self._chunks.at_eof():
                    break
        if 0 <= n < len(data):
            view = memoryview(data)
            self._left = view[n:]
            return view[:n]
        return data

    async def read(self, n: int = -1) -> bytes:
        return bytes(await self._some(n))

    async def readexactly(self, n: int) -> bytes:
        parts: list[bytes | memoryview] = []
        got = 0
        while got < n:
            data = await self._some(n - got)
            if not data:
                partial = b"".join(parts)
                raise asyncio.IncompleteReadError(partial, n)
            parts.append(data)
            got += len(data)
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    async def readinto(self, view: memoryview, idle: float | None) -> None:
        """Fill ``view`` (raises ``IncompleteReadError`` where the body ends first, and
        ``TimeoutError`` where it sends nothing for ``idle`` seconds)."""
        at, end = 0, len(view)
        while at < end:
            async with asyncio.timeout(idle):
                data = await self._some(end - at)
            if not data:
                raise asyncio.IncompleteReadError(bytes(view[:at]), end)
            view[at : at + len(data)] = data
            at += len(data)
