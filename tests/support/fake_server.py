"""A test double of the launcher's gRPC services, for client and CLI tests."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from launcher.v1 import (
    common_pb2,
    dataset_pb2,
    dataset_pb2_grpc,
    model_pb2,
    model_pb2_grpc,
    persistent_launcher_pb2,
    persistent_launcher_pb2_grpc,
)

MiB = 1 << 20


def success_events(state_id: str = "s-1") -> list[model_pb2.CreateStateEvent]:
    """A typical job on a temporary launcher: accepted, three phases, success."""
    events = [model_pb2.CreateStateEvent(accepted_state_id=state_id)]
    for phase, ms in (("createLauncher", 12), ("codeStartup", 100), ("createState", 50)):
        events.append(
            model_pb2.CreateStateEvent(phase=model_pb2.PhaseEvent(phase=phase, state_id=state_id))
        )
        events.append(
            model_pb2.CreateStateEvent(
                phase=model_pb2.PhaseEvent(
                    finished=True, phase=phase, state_id=state_id, duration=ms
                )
            )
        )
    durations = model_pb2.Durations(
        total=210, create_launcher=12, code_startup=100, create_state=50
    )
    success = model_pb2.CreateStateSuccess(durations=durations, state_id=state_id)
    response = model_pb2.CreateStateResponse(result=model_pb2.CreateStateResult(success=success))
    events.append(model_pb2.CreateStateEvent(response=response))
    return events


class FakeLauncher(
    model_pb2_grpc.ModelServicer,
    dataset_pb2_grpc.DatasetServicer,
    persistent_launcher_pb2_grpc.PersistentLauncherServicer,
):
    """Canned answers; every request and its metadata is recorded in ``received``."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.metadata: list[dict[str, str]] = []
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.create_state_events = success_events()
        self.state_chunks: list[model_pb2.StateDataChunk] = []
        self.entry_chunks: list[dataset_pb2.GetEntriesChunk] = []
        self.models = model_pb2.GetModelsResponse(result=model_pb2.GetModelsResponse.Result())
        self.sysinfo = persistent_launcher_pb2.GetSysinfoResponse(
            result=persistent_launcher_pb2.GetSysinfoResponse.Result()
        )

    def _record(self, name: str, request: Any, context: grpc.ServicerContext) -> None:
        self.metadata.append(dict(context.invocation_metadata()))  # type: ignore[arg-type]
        self.received.append((name, request))
        if self.abort is not None:
            context.abort(*self.abort)

    def CreateState(
        self, request_iterator: Iterator[model_pb2.CreateStateRequest], context: Any
    ) -> Iterator[model_pb2.CreateStateEvent]:
        messages = iter(request_iterator)
        header = next(messages).header
        chunks: list[tuple[int, int]] = []  # (param index, chunk size): no data kept
        data: dict[int, bytearray] = {}
        for message in messages:
            chunks.append((message.chunk.param_index, len(message.chunk.data)))
            if sum(size for _, size in chunks) <= 8 * MiB:
                data.setdefault(message.chunk.param_index, bytearray()).extend(message.chunk.data)
        self._record("CreateState", {"header": header, "chunks": chunks, "data": data}, context)
        yield from self.create_state_events

    def CreateStateUnary(
        self, request: model_pb2.CreateStateUnaryRequest, context: Any
    ) -> model_pb2.CreateStateResponse:
        """The one-message form: recorded as "CreateState" too (same header and chunks);
        answers the response of ``create_state_events``."""
        messages = [model_pb2.CreateStateRequest(header=request.header)]
        messages += [model_pb2.CreateStateRequest(chunk=chunk) for chunk in request.chunks]
        events = list(self.CreateState(messages, context))
        responses = [e.response for e in events if e.WhichOneof("event") == "response"]
        if not responses:
            reason = "the fake's createState ended without a response"
            context.abort(grpc.StatusCode.UNAVAILABLE, reason)
        return responses[-1]

    def GetModels(self, request: Any, context: Any) -> model_pb2.GetModelsResponse:
        self._record("GetModels", request, context)
        return self.models

    def GetModelState(self, request: Any, context: Any) -> Iterator[model_pb2.StateDataChunk]:
        self._record("GetModelState", request, context)
        yield from self.state_chunks

    def UploadState(self, request_iterator: Any, context: Any) -> model_pb2.UploadStateResponse:
        messages = iter(request_iterator)
        header = next(messages).header
        data = b"".join(message.chunk for message in messages)
        self._record("UploadState", {"header": header, "data": data}, context)
        return model_pb2.UploadStateResponse(
            result=model_pb2.UploadStateResponse.Result(state_id="s-up")
        )

    def SetActiveModelState(self, request: Any, context: Any) -> common_pb2.EmptyResponse:
        self._record("SetActiveModelState", request, context)
        error = common_pb2.Error(code="state_not_found")
        return common_pb2.EmptyResponse(error=error)

    def AddEntries(self, request_iterator: Any, context: Any) -> dataset_pb2.AddEntriesResponse:
        messages = iter(request_iterator)
        header = next(messages).header
        data = b"".join(message.chunk for message in messages)
        self._record("AddEntries", {"header": header, "data": data}, context)
        result = dataset_pb2.AddEntriesResponse.Result(dataset_version_id="v-2")
        return dataset_pb2.AddEntriesResponse(result=result)

    def GetEntries(self, request: Any, context: Any) -> Iterator[dataset_pb2.GetEntriesChunk]:
        self._record("GetEntries", request, context)
        yield from self.entry_chunks

    def GetSysinfo(self, request: Any, context: Any) -> persistent_launcher_pb2.GetSysinfoResponse:
        self._record("GetSysinfo", request, context)
        return self.sysinfo

    def last(self, name: str) -> Any:
        return [request for method, request in self.received if method == name][-1]


class FakeServer:
    """A FakeLauncher served on ``unix:<tmp>/fake.sock`` by a real grpc server."""

    def __init__(self, directory: Path) -> None:
        self.fake = FakeLauncher()
        self.address = f"unix:{directory / 'fake.sock'}"
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        model_pb2_grpc.add_ModelServicer_to_server(self.fake, self.server)
        dataset_pb2_grpc.add_DatasetServicer_to_server(self.fake, self.server)
        persistent_launcher_pb2_grpc.add_PersistentLauncherServicer_to_server(
            self.fake, self.server
        )
        self.server.add_insecure_port(self.address)
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)
