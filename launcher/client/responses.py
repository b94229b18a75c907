"""Client-side response reading: proto messages to the seed's camelCase dicts.

Durations are integer milliseconds and timestamps integer Unix milliseconds, on the wire and
in the dicts, as the platform returns them. Optional proto fields appear in a dict only when
set. Phase names come from ``launcher.outcomes.Phase`` (the one table of them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from launcher.outcomes import Phase
from launcher.v1 import common_pb2, dataset_pb2, model_pb2, persistent_launcher_pb2

_ERROR_FIELDS = (
    ("parameter_name", "parameterName"),
    ("reason", "reason"),
    ("dataset_id", "datasetId"),
    ("dataset_key", "datasetKey"),
)


def error_dict(err: common_pb2.Error) -> dict[str, Any]:
    out: dict[str, Any] = {"code": err.code}
    for field, key in _ERROR_FIELDS:
        value = getattr(err, field)
        if value:
            out[key] = value
    return out


def outcome(response: Any, result: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``{"error"}`` or ``{"result": result(response.result)}`` of a oneof ``outcome``."""
    if not isinstance(response, Message):
        return response  # type: ignore[no-any-return]  # already an answer (auth status)
    if response.WhichOneof("outcome") == "error":
        return {"error": error_dict(response.error)}
    return {"result": result(response.result)}


def empty(_: Any) -> dict[str, Any]:
    return {}


def durations(msg: model_pb2.Durations) -> dict[str, int]:
    out = {"total": msg.total}
    for phase in Phase:
        if msg.HasField(phase.snake):
            out[phase.value] = getattr(msg, phase.snake)
    return out


def failed_error(msg: model_pb2.FailedError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": msg.code}
    if msg.code in ("max_duration_exceeded", "exception"):
        out["at"] = msg.at
    if msg.code == "exception" and msg.HasField("exception_details"):
        out["exceptionDetails"] = msg.exception_details
    if msg.code == "code_terminated":
        if msg.HasField("exit_code"):
            out["exitCode"] = msg.exit_code
        if msg.HasField("signal"):
            out["signal"] = msg.signal
        out["oom"] = msg.oom
    if msg.code == "unknown" and msg.reason:
        out["reason"] = msg.reason
    return out


def create_state_result(msg: model_pb2.CreateStateResult) -> dict[str, Any]:
    if msg.WhichOneof("outcome") == "failed":
        failed = msg.failed
        return {
            "failed": {
                "durations": durations(failed.durations),
                "error": failed_error(failed.error),
            }
        }
    success = msg.success
    return {"success": {"durations": durations(success.durations), "stateId": success.state_id}}


def create_state_response(msg: Any) -> dict[str, Any]:
    return outcome(msg, create_state_result)


def phase_event(msg: model_pb2.PhaseEvent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event": "phaseFinished" if msg.finished else "phaseStarted",
        "phase": msg.phase,
        "stateId": msg.state_id,
    }
    if msg.finished:
        out["duration"] = msg.duration
    return out


def creating_states(msg: model_pb2.GetCreatingStatesResponse.Result) -> dict[str, Any]:
    return {"states": [{"id": s.id, "name": s.name, "startedAt": s.started_at} for s in msg.states]}


def _state(msg: model_pb2.StateInfo) -> dict[str, Any]:
    mounted = []
    for m in msg.mounted_models:
        item = {"modelId": m.model_id}
        if m.HasField("snapshot_id"):
            item["snapshotId"] = m.snapshot_id
        mounted.append(item)
    return {
        "id": msg.id,
        "name": msg.name,
        "createdAt": msg.created_at,
        "beingDeleted": msg.being_deleted,
        "state": [{"key": k.key, "byteSize": k.byte_size} for k in msg.keys],
        "mountedModels": mounted,
        "trainingOperations": [],
    }


def _model(msg: model_pb2.ModelInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"id": msg.id, "name": msg.name, "createdAt": msg.created_at}
    out["activeState"] = msg.active_state if msg.HasField("active_state") else None
    out["states"] = [_state(s) for s in msg.states]
    out["maxDurationsSeconds"] = {
        "codeStartup": msg.max_durations_seconds.code_startup,
        "createState": msg.max_durations_seconds.create_state,
    }
    out["snapshots"] = [
        {"id": s.id, "name": s.name, "createdAt": s.created_at, "stateId": s.state_id}
        for s in msg.snapshots
    ]
    return out


def _paged(msg: Any, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: items, "total": msg.total, "offset": msg.offset, "limit": msg.limit}


def models(msg: model_pb2.GetModelsResponse.Result) -> dict[str, Any]:
    return _paged(msg, "models", [_model(m) for m in msg.models])


def _dataset_key(msg: dataset_pb2.DatasetKey) -> dict[str, Any]:
    rules: dict[str, Any] = {"allowedTypes": list(msg.rules.allowed_types)}
    if msg.rules.has_shape:
        rules["shape"] = list(msg.rules.shape)
    return {"name": msg.name, "required": msg.required, "rules": rules}


def _dataset(msg: dataset_pb2.DatasetInfo) -> dict[str, Any]:
    return {
        "id": msg.id,
        "name": msg.name,
        "description": msg.description,
        "createdAt": msg.created_at,
        "keys": [_dataset_key(k) for k in msg.keys],
        "entries": msg.entries,
        "byteSize": msg.byte_size,
        "datasetVersionId": msg.dataset_version_id,
    }


def datasets(msg: dataset_pb2.GetDatasetsResponse.Result) -> dict[str, Any]:
    return _paged(msg, "datasets", [_dataset(d) for d in msg.datasets])


def spec_dict(msg: common_pb2.LauncherSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"cpus": msg.cpus, "memoryMebibytes": msg.memory_mebibytes}
    if msg.HasField("disk_mebibytes"):
        out["diskMebibytes"] = msg.disk_mebibytes
    if msg.HasField("swap_mebibytes"):
        out["swapMebibytes"] = msg.swap_mebibytes
    if msg.HasField("gpus"):
        out["gpus"] = {"model": msg.gpus.model, "count": msg.gpus.count}
    return out


def _launcher(msg: persistent_launcher_pb2.PersistentLauncherInfo) -> dict[str, Any]:
    return {
        "id": msg.id,
        "name": msg.name,
        "createdAt": msg.created_at,
        "spec": spec_dict(msg.spec),
        "state": {"type": msg.state},
        "running": [{"id": r.id, "type": r.type} for r in msg.running],
    }


def persistent_launchers(
    msg: persistent_launcher_pb2.GetPersistentLaunchersResponse.Result,
) -> dict[str, Any]:
    return _paged(msg, "persistentLaunchers", [_launcher(p) for p in msg.persistent_launchers])


def sysinfo(msg: persistent_launcher_pb2.GetSysinfoResponse.Result) -> dict[str, Any]:
    samples = [
        {"timestamp": s.timestamp, "cpus": s.cpus, "memory": s.memory, "disk": s.disk}
        for s in msg.sysinfo
    ]
    return {"sysinfo": samples, "sandboxLayers": list(msg.sandbox_layers)}
