"""``/v0/Model/<method>``: the platform's Model methods on the Model servicer.

Inline createState params and uploaded state keys stream from the request frame into the
servicer's own request stream (the same validated spooling path as gRPC); a state download
streams from disk into the response frame.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from launcher.api.intake import ChunkRequest, ParamChunkView
from launcher.client import responses as resp
from launcher.client.requests import (
    filter_ids,
    location_to_proto,
    mounts_to_proto,
    need_dict,
    need_list,
    need_str,
    page,
    str_list,
)
from launcher.errors import RequestError, invalid
from launcher.http import platform
from launcher.http.call import Blob, Call, Handler, Reply, answer, ok, refused
from launcher.v1 import common_pb2, model_pb2

MODEL = "Model"


def _field(call: Call, name: str) -> str:
    return need_str(call.params.get(name), name)


def _state_ref(call: Call) -> model_pb2.StateRef:
    return model_pb2.StateRef(model_id=_field(call, "modelId"), state_id=_field(call, "stateId"))


def _empty(response: common_pb2.EmptyResponse) -> Reply:
    return answer(resp.outcome(response, resp.empty), lambda r: r)


def _params(call: Call) -> list[model_pb2.Param]:
    """The header's params; the k-th param without ``data`` takes the k-th blob."""
    out = []
    for i, item in enumerate(need_list(call.params.get("params", []), "params")):
        param = need_dict(item, f"params[{i}]")
        name = need_str(param.get("name"), f"params[{i}].name")
        data = param.get("data")
        if data is None:
            out.append(model_pb2.Param(name=name, inline=model_pb2.InlineParam()))
            continue
        source = need_dict(data, f"params[{i}].data")
        if source.get("type") != "dataset":
            raise invalid(
                f"params[{i}].data",
                'an inline param sends its data as a blob; give {"type": "dataset", '
                '"datasetId", "datasetKey"} or leave data out',
            )
        out.append(
            model_pb2.Param(
                name=name,
                dataset=model_pb2.DatasetParam(
                    dataset_id=need_str(source.get("datasetId"), f"params[{i}].data.datasetId"),
                    dataset_key=need_str(source.get("datasetKey"), f"params[{i}].data.datasetKey"),
                ),
            )
        )
    inline = [p for p in out if p.WhichOneof("data") == "inline"]
    blobs = call.frame.blob_lengths
    if len(inline) != len(blobs):
        raise invalid(
            "params",
            f"{len(inline)} inline params (params without data) but {len(blobs)} blobs; each "
            "inline param sends its tensors as one blob, in order",
        )
    for param, length in zip(inline, blobs, strict=True):
        param.inline.byte_size = length
    return out


async def _create_state_requests(
    call: Call, header: model_pb2.CreateStateHeader
) -> AsyncIterator[model_pb2.CreateStateRequest | ChunkRequest]:
    """The header, then each inline param's blob as the chunk messages the gRPC server's
    parser gives the intake (``ChunkRequest``): views of the frame's reused buffers, no
    protobuf message built and read back. The intake is done with a chunk's bytes (its
    write has ended) before it asks for the one after next, so two buffers take turns."""
    yield model_pb2.CreateStateRequest(header=header)
    blob = 0
    for index, param in enumerate(header.params):
        if param.WhichOneof("data") != "inline":
            continue
        async for view in call.frame.views(blob):
            yield ChunkRequest(ParamChunkView(index, view))
        blob += 1


async def create_state(call: Call) -> Reply:
    header = model_pb2.CreateStateHeader(
        model_id=_field(call, "modelId"),
        name=_field(call, "name"),
        params=_params(call),
        mount_models=mounts_to_proto(call.params.get("mountModels")),
        execution_location=location_to_proto(call.params.get("executionLocation")),
    )
    events = call.bridge.stream_both(
        MODEL, "CreateState", _create_state_requests(call, header), call.bearer
    )
    async for event in events:
        if event.WhichOneof("event") == "response":
            return Reply(platform.create_state(resp.create_state_response(event.response)))
    return refused(RequestError("unknown", reason="createState ended without an answer"))


async def wait_for_state_to_be_created(call: Call) -> Reply:
    response = await call.bridge.unary(
        MODEL, "WaitForStateToBeCreated", _state_ref(call), call.bearer
    )
    return Reply(platform.create_state(resp.create_state_response(response)))


