"""Write-behind: a blocking write of each chunk runs in a thread while the next one arrives.

Receiving (the event loop) and hashing/writing to disk (a thread; hashlib and os.write release
the GIL) then overlap instead of taking turns. At most one write is in flight, so memory stays
bounded by one chunk beyond the reader's own buffer, and writes keep their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class WriteBehind:
    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self._write = write
        self._inflight: asyncio.Future[Any] | None = None

    async def __call__(self, chunk: bytes) -> None:
        """Queue ``chunk``: waits for the previous write (and raises its error) first."""
        await self.flush()
        self._inflight = asyncio.get_running_loop().run_in_executor(None, self._write, chunk)

    async def flush(self) -> None:
        """Wait for the write in flight, if any."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight
