"""The client against a test double of the launcher, over a real Unix socket.

``FakeLauncher`` is NOT the real server: it is a minimal gRPC servicer answering canned
responses and recording what it received, so that the client's wire behaviour (streaming,
metadata, status mapping) is checked without the daemon. The CLI tests use it too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy
import pytest

from launcher.client import LauncherClient, LauncherConnectionError
from launcher.v1 import (
    common_pb2,
    dataset_pb2,
    model_pb2,
    persistent_launcher_pb2,
)
from runtime import tensor
from tests.support.fake_server import FakeServer, success_events

MiB = 1 << 20


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[FakeServer]:
    server = FakeServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def client(fake_server: FakeServer) -> Iterator[LauncherClient]:
    with LauncherClient(fake_server.address, api_key="k-123", timeout=20) as c:
        yield c


TEMPORARY = {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 512}}


def test_create_state_stream_yields_phase_events_then_the_response(
    client: LauncherClient,
) -> None:
    items = list(
        client.model.create_state_stream(
            model_id="m", name="n", params=[], execution_location=TEMPORARY
        )
    )
    assert items[0] == {"event": "phaseStarted", "phase": "createLauncher", "stateId": "s-1"}
    assert items[1] == {
        "event": "phaseFinished",
        "phase": "createLauncher",
        "stateId": "s-1",
        "duration": 12,
    }
    assert len(items) == 7
    assert items[-1] == {
        "result": {
            "success": {
                "durations": {
                    "total": 210,
                    "createLauncher": 12,
                    "codeStartup": 100,
                    "createState": 50,
                },
                "stateId": "s-1",
            }
        }
    }


def test_create_state_streams_inline_params_in_order_in_chunks_of_at_most_one_mebibyte(
    client: LauncherClient, fake_server: FakeServer
) -> None:
    big = numpy.arange(600_000, dtype=numpy.float32)  # 2.4 MB: three chunks
    params: list[dict[str, Any]] = [
        {"name": "a", "data": [big, 7]},
        {"name": "d", "data": {"type": "dataset", "datasetId": "ds", "datasetKey": "x"}},
        {"name": "b", "data": [b"\x0b\x00\x02ab"]},
    ]
    response = client.model.create_state(
        model_id="m", name="n", params=params, execution_location=TEMPORARY
    )
    assert response["result"]["success"]["stateId"] == "s-1"
    received = fake_server.fake.last("CreateState")
    header = received["header"]
    expected_a = tensor.serialize(big) + tensor.serialize(7)
    assert [p.WhichOneof("data") for p in header.params] == ["inline", "dataset", "inline"]
    assert header.params[0].inline.byte_size == len(expected_a)
    assert header.params[1].dataset.dataset_id == "ds"
    assert header.params[2].inline.byte_size == 5
    assert header.execution_location.temporary_launcher_spec.memory_mebibytes == 512
    assert bytes(received["data"][0]) == expected_a
    assert bytes(received["data"][2]) == b"\x0b\x00\x02ab"
    assert [index for index, _ in received["chunks"]] == [0, 0, 0, 2]
    assert max(size for _, size in received["chunks"]) <= MiB


def test_every_call_carries_the_api_key_as_bearer_metadata(
    client: LauncherClient, fake_server: FakeServer
) -> None:
    client.model.get_models()
    client.model.create_state(model_id="m", name="n", params=[], execution_location=TEMPORARY)
    assert [m["authorization"] for m in fake_server.fake.metadata] == ["Bearer k-123"] * 2


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, "bad_credentials"),
        (grpc.StatusCode.PERMISSION_DENIED, "access_denied"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "too_many_requests"),
    ],
)
def test_auth_statuses_become_error_values(
    client: LauncherClient, fake_server: FakeServer, status: grpc.StatusCode, code: str
) -> None:
    fake_server.fake.abort = (status, "no")
    assert client.model.get_models() == {"error": {"code": code}}
    assert client.model.get_model_state(model_id="m") == {"error": {"code": code}}
    response = client.model.create_state(
        model_id="m", name="n", params=[], execution_location=TEMPORARY
    )
    assert response == {"error": {"code": code}}


def test_other_statuses_raise_launcher_connection_error(
    client: LauncherClient, fake_server: FakeServer
) -> None:
    fake_server.fake.abort = (grpc.StatusCode.INTERNAL, "boom")
    with pytest.raises(LauncherConnectionError, match="INTERNAL"):
        client.model.get_models()
    with pytest.raises(LauncherConnectionError, match="boom"):
        client.dataset.get_entries(dataset_id="d", entries=[0])


def test_nothing_listening_raises_launcher_connection_error_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    with LauncherClient(f"unix:{tmp_path / 'none.sock'}") as client:
        with pytest.raises(LauncherConnectionError, match="UNAVAILABLE"):
            client.model.get_models()
        with pytest.raises(LauncherConnectionError):
            client.model.create_state(
                model_id="m", name="n", params=[], execution_location=TEMPORARY
            )
    assert time.monotonic() - started < 10


def test_create_state_without_a_final_response_raises(
    client: LauncherClient, fake_server: FakeServer
) -> None:
    fake_server.fake.create_state_events = success_events()[:-1]
    with pytest.raises(LauncherConnectionError, match="without a response"):
        client.model.create_state(model_id="m", name="n", params=[], execution_location=TEMPORARY)


def _state_chunks() -> list[model_pb2.StateDataChunk]:
    return [
        model_pb2.StateDataChunk(key="weights", byte_size=5, data=b"abc"),
        model_pb2.StateDataChunk(data=b"de"),
        model_pb2.StateDataChunk(key="a/b", byte_size=0),
        model_pb2.StateDataChunk(key="..", byte_size=1, data=b"z"),
    ]


def test_get_model_state_returns_each_keys_bytes(
    client: LauncherClient, fake_server: FakeServer
) -> None:
    fake_server.fake.state_chunks = _state_chunks()
    response = client.model.get_model_state(model_id="m", state_id="s", keys=["weights"])
    assert response == {
        "result": {
            "data": [
                {"key": "weights", "data": b"abcde"},
                {"key": "a/b", "data": b""},
                {"key": "..", "data": b"z"},
            ]
        }
    }
    request = fake_server.fake.last("GetModelState")
    assert (request.state_id, list(request.keys)) == ("s", ["weights"])


def test_download_state_writes_one_file_per_key_with_safe_names(
    client: LauncherClient, fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.fake.state_chunks = _state_chunks()
    out = tmp_path / "out"
    response = client.model.download_state(model_id="m", to_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["%2E.", "a%2Fb", "weights"]
    assert (out / "weights").read_bytes() == b"abcde"
    assert response["result"]["data"][0] == {
        "key": "weights",
        "path": str(out / "weights"),
        "byteSize": 5,
    }


def test_download_state_leaves_no_file_when_the_stream_fails(
    client: LauncherClient, fake_server: FakeServer, tmp_path: Path
) -> None:
    error = model_pb2.StateDataChunk(error=common_pb2.Error(code="state_key_not_found"))
    fake_server.fake.state_chunks = [_state_chunks()[0], error]
    response = client.model.download_state(model_id="m", to_dir=tmp_path / "out")
    assert response == {"error": {"code": "state_key_not_found"}}
    assert list((tmp_path / "out").iterdir()) == []


def test_truncated_state_key_raises(client: LauncherClient, fake_server: FakeServer) -> None:
    fake_server.fake.state_chunks = [model_pb2.StateDataChunk(key="k", byte_size=9, data=b"x")]
    with pytest.raises(LauncherConnectionError, match="1 of 9 bytes"):
        client.model.get_model_state(model_id="m")


def test_upload_state_streams_bytes_and_files(
    client: LauncherClient, fake_server: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * (MiB + 3))
    response = client.model.upload_state(
        model_id="m", name="up", data=[{"key": "a", "data": b"hi"}, {"key": "w", "data": path}]
    )
    assert response == {"result": {"stateId": "s-up"}}
    received = fake_server.fake.last("UploadState")
    assert [(k.key, k.byte_size) for k in received["header"].keys] == [("a", 2), ("w", MiB + 3)]
    assert received["data"] == b"hi" + b"x" * (MiB + 3)


def test_error_outcomes_are_values(client: LauncherClient) -> None:
    response = client.model.set_active_model_state(model_id="m", state_id="s")
    assert response == {"error": {"code": "state_not_found"}}


def test_add_entries_sends_each_keys_serialized_tensors(
    client: LauncherClient, fake_server: FakeServer
) -> None:
    rows = [numpy.array([1.0, 2.0]), numpy.array([3.0, 4.0])]
    response = client.dataset.add_entries(dataset_id="d", keys=[{"key": "x", "data": rows}])
    assert response == {"result": {"datasetVersionId": "v-2"}}
    received = fake_server.fake.last("AddEntries")
    assert received["header"].dataset_id == "d"
    assert received["data"] == tensor.serialize_many(rows)
    assert received["header"].keys[0].byte_size == len(received["data"])


def test_get_entries_decodes_tensors_grouped_by_key(
    client: LauncherClient, fake_server: FakeServer
) -> None:
    chunk = dataset_pb2.GetEntriesChunk
    fake_server.fake.entry_chunks = [
        chunk(key="x", index=3, data=tensor.serialize(numpy.float32(1.5))),
        chunk(key="y", index=3, data=tensor.serialize("hi")),
        chunk(key="x", index=4, data=tensor.serialize(numpy.float32(2.5))),
    ]
    response = client.dataset.get_entries(dataset_id="d", entries={"start": 3, "end": 5})
    keys = response["result"]["keys"]
    assert [k["name"] for k in keys] == ["x", "y"]
    assert [(e["index"], e["data"].item()) for e in keys[0]["data"]] == [(3, 1.5), (4, 2.5)]
    assert keys[1]["data"][0]["data"].type() == "string"
    request = fake_server.fake.last("GetEntries")
    assert (request.entries.range.start, request.entries.range.end) == (3, 5)


def test_get_entries_refuses_an_invalid_tensor_from_the_server(
    client: LauncherClient, fake_server: FakeServer
) -> None:
    fake_server.fake.entry_chunks = [dataset_pb2.GetEntriesChunk(key="x", data=b"\x63\x00")]
    with pytest.raises(LauncherConnectionError, match="invalid tensor"):
        client.dataset.get_entries(dataset_id="d", entries=[0])


def test_get_sysinfo_sends_seconds_and_returns_milliseconds(
    client: LauncherClient, fake_server: FakeServer
) -> None:
    sample = persistent_launcher_pb2.SysinfoSample(timestamp=1700000000250, cpus=0.5, memory=10)
    fake_server.fake.sysinfo.result.sysinfo.append(sample)
    response = client.persistent_launcher.get_sysinfo(
        persistent_launcher_id="p", from_timestamp=1700000000000
    )
    assert response["result"]["sysinfo"] == [
        {"timestamp": 1700000000250, "cpus": 0.5, "memory": 10, "disk": 0}
    ]
    assert fake_server.fake.last("GetSysinfo").from_timestamp == 1700000000000


def test_tls_client_against_a_plaintext_server_raises_connection_error(
    fake_server: FakeServer,
) -> None:
    with LauncherClient(fake_server.address, tls=True, timeout=10) as client:
        with pytest.raises(LauncherConnectionError):
            client.model.get_models()


def test_an_empty_address_is_refused() -> None:
    with pytest.raises(ValueError, match="address"):
        LauncherClient("  ")


def test_create_state_reads_past_the_response_and_yields_it_last(
    client: LauncherClient, fake_server: FakeServer
) -> None:
    extra = model_pb2.CreateStateEvent(phase=model_pb2.PhaseEvent(phase="late", state_id="s-1"))
    fake_server.fake.create_state_events = [*success_events(), extra]
    items = list(
        client.model.create_state_stream(
            model_id="m", name="n", params=[], execution_location=TEMPORARY
        )
    )
    assert len(items) == 7 and "result" in items[-1]
