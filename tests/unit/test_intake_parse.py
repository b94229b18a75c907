"""CreateState's request parser: a chunk message in protobuf's own encoding is read as a view
of the received bytes with the values protobuf gives; every other message, malformed ones
included, gets exactly protobuf's answer (its message or its error); the gRPC server uses
the parser for CreateState."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError

from launcher.api.grpc_server import add_services
from launcher.api.intake import ChunkRequest, parse_create_state_request
from launcher.client.stream import param_chunk_prefix
from launcher.v1 import (
    dataset_pb2_grpc,
    model_pb2,
    model_pb2_grpc,
    persistent_launcher_pb2_grpc,
)

Request = model_pb2.CreateStateRequest


def chunk(index: int, data: bytes) -> bytes:
    return Request(chunk=model_pb2.ParamChunk(param_index=index, data=data)).SerializeToString()


def same_as_protobuf(wire: bytes) -> Any:
    """The parser's answer, checked against protobuf's for the same bytes."""
    try:
        want: Any = Request.FromString(wire)
    except DecodeError:
        with pytest.raises(DecodeError):
            parse_create_state_request(wire)
        return None
    got = parse_create_state_request(wire)
    assert got.WhichOneof("part") == want.WhichOneof("part")
    if want.WhichOneof("part") == "chunk":
        assert got.chunk.param_index == want.chunk.param_index
        assert bytes(got.chunk.data) == want.chunk.data
    else:
        assert isinstance(got, Request) and got == want
    return got


@pytest.mark.parametrize("index", [0, 1, 127, 128, 300, 2**31, 2**32 - 1])
@pytest.mark.parametrize("size", [1, 5, 127, 128, 1 << 14, (1 << 20) + 3])
def test_a_chunk_in_protobufs_encoding_is_a_view_with_protobufs_values(
    index: int, size: int
) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wire = chunk(index, data)
    assert wire == param_chunk_prefix(index, size) + data  # the client's wire form
    got = same_as_protobuf(wire)
    assert isinstance(got, ChunkRequest)
    assert isinstance(got.chunk.data, memoryview) and got.chunk.data.obj is wire


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def test_every_other_message_is_protobufs_answer() -> None:
    body = b"abc"
    cases = [
        b"",
        Request().SerializeToString(),
        Request(header=model_pb2.CreateStateHeader(model_id="m")).SerializeToString(),
        chunk(0, b""),  # an empty chunk: no data field
        chunk(3, b""),
        chunk(1, body) + chunk(2, b"de"),  # two chunks: protobuf merges them
        chunk(1, body) + Request(header=model_pb2.CreateStateHeader()).SerializeToString(),
        b"\x12\x05\x12\x03abc" + b"\x08\x01",  # a field after the message's length
        b"\x12\x07\x12\x03abc\x08\x01",  # param_index after data
        b"\x12\x07\x08\x01\x12\x03abc",  # the outer length too long
        b"\x12\x04\x08\x01\x12\x03abc",  # too short
        b"\x12\x05\x08\x01\x12\x04abc",  # data longer than the message
        b"\x12\x05\x08\x01\x12\x02abc",  # data shorter than the message
        b"\x12\x06\x08\x81\x00\x12\x01a",  # a non-minimal varint
        b"\x12\x0d\x08" + varint(2**32) + b"\x12\x01a",  # param_index past uint32
        b"\x12\x10\x08" + varint(2**64 - 1) + b"\x12\x01a",
        b"\x12\x0f\x08" + b"\xff" * 11 + b"\x12\x01a",  # an unending varint
        b"\x12\x06\x10\x01\x12\x01a",  # an unknown field
        b"\x12\x05\x0a\x03abc",  # param_index with the wrong wire type
        b"\x12\x80",  # a cut varint
        b"\x12\x03\x08\x01\x12",
        b"\x0a\x00\x12\x03\x12\x01a",  # a header, then a chunk
    ]
    for wire in cases:
        same_as_protobuf(wire)
    for n in range(len(chunk(300, body))):  # every cut of a chunk
        same_as_protobuf(chunk(300, body)[:n])
    # every two-byte change of a small chunk: protobuf's answer, or the parser's equal one
    base = chunk(5, b"xy")
    for i, j in itertools.combinations(range(len(base)), 2):
        for a, b in ((0x00, 0x7F), (0x80, 0xFF), (0x12, 0x08)):
            mutated = bytearray(base)
            mutated[i], mutated[j] = a, b
            same_as_protobuf(bytes(mutated))


def test_the_grpc_server_parses_create_state_with_it() -> None:
    seen: list[type] = []

    class Model(model_pb2_grpc.ModelServicer):
        async def CreateState(self, requests: Any, context: Any) -> Any:  # noqa: N802
            async for message in requests:
                seen.append(type(message))
            yield model_pb2.CreateStateEvent(accepted_state_id="s")

    async def main(sock: Path) -> None:
        server = grpc.aio.server()
        add_services(
            server,
            {
                "Model": Model(),
                "Dataset": dataset_pb2_grpc.DatasetServicer(),
                "PersistentLauncher": persistent_launcher_pb2_grpc.PersistentLauncherServicer(),
            },
        )
        server.add_insecure_port(f"unix://{sock}")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"unix://{sock}") as channel:
                call = channel.stream_stream("/launcher.v1.Model/CreateState")
                header = Request(header=model_pb2.CreateStateHeader(model_id="m"))
                wire = [header.SerializeToString(), chunk(0, b"abc"), chunk(1, b"d")]
                async for _ in call(iter(wire)):
                    pass
        finally:
            await server.stop(0)

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(main(Path(folder) / "s.sock"))
    assert seen == [Request, ChunkRequest, ChunkRequest]
