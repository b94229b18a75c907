"""Write-behind: blocking writes run in a thread while the next chunks arrive.

Receiving (the event loop) and hashing/writing to disk (a thread; hashlib and os.write release
the GIL) then overlap instead of taking turns. The socket hands the loop pieces of a few
hundred KiB; while one write is in flight the pieces that arrive are collected and handed to
the thread together (one thread hop per batch, not per piece), up to ``batch_bytes``: then the
loop waits for the write in flight. Memory stays bounded by two batches beyond the reader's
own buffer, and writes keep their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

#: Bytes collected while a write is in flight before the reader waits for it.
BATCH_BYTES = 4 << 20


class WriteBehind:
    def __init__(self, write: Callable[[bytes], Any], batch_bytes: int = BATCH_BYTES) -> None:
        self._write = write
        self._batch_bytes = batch_bytes
        self._inflight: asyncio.Future[Any] | None = None
        self._batch: list[bytes] = []
        self._batched = 0

    async def __call__(self, chunk: bytes) -> None:
        """Queue ``chunk``; raises the error of an earlier write."""
        inflight = self._inflight
        if inflight is not None and inflight.done():
            self._inflight = None
            inflight.result()
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._inflight is not None and self._batched < self._batch_bytes:
            return
        await self._wait()
        self._submit()

    async def flush(self) -> None:
        """Write what is queued and wait for it."""
        await self._wait()
        if self._batch:
            self._submit()
            await self._wait()

    async def _wait(self) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight

    def _submit(self) -> None:
        batch, self._batch, self._batched = self._batch, [], 0
        self._inflight = asyncio.get_running_loop().run_in_executor(None, self._write_all, batch)

    def _write_all(self, batch: list[bytes]) -> None:
        for chunk in batch:
            self._write(chunk)
