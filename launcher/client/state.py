"""Reading a ``GetModelState`` stream: keys into memory, or into files with bounded memory."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from launcher.client.call import LauncherConnectionError
from launcher.client.responses import error_dict
from launcher.v1 import model_pb2


class KeySink(Protocol):
    def begin(self, key: str, byte_size: int) -> None: ...
    def write(self, data: bytes) -> None: ...
    def end(self) -> None: ...


def read_state(chunks: Iterable[model_pb2.StateDataChunk], sink: KeySink) -> dict[str, Any] | None:
    """Feed each key's bytes to ``sink``; the ``{"error"}`` answer if the stream carries one."""
    current: str | None = None
    expected = received = 0
    for chunk in chunks:
        if chunk.HasField("error"):
            return {"error": error_dict(chunk.error)}
        if chunk.key and chunk.key != current:
            if current is not None:
                _check_complete(current, expected, received)
                sink.end()
            current, expected, received = chunk.key, chunk.byte_size, 0
            sink.begin(current, expected)
        elif current is None:
            raise LauncherConnectionError("state stream sent data before naming its key")
        received += len(chunk.data)
        if received > expected:
            raise LauncherConnectionError(f"state key {current!r} sent more than {expected} bytes")
        sink.write(chunk.data)
    if current is not None:
        _check_complete(current, expected, received)
        sink.end()
    return None


def _check_complete(key: str, expected: int, received: int) -> None:
    if received != expected:
        raise LauncherConnectionError(
            f"state key {key!r} ended after {received} of {expected} bytes"
        )


class MemorySink:
    """Keys as ``[{"key", "data": bytes}]``."""

    def __init__(self) -> None:
        self.data: list[dict[str, Any]] = []
        self._parts: list[bytes] = []

    def begin(self, key: str, byte_size: int) -> None:
        self.data.append({"key": key, "data": b""})
        self._parts = []

    def write(self, data: bytes) -> None:
        self._parts.append(data)

    def end(self) -> None:
        self.data[-1]["data"] = b"".join(self._parts)
        self._parts = []


def file_name(key: str) -> str:
    """A key as one safe file name: separators and other unsafe characters percent-encoded."""
    name = urllib.parse.quote(key, safe="-_.,=+@ ")
    return "%2E" + name[1:] if name in (".", "..") else name


class FileSink:
    """Keys written to ``<dir>/<file_name(key)>`` as they arrive; partial files never remain.

    Each key goes to a hidden temporary file first and is renamed into place when complete.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data: list[dict[str, Any]] = []
        self._file: Any = None
        self._tmp: Path | None = None

    def begin(self, key: str, byte_size: int) -> None:
        path = self.directory / file_name(key)
        self._tmp = path.with_name(f".{path.name}.part")
        self._file = self._tmp.open("wb")
        self.data.append({"key": key, "path": str(path), "byteSize": byte_size})

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def end(self) -> None:
        assert self._tmp is not None
        self._file.close()
        os.replace(self._tmp, self.data[-1]["path"])
        self._file = self._tmp = None

    def discard(self) -> None:
        """Remove every file of this download (after a failed stream): all keys or none."""
        if self._file is not None and self._tmp is not None:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            self._file = self._tmp = None
            self.data.pop()
        for item in self.data:
            Path(item["path"]).unlink(missing_ok=True)
        self.data = []
