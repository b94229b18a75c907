"""``client.model``: the Model service's methods, named and shaped as on the platform."""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, overload

import grpc

from launcher.client import responses as resp
from launcher.client.call import (
    Caller,
    LauncherConnectionError,
    StatusAnswer,
    answering,
    refused,
)
from launcher.client.requests import (
    filter_ids,
    location_to_proto,
    mounts_to_proto,
    need_dict,
    need_str,
    page,
    str_list,
)
from launcher.client.state import FileSink, MemorySink, read_state
from launcher.client.stream import (
    Payload,
    build_params,
    bytes_payload,
    create_state_requests,
    create_state_wire,
    keyed_payloads,
    upload_state_requests,
)
from launcher.errors import RequestError
from launcher.v1 import model_pb2, model_pb2_grpc

CREATE_STATE_METHOD = "/launcher.v1.Model/CreateState"
#: Requests of at most this many inline bytes go in one message (``CreateStateUnary``).
UNARY_MAX_BYTES = 256 * 1024


class ModelApi:
    """Model methods; each returns ``{"result": ...}`` or ``{"error": {...}}``."""

    def __init__(
        self, stub: model_pb2_grpc.ModelStub, caller: Caller, channel: grpc.Channel | None = None
    ) -> None:
        self._stub = stub
        self._call = caller
        # CreateState without a request serializer: the client sends its chunk messages
        # already serialized (``create_state_wire``), one copy of the data instead of three.
        self._create_state_wire = (
            channel.stream_stream(
                CREATE_STATE_METHOD,
                request_serializer=None,
                response_deserializer=model_pb2.CreateStateEvent.FromString,
            )
            if channel is not None
            else None
        )

    def create_state(
        self,
        model_id: str,
        name: str,
        params: list[dict[str, Any]],
        execution_location: dict[str, Any],
        mount_models: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Run ``createModelState`` on the model and return the seed's response. A request
        of at most ``UNARY_MAX_BYTES`` inline bytes goes in one message and the answer comes
        in one (``CreateStateUnary``: no phase events to send or read); larger ones stream."""
        try:
            header, inline = _create_state_header(
                model_id, name, params, execution_location, mount_models
            )
        except RequestError as err:
            return refused(err)
        if sum(payload.size for _, payload in inline) > UNARY_MAX_BYTES:
            # The phase events are few; only the final response is kept.
            return collections.deque(self._events(header, inline, False), maxlen=1)[0]
        try:
            messages = create_state_requests(header, inline)
            next(messages)  # the header
            chunks = [m.chunk for m in messages]
        except RequestError as err:
            return refused(err)
        request = model_pb2.CreateStateUnaryRequest(header=header, chunks=chunks)
        answer = self._call.unary(self._stub.CreateStateUnary, request)
        if isinstance(answer, dict):
            return answer
        return resp.create_state_response(answer)

    def create_state_stream(
        self,
        model_id: str,
        name: str,
        params: list[dict[str, Any]],
        execution_location: dict[str, Any],
        mount_models: list[dict[str, Any]] | None = None,
        accepted: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Phase events as they happen (``{"event", "phase", "stateId", "duration"?}``), then
        the seed's response as the last item. With ``accepted``, first
        ``{"event": "accepted", "stateId"}`` as soon as the launcher has accepted the job (so
        that a caller whose connection drops still has the id to wait for or read logs of)."""
        try:
            header, inline = _create_state_header(
                model_id, name, params, execution_location, mount_models
            )
        except RequestError as err:
            yield refused(err)
            return
        yield from self._events(header, inline, accepted)

    def _events(
        self,
        header: model_pb2.CreateStateHeader,
        inline: list[tuple[int, Payload]],
        accepted: bool,
    ) -> Iterator[dict[str, Any]]:
        method: Any = self._create_state_wire
        requests: Iterator[Any]
        if method is not None:
            requests = create_state_wire(header, inline)
        else:
            method, requests = self._stub.CreateState, create_state_requests(header, inline)
        answered = False
        try:
            # Read to the stream's end, after the response too, so that the call ends cleanly.
            for event in self._call.stream(method, requests):
                kind = event.WhichOneof("event")
                if answered:
                    continue
                if kind == "accepted_state_id" and accepted:
                    yield {"event": "accepted", "stateId": event.accepted_state_id}
                elif kind == "phase":
                    yield resp.phase_event(event.phase)
                elif kind == "response":
                    answered = True
                    yield resp.create_state_response(event.response)
        except StatusAnswer as answer:
            if not answered:
                yield answer.answer
            return
        except LauncherConnectionError:
            if not answered:
                raise
            return  # the answer arrived; trouble after it changes nothing
        if not answered:
            raise LauncherConnectionError(
                "the launcher ended the createState stream without a response"
            )

    @answering
    def cancel_create_state(self, model_id: str, state_id: str) -> dict[str, Any]:
        return resp.outcome(
            self._call.unary(self._stub.CancelCreateState, _state_ref(model_id, state_id)),
            resp.empty,
        )

    @answering
    def get_creating_states(self, model_id: str) -> dict[str, Any]:
        request = model_pb2.ModelRef(model_id=need_str(model_id, "modelId"))
        response = self._call.unary(self._stub.GetCreatingStates, request)
        return resp.outcome(response, resp.creating_states)

    @answering
    def wait_for_state_to_be_created(self, model_id: str, state_id: str) -> dict[str, Any]:
        """Block until the job of ``state_id`` ends; the same response as ``create_state``."""
        response = self._call.unary(
            self._stub.WaitForStateToBeCreated, _state_ref(model_id, state_id)
        )
        return resp.create_state_response(response)

    @answering
    def get_models(
        self, offset: int = 0, limit: int = 20, filter: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        flt = filter_ids(filter, ("ids", "names", "searchName"))
        first, count = page(offset, limit)
        request = model_pb2.GetModelsRequest(
            offset=first,
            limit=count,
            ids=str_list(flt.get("ids", []), "filter.ids"),
            names=str_list(flt.get("names", []), "filter.names"),
        )
        if flt.get("searchName") is not None:
            request.search_name = need_str(flt["searchName"], "filter.searchName")
        return resp.outcome(self._call.unary(self._stub.GetModels, request), resp.models)

    @answering
    def get_model_state(
        self, model_id: str, state_id: str | None = None, keys: list[str] | None = None
    ) -> dict[str, Any]:
        """All (or the named) keys of a state (default: the active one), as bytes in memory."""
        request = _state_request(model_id, state_id, keys)
        sink = MemorySink()
        error = read_state(self._call.stream(self._stub.GetModelState, request), sink)
        return error or {"result": {"data": sink.data}}

    @answering
    def download_state(
        self,
        model_id: str,
        to_dir: str | os.PathLike[str],
        state_id: str | None = None,
        keys: list[str] | None = None,
    ) -> dict[str, Any]:
        """Like ``get_model_state`` but each key streams into a file of ``to_dir`` (created if
        missing); returns ``{"result": {"data": [{"key", "path", "byteSize"}]}}``. Keys are
        percent-encoded into file names. On an error no file of this call remains."""
        request = _state_request(model_id, state_id, keys)
        directory = Path(to_dir)
        directory.mkdir(parents=True, exist_ok=True)
        sink = FileSink(directory)
        try:
            error = read_state(self._call.stream(self._stub.GetModelState, request), sink)
        except BaseException:
            sink.discard()
            raise
        if error:
            sink.discard()
            return error
        return {"result": {"data": sink.data}}

    @answering
    def upload_state(
        self,
        model_id: str,
        name: str,
        data: list[dict[str, Any]],
        delete_states: list[str] | None = None,
        mount_models: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Store a state from ``[{"key", "data": bytes | path}]``; files are streamed."""
        keys = keyed_payloads(data, "data", bytes_payload)
        header = model_pb2.UploadStateHeader(
            model_id=need_str(model_id, "modelId"),
            name=need_str(name, "name"),
            keys=[model_pb2.StateKeyInfo(key=k, byte_size=p.size) for k, p in keys],
            delete_states=str_list(delete_states or [], "deleteStates"),
            mount_models=mounts_to_proto(mount_models),
        )
        response = self._call.unary(self._stub.UploadState, upload_state_requests(header, keys))
        return resp.outcome(response, lambda r: {"stateId": r.state_id})

    @answering
    def update_model_state(
        self, model_id: str, state_id: str, properties: dict[str, Any]
    ) -> dict[str, Any]:
        props = need_dict(properties, "properties")
        request = model_pb2.UpdateModelStateRequest(
            model_id=need_str(model_id, "modelId"), state_id=need_str(state_id, "stateId")
        )
        if props.get("name") is not None:
            request.name = need_str(props["name"], "properties.name")
        return resp.outcome(self._call.unary(self._stub.UpdateModelState, request), resp.empty)

    @answering
    def set_active_model_state(self, model_id: str, state_id: str) -> dict[str, Any]:
        request = _state_ref(model_id, state_id)
        return resp.outcome(self._call.unary(self._stub.SetActiveModelState, request), resp.empty)

    @answering
    def delete_model_state(self, model_id: str, state_id: str) -> dict[str, Any]:
        request = _state_ref(model_id, state_id)
        return resp.outcome(self._call.unary(self._stub.DeleteModelState, request), resp.empty)

    @answering
    def snapshot_model(self, model_id: str, name: str) -> dict[str, Any]:
        request = model_pb2.SnapshotModelRequest(
            model_id=need_str(model_id, "modelId"), name=need_str(name, "name")
        )
        response = self._call.unary(self._stub.SnapshotModel, request)
        return resp.outcome(response, lambda r: {"snapshotId": r.snapshot_id})

    @overload
    def get_state_logs(
        self, model_id: str, state_id: str, follow: Literal[False] = False
    ) -> dict[str, Any]: ...

    @overload
    def get_state_logs(
        self, model_id: str, state_id: str, follow: Literal[True]
    ) -> Iterator[dict[str, Any]]: ...

    def get_state_logs(
        self, model_id: str, state_id: str, follow: bool = False
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """The job log of ``state_id`` (the model's stdout/stderr and the launcher's lines):
        ``{"result": {"lines": [{"stream", "timestamp", "text"}...], "truncated": bool}}``.
        With ``follow=True``: an iterator of those lines as they come, until the job ends (a
        refusal comes as its one item, ``{"error": {...}}``)."""
        if follow:
            return self._follow_state_logs(model_id, state_id)
        return self._state_logs(model_id, state_id)

    def _log_request(
        self, model_id: str, state_id: str, follow: bool
    ) -> model_pb2.GetStateLogsRequest:
        return model_pb2.GetStateLogsRequest(
            model_id=need_str(model_id, "modelId"),
            state_id=need_str(state_id, "stateId"),
            follow=follow,
        )

    @answering
    def _state_logs(self, model_id: str, state_id: str) -> dict[str, Any]:
        request = self._log_request(model_id, state_id, False)
        lines: list[dict[str, Any]] = []
        truncated = False
        for chunk in self._call.stream(self._stub.GetStateLogs, request):
            if chunk.HasField("error"):
                return {"error": resp.error_dict(chunk.error)}
            lines.extend(_log_lines(chunk))
            truncated = truncated or chunk.truncated
        return {"result": {"lines": lines, "truncated": truncated}}

    def _follow_state_logs(self, model_id: str, state_id: str) -> Iterator[dict[str, Any]]:
        try:
            request = self._log_request(model_id, state_id, True)
        except RequestError as err:
            yield refused(err)
            return
        try:
            for chunk in self._call.stream(self._stub.GetStateLogs, request):
                if chunk.HasField("error"):
                    yield {"error": resp.error_dict(chunk.error)}
                    return
                yield from _log_lines(chunk)
        except StatusAnswer as answer:
            yield answer.answer

    @answering
    def delete_snapshot(self, model_id: str, snapshot_id: str) -> dict[str, Any]:
        request = model_pb2.SnapshotRef(
            model_id=need_str(model_id, "modelId"), snapshot_id=need_str(snapshot_id, "snapshotId")
        )
        return resp.outcome(self._call.unary(self._stub.DeleteSnapshot, request), resp.empty)


def _create_state_header(
    model_id: object,
    name: object,
    params: object,
    execution_location: object,
    mount_models: object,
) -> tuple[model_pb2.CreateStateHeader, list[tuple[int, Payload]]]:
    """The request's header and its inline payloads; ``RequestError`` for a bad argument."""
    proto_params, inline = build_params(params)
    header = model_pb2.CreateStateHeader(
        model_id=need_str(model_id, "modelId"),
        name=need_str(name, "name"),
        params=proto_params,
        mount_models=mounts_to_proto(mount_models),
        execution_location=location_to_proto(execution_location),
    )
    return header, inline


def _log_lines(chunk: model_pb2.StateLogChunk) -> list[dict[str, Any]]:
    return [{"stream": x.stream, "timestamp": x.timestamp, "text": x.text} for x in chunk.lines]


def _state_ref(model_id: object, state_id: object) -> model_pb2.StateRef:
    return model_pb2.StateRef(
        model_id=need_str(model_id, "modelId"), state_id=need_str(state_id, "stateId")
    )


def _state_request(
    model_id: object, state_id: object, keys: object
) -> model_pb2.GetModelStateRequest:
    request = model_pb2.GetModelStateRequest(
        model_id=need_str(model_id, "modelId"), keys=str_list(keys or [], "keys")
    )
    if state_id is not None:
        request.state_id = need_str(state_id, "stateId")
    return request
