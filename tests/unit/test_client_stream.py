"""The client's request streams: chunking, bounded memory, refusals before anything is sent."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy
import pytest

from launcher.client import LauncherClient
from launcher.client.stream import (
    CHUNK_SIZE,
    build_params,
    chunks,
    create_state_requests,
    create_state_wire,
    wire_chunks,
)
from launcher.v1 import model_pb2
from runtime import tensor

MiB = 1 << 20
TEMPORARY = {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 512}}


def test_chunks_recut_pieces_into_full_blocks_without_losing_bytes() -> None:
    pieces: list[bytes | memoryview] = [
        b"a" * 3,
        memoryview(b"b" * (2 * MiB + 5)),
        b"",
        b"c" * (MiB - 1),
        b"d",
    ]
    blocks = list(chunks(pieces))
    assert b"".join(blocks) == b"".join(bytes(p) for p in pieces)
    assert all(len(b) == CHUNK_SIZE for b in blocks[:-1])
    assert 0 < len(blocks[-1]) <= CHUNK_SIZE


def test_every_kind_of_tensor_value_serializes_like_the_codec() -> None:
    values = [
        numpy.arange(6, dtype=numpy.int32).reshape(2, 3),
        tensor.Tensor.from_values("string", ["x", "yz"]),
        tensor.serialize(numpy.float64(2.5)),
        True,
        3,
        1.5,
        "text",
        [1, 2, 3],
        [[1.0, 2.0]],
        ["a", "b"],
        [b"\x00", b"\x01\x00"],
    ]
    params, inline = build_params([{"name": "p", "data": values}])
    header = model_pb2.CreateStateHeader(params=params)
    data = b"".join(m.chunk.data for m in create_state_requests(header, inline) if m.chunk.data)
    decoded = tensor.deserialize_many(data)
    assert params[0].inline.byte_size == len(data)
    assert [t.type() for t in decoded] == [
        "i32", "string", "f64", "boolean", "i64", "f64", "string", "i64", "f64", "string",
        "binary",
    ]  # fmt: skip
    assert decoded[9].numpy().tolist() == ["a", "b"]
    assert decoded[10].numpy().tolist() == [b"\x00", b"\x01\x00"]
    assert decoded[8].shape() == (1, 2)


@pytest.mark.parametrize("wire", [False, True])
def test_a_256_mib_param_streams_with_bounded_extra_memory(wire: bool) -> None:
    array = numpy.ones(256 * MiB // 8, dtype=numpy.float64)
    tracemalloc.start()
    try:
        params, inline = build_params([{"name": "big", "data": [array]}])
        header = model_pb2.CreateStateHeader(model_id="m", params=params)
        total = 0
        messages = (
            map(model_pb2.CreateStateRequest.FromString, create_state_wire(header, inline))
            if wire
            else create_state_requests(header, inline)
        )
        for message in messages:
            total += len(message.chunk.data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == params[0].inline.byte_size == 256 * MiB + 7  # header: type, rank, 5-byte varint
    assert peak < 16 * MiB


@pytest.fixture
def offline_client(tmp_path: Path) -> LauncherClient:
    """A client whose address has no server: a refusal proves nothing was sent."""
    return LauncherClient(f"unix:{tmp_path / 'nobody.sock'}")


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ("x", "params"),
        ([7], "params[0]"),
        ([{"data": []}], "params[0].name"),
        ([{"name": "a", "data": numpy.zeros(3)}], "params[0].data"),
        ([{"name": "a", "data": "abc"}], "params[0].data"),
        ([{"name": "a", "data": None}], "params[0].data"),
        ([{"name": "a", "data": [1, object()]}], "params[0].data[1]"),
        ([{"name": "a", "data": [[1, "x"]]}], "params[0].data[0]"),
        ([{"name": "a", "data": [[[1], [2, 3]]]}], "params[0].data[0]"),
        ([{"name": "a", "data": [[]]}], "params[0].data[0]"),
        ([{"name": "a", "data": [{"k": 1}]}], "params[0].data[0]"),
        ([{"name": "a", "data": [2**70]}], "params[0].data[0]"),
        ([{"name": "a", "data": []}, {"name": "a", "data": []}], "params[1].name"),
        (
            [{"name": "a", "data": {"type": "dataset", "datasetId": "d"}}],
            "params[0].data.datasetKey",
        ),
        ([{"name": "a", "data": {"type": "other"}}], "params[0].data.type"),
    ],
)
def test_bad_params_are_refused_as_invalid_parameter_without_sending(
    offline_client: LauncherClient, params: Any, parameter: str
) -> None:
    response = offline_client.model.create_state(
        model_id="m", name="n", params=params, execution_location=TEMPORARY
    )
    assert response["error"]["code"] == "invalid_parameter"
    assert response["error"]["parameterName"] == parameter
    assert response["error"]["reason"]


def test_stream_form_yields_the_refusal_as_its_only_item(offline_client: LauncherClient) -> None:
    items = list(
        offline_client.model.create_state_stream(
            model_id="m", name="n", params=[], execution_location={"type": "x"}
        )
    )
    assert items == [
        {
            "error": {
                "code": "invalid_parameter",
                "parameterName": "executionLocation.type",
                "reason": 'expected "persistentLauncher" or "temporaryLauncher"',
            }
        }
    ]


def test_bad_arguments_of_other_methods_are_refused_without_sending(
    offline_client: LauncherClient, tmp_path: Path
) -> None:
    calls = {
        "modelId": lambda: offline_client.model.get_creating_states(model_id=5),
        "limit": lambda: offline_client.model.get_models(limit=-1),
        "data[0].data": lambda: offline_client.model.upload_state(
            model_id="m", name="n", data=[{"key": "k", "data": 12}]
        ),
        "data[1].data": lambda: offline_client.model.upload_state(
            model_id="m",
            name="n",
            data=[{"key": "k", "data": b""}, {"key": "j", "data": tmp_path / "missing"}],
        ),
        "keys[0].data[0]": lambda: offline_client.dataset.add_entries(
            dataset_id="d", keys=[{"key": "k", "data": [object()]}]
        ),
        "entries": lambda: offline_client.dataset.get_entries(dataset_id="d", entries="all"),
        "spec.cpus": lambda: offline_client.persistent_launcher.create_persistent_launcher(
            name="p", spec={"memoryMebibytes": 1}
        ),
        "fromTimestamp": lambda: offline_client.persistent_launcher.get_sysinfo(
            persistent_launcher_id="p", from_timestamp=1.5
        ),
        "properties": lambda: offline_client.model.update_model_state(
            model_id="m", state_id="s", properties="x"
        ),
    }
    for parameter, call in calls.items():
        response = call()
        assert response["error"]["code"] == "invalid_parameter", parameter
        assert response["error"]["parameterName"] == parameter


@pytest.mark.parametrize("index", [0, 1, 127, 128, 70000])
def test_the_wire_form_is_the_serialized_request_stream(index: int) -> None:
    array = numpy.arange(3 * MiB // 8 + 5, dtype=numpy.float64)
    params, inline = build_params([{"name": "a", "data": [numpy.int8(1), array, b"\x00" * 0, "x"]}])
    inline = [(index, payload) for _, payload in inline]
    header = model_pb2.CreateStateHeader(model_id="m", params=params)
    wire = list(create_state_wire(header, inline))
    messages = [m.SerializeToString() for m in create_state_requests(header, inline)]
    assert wire == messages
    parsed = [model_pb2.CreateStateRequest.FromString(w) for w in wire[1:]]
    assert {p.chunk.param_index for p in parsed} == {index}
    assert [len(p.chunk.data) for p in parsed[:-1]] == [CHUNK_SIZE] * (len(parsed) - 1)


def test_wire_chunks_cut_as_chunks_does() -> None:
    pieces: list[bytes | memoryview] = [b"a" * 3, memoryview(b"b" * (2 * MiB + 5)), b"", b"c"]
    blocks = list(wire_chunks(pieces, lambda n: b"<%d>" % n))
    assert blocks == [b"<%d>" % len(b) + b for b in chunks(pieces)]
