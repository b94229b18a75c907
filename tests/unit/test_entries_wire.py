"""AddEntries' request parser and the client's pre-serialized AddEntries stream.

A chunk message in protobuf's own encoding is read as a view of the received bytes with the
value protobuf gives; every other message, malformed ones included, gets exactly protobuf's
answer (its message or its error). The client's wire form is byte for byte the serialized
ordinary messages, and the gRPC server (``add_services``) parses AddEntries with the parser,
with every refusal of the upload unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError

from launcher.api.dataset import DatasetServicer
from launcher.api.entries_wire import EntriesChunk, parse_add_entries_request
from launcher.api.grpc_server import add_services
from launcher.client.stream import (
    CHUNK_SIZE,
    add_entries_requests,
    add_entries_wire,
    entries_chunk_prefix,
    keyed_payloads,
    tensors_payload,
)
from launcher.store.datasets import DatasetStore, KeyDef, KeyRules
from launcher.store.db import Database
from launcher.v1 import dataset_pb2, model_pb2_grpc, persistent_launcher_pb2_grpc
from runtime.tensor import serialize

Request = dataset_pb2.AddEntriesRequest
MiB = 1 << 20


def chunk(data: bytes) -> bytes:
    return Request(chunk=data).SerializeToString()


def same_as_protobuf(wire: bytes) -> Any:
    """The parser's answer, checked against protobuf's for the same bytes."""
    try:
        want = Request.FromString(wire)
    except DecodeError:
        with pytest.raises(DecodeError):
            parse_add_entries_request(wire)
        return None
    got = parse_add_entries_request(wire)
    assert got.WhichOneof("part") == want.WhichOneof("part")
    assert got.HasField("header") == want.HasField("header")
    if want.WhichOneof("part") == "chunk":
        assert got.HasField("chunk")
        assert bytes(got.chunk) == want.chunk
    else:
        assert isinstance(got, Request) and got == want
    return got


@pytest.mark.parametrize("size", [0, 1, 5, 127, 128, 1 << 14, CHUNK_SIZE, (1 << 20) + 3])
def test_a_chunk_in_protobufs_encoding_is_a_view_with_protobufs_value(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wire = chunk(data)
    assert wire == entries_chunk_prefix(size) + data  # the client's wire form
    got = same_as_protobuf(wire)
    assert isinstance(got, EntriesChunk)
    assert isinstance(got.chunk, memoryview) and got.chunk.obj is wire


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def test_every_other_message_is_protobufs_answer() -> None:
    header = Request(header=dataset_pb2.AddEntriesHeader(dataset_id="d")).SerializeToString()
    cases = [
        b"",
        header,
        chunk(b"abc") + chunk(b"de"),  # two chunks: the last one wins
        chunk(b"abc") + header,  # the header replaces the chunk
        header + chunk(b"abc"),
        b"\x12\x03abc\x08\x01",  # an unknown field after the chunk
        b"\x08\x01\x12\x03abc",  # an unknown field before it
        b"\x12\x83\x00abc",  # a non-minimal length
        b"\x12\x04abc",  # length too long
        b"\x12\x02abc",  # length too short
        b"\x12" + b"\xff" * 11 + b"a",  # an unending varint
        b"\x12" + varint(2**64 - 1) + b"a",
        b"\x12\x80",  # a cut varint
        b"\x12",
        b"\x10\x03abc",  # field 2 with the wrong wire type
        b"\x1a\x03abc",  # another field number
    ]
    for wire in cases:
        same_as_protobuf(wire)
    for n in range(len(chunk(b"x" * 200))):  # every cut of a chunk
        same_as_protobuf(chunk(b"x" * 200)[:n])
    base = chunk(b"xyz")
    for i, j in itertools.combinations(range(len(base)), 2):
        for a, b in ((0x00, 0x7F), (0x80, 0xFF), (0x12, 0x0A)):
            mutated = bytearray(base)
            mutated[i], mutated[j] = a, b
            same_as_protobuf(bytes(mutated))


def test_the_wire_form_is_the_serialized_request_stream() -> None:
    rows = [np.arange(3 * MiB // 8 + 5, dtype=np.float64), np.int8(1), np.zeros(0, np.float32)]
    keys = keyed_payloads(
        [{"key": "a", "data": rows}, {"key": "b", "data": [b"\x00" * 0, "x", "y"]}],
        "keys",
        tensors_payload,
    )
    wire = list(add_entries_wire("d", keys))
    assert wire == [m.SerializeToString() for m in add_entries_requests("d", keys)]
    parsed = [parse_add_entries_request(w) for w in wire]
    assert isinstance(parsed[0], Request) and parsed[0].HasField("header")
    assert all(isinstance(p, EntriesChunk) for p in parsed[1:])
    assert [len(p.chunk) for p in parsed[1:-1]] == [CHUNK_SIZE] * (len(parsed) - 2)


def _serve(dataset: Any, sock: Path, client: Any) -> Any:
    """Run ``client(channel)`` against ``add_services`` with ``dataset`` as the servicer."""

    async def main() -> Any:
        server = grpc.aio.server()
        add_services(
            server,
            {
                "Model": model_pb2_grpc.ModelServicer(),
                "Dataset": dataset,
                "PersistentLauncher": persistent_launcher_pb2_grpc.PersistentLauncherServicer(),
            },
        )
        server.add_insecure_port(f"unix://{sock}")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"unix://{sock}") as channel:
                return await client(channel)
        finally:
            await server.stop(0)

    return asyncio.run(main())


def test_the_grpc_server_parses_add_entries_with_it() -> None:
    seen: list[type] = []

    class Servicer(DatasetServicer):
        def __init__(self) -> None:
            pass

        async def AddEntries(self, requests: Any, context: Any) -> Any:  # noqa: N802
            async for message in requests:
                seen.append(type(message))
            return dataset_pb2.AddEntriesResponse()

    async def client(channel: grpc.aio.Channel) -> None:
        call = channel.stream_unary("/launcher.v1.Dataset/AddEntries")
        header = Request(header=dataset_pb2.AddEntriesHeader(dataset_id="d"))
        await call(iter([header.SerializeToString(), chunk(b"abc"), chunk(b"d")]))

    with tempfile.TemporaryDirectory() as folder:
        _serve(Servicer(), Path(folder) / "s.sock", client)
    assert seen == [Request, EntriesChunk, EntriesChunk]


def _upload(channel: grpc.aio.Channel, dataset_id: str, size: int, chunks: list[bytes]) -> Any:
    header = dataset_pb2.AddEntriesHeader(
        dataset_id=dataset_id, keys=[dataset_pb2.AddEntriesHeader.Key(key="x", byte_size=size)]
    )
    wire = [Request(header=header).SerializeToString(), *chunks]
    call = channel.stream_unary(
        "/launcher.v1.Dataset/AddEntries",
        response_deserializer=dataset_pb2.AddEntriesResponse.FromString,
    )
    return call(iter(wire))


def test_refusals_hold_through_the_parser(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    store = DatasetStore(tmp_path, db)
    dataset_id = store.create("d", "", [KeyDef("x", True, KeyRules((-1,), ("f32",)))]).id
    good = serialize(np.arange(10, dtype=np.float32)) * 3
    wrong_type = serialize(np.arange(4, dtype=np.int32))

    async def client(channel: grpc.aio.Channel) -> list[Any]:
        return [
            # A valid upload in uneven chunks, read back below.
            await _upload(channel, dataset_id, len(good), [chunk(good[:7]), chunk(good[7:])]),
            # A tensor of a type the key does not allow, in the second chunk.
            await _upload(
                channel, dataset_id, len(good) + len(wrong_type), [chunk(good), chunk(wrong_type)]
            ),
            # More bytes than announced.
            await _upload(channel, dataset_id, len(good), [chunk(good + b"\x00")]),
            # Bytes that are not a tensor, then a second header: the bytes are the answer.
            await _upload(
                channel,
                dataset_id,
                8,
                [
                    chunk(b"\xee" * 8),
                    Request(header=dataset_pb2.AddEntriesHeader()).SerializeToString(),
                ],
            ),
            # A second header after good bytes.
            await _upload(
                channel,
                dataset_id,
                len(good),
                [
                    chunk(good[:5]),
                    Request(header=dataset_pb2.AddEntriesHeader()).SerializeToString(),
                ],
            ),
            # Fewer bytes than announced.
            await _upload(channel, dataset_id, len(good) + 1, [chunk(good)]),
        ]

    try:
        sock = Path(tempfile.mkdtemp(prefix="ew")) / "s.sock"
        answers = _serve(DatasetServicer(store), sock, client)
        assert answers[0].WhichOneof("outcome") == "result", answers[0]
        errors = [a.error for a in answers[1:]]
        assert all(a.WhichOneof("outcome") == "error" for a in answers[1:])
        assert errors[0].parameter_name == "keys[0].data[3]"
        assert "i32" in errors[0].reason
        assert errors[1].parameter_name == "chunk"
        assert "more bytes than announced" in errors[1].reason
        assert errors[2].parameter_name == "keys[0].data[0]"
        assert "not a valid tensor" in errors[2].reason
        assert errors[3].parameter_name == "header"
        assert errors[4].parameter_name == "keys[0].data"
        assert store.get(dataset_id).entries == 3
        source = store.open_param(dataset_id, "x", "p")
        try:
            assert b"".join(source.read(i) for i in range(source.amount)) == good
        finally:
            source.close()
    finally:
        db.close()