async def cancel_create_state(call: Call) -> Reply:
    return _empty(
        await call.bridge.unary(MODEL, "CancelCreateState", _state_ref(call), call.bearer)
    )


async def get_creating_states(call: Call) -> Reply:
    request = model_pb2.ModelRef(model_id=_field(call, "modelId"))
    response = await call.bridge.unary(MODEL, "GetCreatingStates", request, call.bearer)
    return answer(resp.outcome(response, resp.creating_states), lambda r: r)


async def get_models(call: Call) -> Reply:
    offset, limit = page(call.params.get("offset", 0), call.params.get("limit", 20))
    flt = filter_ids(
        call.params.get("filter"), ("ids", "names", "searchName", "owners", "teams", "tags")
    )
    request = model_pb2.GetModelsRequest(offset=offset, limit=limit)
    if flt.get("ids") is not None:
        request.ids.extend(str_list(flt["ids"], "filter.ids"))
    if flt.get("names") is not None:
        request.names.extend(str_list(flt["names"], "filter.names"))
    if flt.get("searchName") is not None:
        request.search_name = need_str(flt["searchName"], "filter.searchName")
    response = await call.bridge.unary(MODEL, "GetModels", request, call.bearer)
    listed = resp.outcome(response, resp.models)
    ids = [m["id"] for m in listed["result"]["models"]] if "result" in listed else []
    configs = await call.services.models.aload_many(ids)
    return answer(
        listed, lambda r: platform.paged(r, "models", lambda m: platform.model(m, configs[m["id"]]))
    )


async def get_model_state(call: Call) -> Reply:
    request = model_pb2.GetModelStateRequest(model_id=_field(call, "modelId"))
    if call.params.get("stateId") is not None:
        request.state_id = _field(call, "stateId")
    if call.params.get("keys") is not None:
        request.keys.extend(str_list(call.params["keys"], "keys"))
    else:
        names = await _key_names(call, request)
        if names is not None:
            request.keys.extend(names)
    chunks = call.bridge.stream_out(MODEL, "GetModelState", request, call.bearer)
    first = await anext(chunks, None)
    if first is not None and first.HasField("error"):
        await chunks.aclose()
        return Reply({"error": resp.error_dict(first.error)})
    reply = ok({"stateKeyNames": list(request.keys)})
    reply.blobs = _state_blobs(first, chunks)
    reply.cleanup.append(chunks.aclose)
    return reply


async def _key_names(call: Call, request: model_pb2.GetModelStateRequest) -> list[str] | None:
    """The state's key names, in the order the download sends them; the state is pinned by id
    so the names and the bytes are of the same state. None: let the servicer answer why not."""
    lookup = model_pb2.GetModelsRequest(ids=[request.model_id], limit=1)
    response = await call.bridge.unary(MODEL, "GetModels", lookup, call.bearer)
    if response.WhichOneof("outcome") != "result" or not response.result.models:
        return None
    info = response.result.models[0]
    wanted = request.state_id if request.HasField("state_id") else info.active_state
    for state in info.states:
        if state.id == wanted:
            request.state_id = state.id
            return [k.key for k in state.keys]
    return None


async def _state_blobs(
    first: model_pb2.StateDataChunk | None, chunks: AsyncIterator[model_pb2.StateDataChunk]
) -> AsyncIterator[Blob]:
    pending = first
    while pending is not None:
        if pending.HasField("error"):
            raise RuntimeError(f"getModelState failed mid-stream: {pending.error.code}")
        head, pending = pending, None  # set again by pieces() when another key follows

        async def pieces(head: model_pb2.StateDataChunk = head) -> AsyncIterator[bytes]:
            nonlocal pending
            if head.data:
                yield head.data
            async for chunk in chunks:
                if chunk.key or chunk.HasField("error"):
                    pending = chunk
                    return
                yield chunk.data

        yield head.byte_size, pieces()


async def _upload_requests(
    call: Call, header: model_pb2.UploadStateHeader
) -> AsyncIterator[model_pb2.UploadStateRequest]:
    yield model_pb2.UploadStateRequest(header=header)
    for index in range(len(header.keys)):
        async for piece in call.frame.pieces(index):
            yield model_pb2.UploadStateRequest(chunk=piece)


