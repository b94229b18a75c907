"""Server reflection answers under grpc.reflection.v1 (current grpcurl) and v1alpha."""

from __future__ import annotations

import tempfile
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from launcher.auth.keys import KeyStore
from launcher.store.db import Database
from launcher.v1 import model_pb2, model_pb2_grpc
from tests.support.launcher_proc import LauncherProcess, running_launcher

V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
SERVICES = {
    "launcher.v1.Model",
    "launcher.v1.Dataset",
    "launcher.v1.PersistentLauncher",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


def _ask(
    address: str, method: str, requests: list[reflection_pb2.ServerReflectionRequest]
) -> list[reflection_pb2.ServerReflectionResponse]:
    # v1 and v1alpha messages are identical on the wire: the v1alpha classes read both.
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            method,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        return list(call(iter(requests), timeout=10))


def _services(address: str, method: str) -> set[str]:
    [answer] = _ask(address, method, [reflection_pb2.ServerReflectionRequest(list_services="")])
    return {s.name for s in answer.list_services_response.service}


def test_services_are_listed_through_v1(launcher: LauncherProcess) -> None:
    assert _services(launcher.address, V1) == SERVICES


def test_services_are_still_listed_through_v1alpha(launcher: LauncherProcess) -> None:
    assert _services(launcher.address, V1ALPHA) == SERVICES


def _file_of(address: str, symbol: str) -> descriptor_pb2.FileDescriptorProto:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    [answer] = _ask(address, V1, [request])
    assert answer.WhichOneof("message_response") == "file_descriptor_response", answer
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answer.file_descriptor_response.file_descriptor_proto
    ]
    return next(f for f in files if any(s.name == symbol.rsplit(".", 1)[1] for s in f.service))


def test_v1_describes_the_launchers_services(launcher: LauncherProcess) -> None:
    model = _file_of(launcher.address, "launcher.v1.Model")
    assert model.package == "launcher.v1"
    methods = {m.name for s in model.service for m in s.method}
    assert {"CreateState", "WaitForStateToBeCreated", "GetModels"} <= methods


def test_v1_describes_itself_in_its_own_package(launcher: LauncherProcess) -> None:
    own = _file_of(launcher.address, "grpc.reflection.v1.ServerReflection")
    assert own.package == "grpc.reflection.v1"
    [method] = own.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def test_an_unknown_symbol_is_an_error_answer_and_the_stream_goes_on(
    launcher: LauncherProcess,
) -> None:
    answers = _ask(
        launcher.address,
        V1,
        [
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Thing"),
            reflection_pb2.ServerReflectionRequest(list_services=""),
        ],
    )
    assert answers[0].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert {s.name for s in answers[1].list_services_response.service} == SERVICES


def test_reflection_v1_stays_open_when_keys_are_required() -> None:
    with tempfile.TemporaryDirectory(prefix="lr-") as folder:
        root = Path(folder)
        db = Database(root / "launcher.db")
        KeyStore(db).create("someone")
        db.close()
        with running_launcher(root) as proc:
            assert _services(proc.address, V1) == SERVICES
            # ... while the launcher's own services need the key.
            with grpc.insecure_channel(proc.address) as channel:
                stub = model_pb2_grpc.ModelStub(channel)
                with pytest.raises(grpc.RpcError) as refused:
                    stub.GetModels(model_pb2.GetModelsRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
