"""The platform HTTP API under test: a launcher serving ``--http`` on a free loopback port, and
a raw client written from PLATFORM-HTTP.md (not the platform's), for the framing edges."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.launcher_proc import LauncherProcess, running_launcher

SPEC = {"cpus": 1, "memoryMebibytes": 512}
TEMPORARY = {"type": "temporaryLauncher", "spec": SPEC}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_launcher(
    root: Path, extra_args: list[str] | None = None
) -> Iterator[tuple[LauncherProcess, str]]:
    """A launcher with the HTTP API on; yields it and the API's base ``http://HOST:PORT/v0``."""
    port = free_port()
    args = ["--http", f"127.0.0.1:{port}", *(extra_args or [])]
    with running_launcher(root, args) as proc:
        yield proc, f"http://127.0.0.1:{port}/v0"


def varint(value: int) -> bytes:
    if value <= 252:
        return bytes([value])
    if value <= 0xFFFF:
        return b"\xfd" + value.to_bytes(2, "big")
    if value <= 0xFFFFFFFF:
        return b"\xfe" + value.to_bytes(4, "big")
    return b"\xff" + value.to_bytes(8, "big")


def frame(params: Any, blobs: Sequence[bytes] = (), raw_json: bytes | None = None) -> bytes:
    body = raw_json if raw_json is not None else json.dumps(params).encode()
    head = bytes([len(blobs)]) + varint(len(body)) + b"".join(varint(len(b)) for b in blobs)
    return head + body + b"".join(blobs)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    width = {0xFD: 2, 0xFE: 4, 0xFF: 8}.get(first)
    if width is None:
        return first, pos + 1
    return int.from_bytes(data[pos + 1 : pos + 1 + width], "big"), pos + 1 + width


def parse_response(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    length, pos = read_varint(data, 0)
    body = json.loads(data[pos : pos + length])
    pos += length
    blobs = []
    while pos < len(data):
        length, pos = read_varint(data, pos)
        blobs.append(data[pos : pos + length])
        pos += length
    return body, blobs


class Raw:
    """Plain HTTP/1.1 requests to the API (one connection per request)."""

    def __init__(self, base: str, api_key: str | None = None) -> None:
        host_port = base.removeprefix("http://").removesuffix("/v0")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.api_key = api_key

    def request(
        self,
        verb: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            sent = {"Content-Type": "application/octet-stream", **(headers or {})}
            if self.api_key is not None:
                sent["Authorization"] = f"Bearer {self.api_key}"
            conn.request(verb, path, body=body, headers=sent)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def call(
        self,
        api: str,
        method: str,
        params: Any,
        blobs: Sequence[bytes] = (),
    ) -> tuple[dict[str, Any], list[bytes]]:
        status, headers, data = self.request("POST", f"/v0/{api}/{method}", frame(params, blobs))
        assert status == 200, (status, data)
        assert headers["Content-Type"] == "application/octet-stream"
        return parse_response(data)


class BytesSource:
    """A request body over fixed bytes, read like aiohttp's request stream."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    async def readexactly(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise asyncio.IncompleteReadError(self.data[self.pos :], n)
        self.pos += n
        return self.data[self.pos - n : self.pos]

    async def read(self, n: int = -1) -> bytes:
        out = self.data[self.pos : self.pos + n] if n >= 0 else self.data[self.pos :]
        self.pos += len(out)
        return out
