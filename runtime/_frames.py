"""Parsing of host -> worker frames (WORKER-PROTOCOL.md), with the worker's limits enforced.

A frame that breaks the protocol raises :class:`ProtocolError`; the worker cannot resynchronise
after one, so it ends. No length read from the wire allocates memory before it was checked
against a limit: the JSON limit of ``runtime.protocol`` for commands, and for provide-data
frames the bounds of the request being answered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

from runtime import messages, protocol
from runtime._serialized import SerializedTensor
from runtime._transport import Connection


class ProtocolError(Exception):
    """The host sent something the protocol does not allow."""


class Refused(NamedTuple):
    """A command of a known method whose params break the protocol: answered, not run."""

    method: str
    id: str | None
    reason: str


class PendingRequest:
    """A ``requestData`` waiting for its answer: what the answer may hold, and who gets it."""

    __slots__ = ("max_count", "max_bytes", "resolve")

    def __init__(
        self, max_count: int, max_bytes: int, resolve: Callable[[list[bytearray]], None]
    ) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.resolve = resolve


class ProvideData(NamedTuple):
    request: PendingRequest
    blobs: list[bytearray]


#: Takes a pending request by id off the table (so a second answer is refused); ``None`` when
#: no such request is waiting.
ClaimRequest = Callable[[int], PendingRequest | None]


Frame = messages.Command | Refused | ProvideData


def read_frame(conn: Connection, claim: ClaimRequest) -> Frame:
    """The next frame; raises ``ConnectionClosed`` at the end of the stream."""
    kind = conn.read_u8(at_boundary=True)
    if kind == protocol.COMMAND:
        return _read_command(conn)
    if kind == protocol.PROVIDE_DATA:
        return _read_provide_data(conn, claim)
    raise ProtocolError(f"unknown frame kind 0x{kind:02x}")


def _read_command(conn: Connection) -> messages.Command | Refused:
    length = conn.read_u64()
    if length > protocol.MAX_JSON_BYTES:
        raise ProtocolError(
            f"command of {length} bytes exceeds the limit of {protocol.MAX_JSON_BYTES} bytes"
        )
    body = conn.read_blob(length)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"command is not valid JSON: {e}") from None
    try:
        return messages.parse_command(doc)
    except messages.BadParams as e:
        return Refused(e.method, e.id, str(e))
    except messages.MessageError as e:
        raise ProtocolError(str(e)) from None


def _read_provide_data(conn: Connection, claim: ClaimRequest) -> ProvideData:
    request_id = conn.read_u32()
    count = conn.read_u32()
    limit = claim(request_id)
    if limit is None:
        raise ProtocolError(f"provide-data for request {request_id}, which is not pending")
    if count > limit.max_count:
        raise ProtocolError(
            f"provide-data for request {request_id} holds {count} elements; "
            f"at most {limit.max_count} were requested"
        )
    budget = limit.max_bytes
    blobs: list[bytearray] = []
    for index in range(count):
        length = conn.read_u64()
        if length > budget:
            raise ProtocolError(
                f"provide-data for request {request_id}: element {index} of {length} bytes "
                f"exceeds the dataset's remaining byte size ({budget} bytes)"
            )
        budget -= length
        blobs.append(conn.read_blob(length, SerializedTensor))
    return ProvideData(limit, blobs)
