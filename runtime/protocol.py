"""The launcher <-> worker wire protocol (WORKER-PROTOCOL.md): frame kinds, limits, encoders.

Both sides import this module: the worker (``runtime.worker``) and the host
(``launcher.worker``). Encoders return lists of buffers so that large blobs are written
with ``writelines``/``sendmsg`` without being copied into one frame. Parsing is left to
each side, because each side reads from its own kind of stream with its own limits.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

# Host -> worker frame kinds.
COMMAND = 0x00
PROVIDE_DATA = 0x01
# Worker -> host frame kinds.
MESSAGE = 0x00
DATA_EVENT = 0x01

MAX_STATE_KEYS = 100
MAX_STATE_KEY_BYTES = 1 << 30
#: The longest state key name (the launcher's ``rules.STATE_KEY_NAME`` is the same limit).
MAX_STATE_KEY_NAME_CHARS = 256
#: The largest JSON document either side accepts in one frame.
MAX_JSON_BYTES = 16 << 20
#: Exception details are cut to this many characters, as in the official runtime.
MAX_EXCEPTION_DETAILS = 10_000

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

Buffer = bytes | bytearray | memoryview


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def encode_command(method: str, params: dict[str, Any]) -> bytes:
    """A host -> worker command frame: ``0x00, u64 length, JSON``."""
    body = _json({"method": method, "params": params})
    return bytes([COMMAND]) + _U64.pack(len(body)) + body


def encode_provide_data(request_id: int, blobs: Sequence[Buffer]) -> list[Buffer]:
    """A host -> worker provide-data frame answering ``requestData``."""
    out: list[Buffer] = [bytes([PROVIDE_DATA]) + _U32.pack(request_id) + _U32.pack(len(blobs))]
    for blob in blobs:
        out.append(_U64.pack(len(blob)))
        out.append(blob)
    return out


def provide_data_header(request_id: int, count: int) -> bytes:
    """The head of a provide-data frame, for hosts that stream each blob themselves."""
    return bytes([PROVIDE_DATA]) + _U32.pack(request_id) + _U32.pack(count)


def blob_header(length: int) -> bytes:
    """The ``u64 length`` that precedes every blob."""
    return _U64.pack(length)


def encode_message(obj: dict[str, Any], blobs: Sequence[Buffer] = ()) -> list[Buffer]:
    """A worker -> host message frame: result or event, blobs, trailing ``0x00``."""
    body = _json(obj)
    out: list[Buffer] = [bytes([MESSAGE]) + _U32.pack(len(blobs)) + _U64.pack(len(body)) + body]
    for blob in blobs:
        out.append(_U64.pack(len(blob)))
        out.append(blob)
    out.append(b"\x00")
    return out


def encode_data_event(obj: dict[str, Any]) -> bytes:
    """A worker -> host data event frame (``requestData`` or ``shuffle``)."""
    body = _json(obj)
    return bytes([DATA_EVENT]) + _U64.pack(len(body)) + body
