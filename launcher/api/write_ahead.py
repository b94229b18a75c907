"""One blocking write in a thread while the next piece of a request is received.

A request's pieces are validated and written in order, at most one in flight (memory stays
bounded and writes keep their order): the caller ``wait``s for the previous write (its
error is raised then) before it looks at the next piece, and ``start``s that piece's write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class WriteAhead:
    def __init__(self) -> None:
        self._inflight: asyncio.Future[Any] | None = None

    async def wait(self) -> None:
        """Wait for the write in flight, if any; raises its error."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight

    def start(self, write: Callable[[Any], Any], data: Any) -> None:
        """Run ``write(data)`` in a thread (after ``wait``: one at a time)."""
        assert self._inflight is None
        self._inflight = asyncio.get_running_loop().run_in_executor(None, write, data)

    async def settle(self) -> None:
        """After an error: let a write still in flight end before the request's data is
        thrown away (its own error is superseded by the one being raised)."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await asyncio.wait([inflight])
            if not inflight.cancelled():
                inflight.exception()
