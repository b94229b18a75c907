"""The Unix socket a worker connects to (``IPC_PATH``), accepting exactly one connection."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

#: StreamReader buffer: big enough for fast blob transfer, small enough to bound memory.
STREAM_LIMIT = 4 << 20


class WorkerListener:
    """Listens at ``path``; ``accept`` returns the first connection. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> WorkerListener:
        loop = asyncio.get_running_loop()
        self._conn = loop.create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self._conn is not None and not self._conn.done():
                self._conn.set_result((reader, writer))
            else:
                writer.close()  # one worker, one connection

        self._server = await asyncio.start_unix_server(
            on_connect, str(self.path), limit=STREAM_LIMIT
        )
        os.chmod(self.path, 0o777)  # the worker may run as another uid; the folder guards it
        return self

    async def accept(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self._conn is not None
        conn = await asyncio.shield(self._conn)
        self._stop()
        return conn

    def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def __aexit__(self, *exc: object) -> None:
        self._stop()
        if self._conn is not None and not self._conn.done():
            self._conn.cancel()
