"""A request's chunks written in order, in a thread, in batches of what arrived meanwhile.

Like ``write_ahead.WriteAhead`` (at most one write in flight, writes in order, an error raised
before any later chunk is looked at), but the event loop does not stop receiving while a write
is in flight: the chunks that arrive meanwhile are queued, up to ``max_bytes`` or
``max_chunks``, and the next write takes all of them in one thread hop (a 1 GiB upload in
1 MiB messages no longer costs a hop a message when the disk is the slower side). Memory stays
bounded: the batch in flight plus the queue, each at most the caps plus one message.

A chunk starts a write at once when none is in flight, so a bad chunk is validated when it
arrives and its error is raised at the next ``add`` or ``flush``, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

#: Chunks queued behind the write in flight, at most (then the loop waits for that write).
MAX_QUEUED_BYTES = 8 << 20
MAX_QUEUED_CHUNKS = 64

Chunk = bytes | memoryview


class WriteBatches:
    def __init__(
        self,
        write_many: Callable[[Sequence[Chunk]], Any],
        max_bytes: int = MAX_QUEUED_BYTES,
        max_chunks: int = MAX_QUEUED_CHUNKS,
    ) -> None:
        self._write_many = write_many
        self._max_bytes = max_bytes
        self._max_chunks = max_chunks
        self._queued: list[Chunk] = []
        self._queued_bytes = 0
        self._inflight: asyncio.Future[Any] | None = None

    async def add(self, chunk: Chunk) -> None:
        """Queue ``chunk`` behind the write in flight (starting it now if there is none);
        raises the error of a write that has ended, before taking the chunk."""
        if self._inflight is not None and self._inflight.done():
            await self._collect()
        self._queued.append(chunk)
        self._queued_bytes += len(chunk)
        if self._inflight is None:
            self._start()
        elif self._queued_bytes >= self._max_bytes or len(self._queued) >= self._max_chunks:
            await self._collect()
            self._start()

    async def flush(self) -> None:
        """Write everything queued and wait for it; raises the first write error."""
        await self._collect()
        if self._queued:
            self._start()
            await self._collect()

    async def settle(self) -> None:
        """After an error: drop the queue and let a write still in flight end before the
        request's data is thrown away (its own error is superseded by the one being raised)."""
        self._queued = []
        self._queued_bytes = 0
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await asyncio.wait([inflight])
            if not inflight.cancelled():
                inflight.exception()

    async def _collect(self) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight

    def _start(self) -> None:
        assert self._inflight is None
        batch, self._queued, self._queued_bytes = self._queued, [], 0
        loop = asyncio.get_running_loop()
        self._inflight = loop.run_in_executor(None, self._write_many, batch)
