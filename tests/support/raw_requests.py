"""Raw CreateState request messages, sent over gRPC without the client."""

from __future__ import annotations

import grpc
import numpy as np

from launcher.v1 import common_pb2, model_pb2, model_pb2_grpc
from runtime.tensor import serialize
from tests.support.launcher_proc import LauncherProcess

GOOD_SPEC = common_pb2.LauncherSpec(cpus=1, memory_mebibytes=512)


def header(**overrides: object) -> model_pb2.CreateStateHeader:
    fields: dict[str, object] = {
        "model_id": "echo",
        "name": "n",
        "execution_location": model_pb2.ExecutionLocation(temporary_launcher_spec=GOOD_SPEC),
    }
    fields.update(overrides)
    return model_pb2.CreateStateHeader(**fields)


def inline(name: str, data: bytes) -> model_pb2.Param:
    return model_pb2.Param(name=name, inline=model_pb2.InlineParam(byte_size=len(data)))


def call(launcher: LauncherProcess, messages: list[model_pb2.CreateStateRequest]) -> dict:
    with grpc.insecure_channel(launcher.address) as channel:
        stub = model_pb2_grpc.ModelStub(channel)
        events = list(stub.CreateState(iter(messages), timeout=60))
    assert len(events) == 1, events
    response = events[0].response
    assert response.WhichOneof("outcome") == "error", response
    err = response.error
    return {"code": err.code, "parameterName": err.parameter_name, "reason": err.reason}


def req_header(h: model_pb2.CreateStateHeader) -> model_pb2.CreateStateRequest:
    return model_pb2.CreateStateRequest(header=h)


def req_chunk(index: int, data: bytes) -> model_pb2.CreateStateRequest:
    return model_pb2.CreateStateRequest(chunk=model_pb2.ParamChunk(param_index=index, data=data))


GOOD = serialize(np.arange(4, dtype=np.float32))
