"""Malformed createState requests of every kind: refused with the right code and path, nothing
stored, nothing left behind, and the launcher keeps serving. Sent with the raw gRPC stub, so
that requests the Python client would refuse by itself reach the server."""

from __future__ import annotations

import math
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from launcher.client import LauncherClient
from launcher.v1 import common_pb2, model_pb2, model_pb2_grpc
from runtime.tensor import serialize
from tests.support.launcher_proc import LauncherProcess
from tests.support.raw_requests import GOOD, call, header, inline, req_chunk, req_header
from tests.support.specs import TEMPORARY


def spec(**kw: float) -> model_pb2.ExecutionLocation:
    values = {"cpus": 1.0, "memory_mebibytes": 512}
    values.update(kw)
    return model_pb2.ExecutionLocation(temporary_launcher_spec=common_pb2.LauncherSpec(**values))


CASES: list[tuple[str, list[model_pb2.CreateStateRequest], str]] = [
    ("chunk before header", [req_chunk(0, GOOD)], "header"),
    ("bad model id", [req_header(header(model_id="../etc"))], "modelId"),
    ("empty model id", [req_header(header(model_id=""))], "modelId"),
    ("empty name", [req_header(header(name=""))], "name"),
    ("name too long", [req_header(header(name="x" * 300))], "name"),
    (
        "duplicate param names",
        [req_header(header(params=[inline("a", GOOD), inline("a", GOOD)]))],
        "params[1].name",
    ),
    (
        "param without data",
        [req_header(header(params=[model_pb2.Param(name="a")]))],
        "params[0].data",
    ),
    ("no execution location", [req_header(header(execution_location=None))], "executionLocation"),
    (
        "cpus zero",
        [req_header(header(execution_location=spec(cpus=0)))],
        "executionLocation.spec.cpus",
    ),
    (
        "cpus nan",
        [req_header(header(execution_location=spec(cpus=math.nan)))],
        "executionLocation.spec.cpus",
    ),
    (
        "cpus too many",
        [req_header(header(execution_location=spec(cpus=4096)))],
        "executionLocation.spec.cpus",
    ),
    (
        "memory too small",
        [req_header(header(execution_location=spec(memory_mebibytes=1)))],
        "executionLocation.spec.memoryMebibytes",
    ),
    (
        "memory beyond the machine",
        [req_header(header(execution_location=spec(memory_mebibytes=1 << 40)))],
        "executionLocation.spec.memoryMebibytes",
    ),
    (
        "bad tensor type code",
        [req_header(header(params=[inline("a", b"\x63\x00")])), req_chunk(0, b"\x63\x00")],
        "params[0].data[0]",
    ),
    (
        "truncated tensor",
        [req_header(header(params=[inline("a", GOOD[:-1])])), req_chunk(0, GOOD[:-1])],
        "params[0].data[0]",
    ),
    (
        "fewer bytes than declared",
        [req_header(header(params=[inline("a", GOOD + GOOD)])), req_chunk(0, GOOD)],
        "params[0].data",
    ),
    (
        "more bytes than declared",
        [req_header(header(params=[inline("a", GOOD)])), req_chunk(0, GOOD + GOOD)],
        "params[0].data",
    ),
    (
        "chunk for the wrong param",
        [req_header(header(params=[inline("a", GOOD), inline("b", GOOD)])), req_chunk(1, GOOD)],
        "params[1].data",
    ),
    (
        "second header",
        [req_header(header(params=[inline("a", GOOD)])), req_header(header())],
        "header",
    ),
    (
        "mount with stateId and snapshotId",
        [
            req_header(
                header(
                    mount_models=[
                        model_pb2.MountModel(model_id="hello", state_id="s", snapshot_id="x")
                    ]
                )
            )
        ],
        "mountModels[0]",
    ),
    (
        "model mounting itself",
        [req_header(header(mount_models=[model_pb2.MountModel(model_id="echo")]))],
        "mountModels[0].modelId",
    ),
    (
        "bad dataset id",
        [
            req_header(
                header(
                    params=[
                        model_pb2.Param(
                            name="d",
                            dataset=model_pb2.DatasetParam(dataset_id="../x", dataset_key="k"),
                        )
                    ]
                )
            )
        ],
        "params[0].data.datasetId",
    ),
]


def _state_count(client: LauncherClient) -> int:
    model = client.model.get_models(filter={"ids": ["echo"]})["result"]["models"][0]
    return len(model["states"])


@pytest.mark.parametrize(("what", "messages", "path"), CASES, ids=[c[0] for c in CASES])
def test_malformed_request_is_invalid_parameter_and_nothing_is_kept(
    launcher: LauncherProcess,
    client: LauncherClient,
    what: str,
    messages: list[model_pb2.CreateStateRequest],
    path: str,
) -> None:
    before = _state_count(client)
    err = call(launcher, messages)
    assert err["code"] == "invalid_parameter", err
    assert err["parameterName"] == path
    assert err["reason"], "the reason must say what to do"
    assert _state_count(client) == before
    assert list((launcher.root / "tmp").glob("param-*")) == []


def test_empty_request_stream_is_refused(launcher: LauncherProcess) -> None:
    err = call(launcher, [])
    assert err["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("mount", "code"),
    [
        (model_pb2.MountModel(model_id="no_such_model"), "model_to_mount_not_found"),
        (
            model_pb2.MountModel(model_id="hello", state_id="s-nope"),
            "state_for_model_to_mount_not_found",
        ),
        (
            model_pb2.MountModel(model_id="hello", snapshot_id="snap-nope"),
            "snapshot_for_model_to_mount_not_found",
        ),
    ],
)
def test_mount_errors(launcher: LauncherProcess, mount: model_pb2.MountModel, code: str) -> None:
    err = call(launcher, [req_header(header(mount_models=[mount]))])
    assert err["code"] == code


def test_launcher_keeps_serving_after_malformed_requests(client: LauncherClient) -> None:
    res = client.model.create_state(
        model_id="hello", name="ok", params=[], execution_location=TEMPORARY
    )
    assert "success" in res["result"]


def test_abandoned_upload_leaves_nothing(launcher: LauncherProcess, client: LauncherClient) -> None:
    big = serialize(np.zeros(1 << 20, np.float32))

    def messages() -> Iterator[model_pb2.CreateStateRequest]:
        yield req_header(header(params=[inline("a", big)]))
        yield req_chunk(0, big[: 1 << 20])
        raise RuntimeError("client gives up mid-upload")

    with grpc.insecure_channel(launcher.address) as channel:
        stub = model_pb2_grpc.ModelStub(channel)
        with pytest.raises(grpc.RpcError):
            list(stub.CreateState(messages(), timeout=30))
    res = client.model.create_state(
        model_id="hello", name="ok", params=[], execution_location=TEMPORARY
    )
    assert "success" in res["result"]
    assert list((launcher.root / "tmp").glob("param-*")) == []