async def upload_state(call: Call) -> Reply:
    if "stateKeyNames" not in call.params:
        raise invalid("stateKeyNames", "required field is missing (one name per blob)")
    names = str_list(call.params["stateKeyNames"], "stateKeyNames")
    lengths = call.frame.blob_lengths
    if len(names) != len(lengths):
        raise invalid("stateKeyNames", f"{len(names)} names but {len(lengths)} blobs")
    header = model_pb2.UploadStateHeader(
        model_id=_field(call, "modelId"),
        name=_field(call, "name"),
        keys=[
            model_pb2.StateKeyInfo(key=k, byte_size=n) for k, n in zip(names, lengths, strict=True)
        ],
        delete_states=str_list(call.params.get("deleteStates") or [], "deleteStates"),
        mount_models=mounts_to_proto(call.params.get("mountModels")),
    )
    response = await call.bridge.stream_in(
        MODEL, "UploadState", _upload_requests(call, header), call.bearer
    )
    return answer(resp.outcome(response, lambda r: {"stateId": r.state_id}), lambda r: r)


async def update_model_state(call: Call) -> Reply:
    request = model_pb2.UpdateModelStateRequest(
        model_id=_field(call, "modelId"), state_id=_field(call, "stateId")
    )
    properties = need_dict(call.params.get("properties", {}), "properties")
    if properties.get("name") is not None:
        request.name = need_str(properties["name"], "properties.name")
    return _empty(await call.bridge.unary(MODEL, "UpdateModelState", request, call.bearer))


async def set_active_model_state(call: Call) -> Reply:
    return _empty(
        await call.bridge.unary(MODEL, "SetActiveModelState", _state_ref(call), call.bearer)
    )


async def delete_model_state(call: Call) -> Reply:
    return _empty(await call.bridge.unary(MODEL, "DeleteModelState", _state_ref(call), call.bearer))


async def snapshot_model(call: Call) -> Reply:
    request = model_pb2.SnapshotModelRequest(
        model_id=_field(call, "modelId"), name=_field(call, "name")
    )
    response = await call.bridge.unary(MODEL, "SnapshotModel", request, call.bearer)
    return answer(resp.outcome(response, lambda r: {"snapshotId": r.snapshot_id}), lambda r: r)


async def delete_snapshot(call: Call) -> Reply:
    request = model_pb2.SnapshotRef(
        model_id=_field(call, "modelId"), snapshot_id=_field(call, "snapshotId")
    )
    return _empty(await call.bridge.unary(MODEL, "DeleteSnapshot", request, call.bearer))


async def get_state_logs(call: Call) -> Reply:
    """This project's ``Model/getStateLogs`` (not the platform's): a job's log at once
    (following it is served on gRPC, ``GetStateLogs`` with ``follow``)."""
    if call.params.get("follow") not in (None, False):
        raise invalid("follow", "following a job's log is served on gRPC (GetStateLogs)")
    request = model_pb2.GetStateLogsRequest(
        model_id=_field(call, "modelId"), state_id=_field(call, "stateId")
    )
    lines: list[dict[str, object]] = []
    truncated = False
    async for chunk in call.bridge.stream_out(MODEL, "GetStateLogs", request, call.bearer):
        if chunk.HasField("error"):
            return Reply({"error": resp.error_dict(chunk.error)})
        lines.extend(
            {"stream": x.stream, "timestamp": x.timestamp, "text": x.text} for x in chunk.lines
        )
        truncated = truncated or chunk.truncated
    return ok({"lines": lines, "truncated": truncated})


METHODS: dict[str, Handler] = {
    "createState": create_state,
    "cancelCreateState": cancel_create_state,
    "getCreatingStates": get_creating_states,
    "waitForStateToBeCreated": wait_for_state_to_be_created,
    "getModels": get_models,
    "getModelState": get_model_state,
    "uploadState": upload_state,
    "updateModelState": update_model_state,
    "setActiveModelState": set_active_model_state,
    "setCurrentModelState": set_active_model_state,
    "deleteModelState": delete_model_state,
    "snapshotModel": snapshot_model,
    "deleteSnapshot": delete_snapshot,
    "getStateLogs": get_state_logs,
}
