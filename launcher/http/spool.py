"""Reordering blobs through an unnamed file: the platform sends dataset entries entry-major and
reads them index-major, the Dataset service takes and gives them key-major. The bytes pass
through a file without a name (nothing is left behind), never through memory whole."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from launcher.api.intake import open_spool_file
from launcher.http.frame import PIECE


class Spool:
    """Append pieces, remember where each named part lies, read parts back in any order."""

    def __init__(self, directory: Path) -> None:
        self._fd = open_spool_file(directory)
        self._size = 0
        self.parts: dict[Any, tuple[int, int]] = {}

    async def append(self, part: object, data: bytes) -> None:
        offset, length = self.parts.get(part, (self._size, 0))
        if offset + length != self._size:
            raise RuntimeError(f"part {part!r} is not the last one written")
        await asyncio.to_thread(os.pwrite, self._fd, data, self._size)
        self._size += len(data)
        self.parts[part] = (offset, length + len(data))

    def length(self, part: object) -> int:
        return self.parts.get(part, (0, 0))[1]

    async def read(self, part: object) -> AsyncIterator[bytes]:
        offset, length = self.parts.get(part, (0, 0))
        end = offset + length
        while offset < end:
            data = await asyncio.to_thread(os.pread, self._fd, min(PIECE, end - offset), offset)
            if not data:
                raise OSError("the spool file ended early")
            offset += len(data)
            yield data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
