"""AddEntries request messages read without copying their chunk bytes.

Protobuf copies a 1 MiB ``chunk`` twice on its way to the store (into the parsed message, then
out of it as ``bytes`` on each access of the field). ``parse_add_entries_request``, the gRPC
server's deserializer for AddEntries, reads a message that is exactly ``chunk`` in protobuf's
own encoding (field 2, length-delimited, the length ending the message) as an ``EntriesChunk``
whose data is a view of the received bytes: the values protobuf would give. Every other
message (the header, an empty message, unknown or repeated fields, malformed bytes) is
``AddEntriesRequest.FromString``'s, with its errors, so a client sending ordinary messages
sees no difference.
"""

from __future__ import annotations

from typing import Any

import grpc

from launcher.api.intake import read_varint as _varint
from launcher.v1 import dataset_pb2

_CHUNK_TAG = 0x12  # field 2 (chunk), wire type 2 (length-delimited)
_MAX_VARINT_BYTES = 10


class EntriesChunk:
    """An ``AddEntriesRequest`` holding a chunk, as the servicer reads one (``HasField``,
    ``WhichOneof`` and ``chunk``), its data a view of the received message."""

    __slots__ = ("chunk",)

    def __init__(self, chunk: memoryview) -> None:
        self.chunk = chunk

    def HasField(self, field_name: str) -> bool:  # noqa: N802 - protobuf's name
        if field_name not in ("header", "chunk", "part"):
            raise ValueError(f"AddEntriesRequest has no field {field_name!r}")
        return field_name != "header"

    def WhichOneof(self, oneof_group: str) -> str:  # noqa: N802 - protobuf's name
        if oneof_group != "part":
            raise ValueError(f"AddEntriesRequest has no oneof {oneof_group!r}")
        return "chunk"


AddEntriesMessage = dataset_pb2.AddEntriesRequest | EntriesChunk


def parse_add_entries_request(data: bytes) -> AddEntriesMessage:
    """One AddEntries request message: an ``EntriesChunk`` viewing ``data`` when the message
    is one chunk field and nothing else, else protobuf's own parse."""
    if len(data) >= 2 and data[0] == _CHUNK_TAG:
        size, at = _varint(data, 1)
        if size >= 0 and at + size == len(data):
            return EntriesChunk(memoryview(data)[at:])
    return dataset_pb2.AddEntriesRequest.FromString(data)


def add_entries_handler(servicer: Any) -> grpc.RpcMethodHandler:
    """AddEntries' method handler with ``parse_add_entries_request`` as its deserializer."""
    return grpc.stream_unary_rpc_method_handler(
        servicer.AddEntries,
        request_deserializer=parse_add_entries_request,
        response_serializer=dataset_pb2.AddEntriesResponse.SerializeToString,
    )
