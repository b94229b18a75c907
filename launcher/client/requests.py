"""Client-side request building: the seed's camelCase dicts to proto messages.

Every malformed input is refused here as ``invalid_parameter`` naming its path, the same
answer the server would give, so that the client never raises for bad arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from launcher.errors import invalid
from launcher.v1 import common_pb2, dataset_pb2, model_pb2

_UINT64_MAX = 2**64 - 1
_UINT32_MAX = 2**32 - 1


def need_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise invalid(name, f"expected a string, got {type(value).__name__}")
    return value


def need_int(value: object, name: str, maximum: int = _UINT64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"expected an integer, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise invalid(name, f"expected an integer from 0 to {maximum}, got {value}")
    return value


def need_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(name, f"expected a number, got {type(value).__name__}")
    return float(value)


def need_list(value: object, name: str) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise invalid(name, f"expected a list, got {type(value).__name__}")
    return list(value)


def need_dict(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise invalid(name, f"expected an object, got {type(value).__name__}")
    return value


def str_list(value: object, name: str) -> list[str]:
    return [need_str(v, f"{name}[{i}]") for i, v in enumerate(need_list(value, name))]


def spec_to_proto(value: object, name: str) -> common_pb2.LauncherSpec:
    """A LauncherSpec ``{cpus, memoryMebibytes, diskMebibytes?, swapMebibytes?, gpus?}``."""
    spec = need_dict(value, name)
    for field in ("cpus", "memoryMebibytes"):
        if field not in spec:
            raise invalid(f"{name}.{field}", "required field is missing")
    msg = common_pb2.LauncherSpec(
        cpus=need_number(spec["cpus"], f"{name}.cpus"),
        memory_mebibytes=need_int(spec["memoryMebibytes"], f"{name}.memoryMebibytes"),
    )
    if spec.get("diskMebibytes") is not None:
        msg.disk_mebibytes = need_int(spec["diskMebibytes"], f"{name}.diskMebibytes")
    if spec.get("swapMebibytes") is not None:
        msg.swap_mebibytes = need_int(spec["swapMebibytes"], f"{name}.swapMebibytes")
    if spec.get("gpus") is not None:
        gpus = need_dict(spec["gpus"], f"{name}.gpus")
        msg.gpus.model = need_str(gpus.get("model", ""), f"{name}.gpus.model")
        msg.gpus.count = need_int(gpus.get("count"), f"{name}.gpus.count", _UINT32_MAX)
    return msg


def location_to_proto(value: object) -> model_pb2.ExecutionLocation:
    """``{"type": "persistentLauncher"|"temporaryLauncher", ...}`` to an ExecutionLocation."""
    name = "executionLocation"
    loc = need_dict(value, name)
    kind = loc.get("type")
    if kind == "persistentLauncher":
        launcher_id = need_str(loc.get("persistentLauncherId"), f"{name}.persistentLauncherId")
        return model_pb2.ExecutionLocation(persistent_launcher_id=launcher_id)
    if kind == "temporaryLauncher":
        spec = spec_to_proto(loc.get("spec"), f"{name}.spec")
        return model_pb2.ExecutionLocation(temporary_launcher_spec=spec)
    raise invalid(f"{name}.type", 'expected "persistentLauncher" or "temporaryLauncher"')


def mounts_to_proto(value: object) -> list[model_pb2.MountModel]:
    """``mountModels``: ``[{"modelId", "stateId"?, "snapshotId"?}]`` (None: no mounts)."""
    if value is None:
        return []
    out = []
    for i, item in enumerate(need_list(value, "mountModels")):
        name = f"mountModels[{i}]"
        mount = need_dict(item, name)
        msg = model_pb2.MountModel(model_id=need_str(mount.get("modelId"), f"{name}.modelId"))
        if mount.get("stateId") is not None:
            msg.state_id = need_str(mount["stateId"], f"{name}.stateId")
        if mount.get("snapshotId") is not None:
            msg.snapshot_id = need_str(mount["snapshotId"], f"{name}.snapshotId")
        out.append(msg)
    return out


def entries_to_proto(value: object) -> dataset_pb2.EntrySelection:
    """``{"start", "end"}`` or a list of indexes."""
    if isinstance(value, Mapping):
        start = need_int(value.get("start"), "entries.start")
        end = need_int(value.get("end"), "entries.end")
        return dataset_pb2.EntrySelection(
            range=dataset_pb2.EntrySelection.Range(start=start, end=end)
        )
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        indexes = [need_int(v, f"entries[{i}]") for i, v in enumerate(value)]
        return dataset_pb2.EntrySelection(
            indexes=dataset_pb2.EntrySelection.Indexes(indexes=indexes)
        )
    raise invalid("entries", 'expected {"start", "end"} or a list of indexes')


def dataset_keys_to_proto(value: object) -> list[dataset_pb2.DatasetKey]:
    """``[{"name", "required", "rules": {"shape"?, "allowedTypes"?}}]``."""
    out = []
    for i, item in enumerate(need_list(value, "keys")):
        name = f"keys[{i}]"
        key = need_dict(item, name)
        msg = dataset_pb2.DatasetKey(name=need_str(key.get("name"), f"{name}.name"))
        required = key.get("required", False)
        if not isinstance(required, bool):
            raise invalid(f"{name}.required", "expected true or false")
        msg.required = required
        rules = need_dict(key.get("rules") or {}, f"{name}.rules")
        if rules.get("shape") is not None:
            shape = need_list(rules["shape"], f"{name}.rules.shape")
            for j, dim in enumerate(shape):
                if isinstance(dim, bool) or not isinstance(dim, int) or dim < -1:
                    raise invalid(f"{name}.rules.shape[{j}]", "expected an integer >= -1")
            msg.rules.has_shape = True
            msg.rules.shape.extend(shape)
        if rules.get("allowedTypes") is not None:
            types = str_list(rules["allowedTypes"], f"{name}.rules.allowedTypes")
            msg.rules.allowed_types.extend(types)
        out.append(msg)
    return out


def page(offset: object, limit: object) -> tuple[int, int]:
    return need_int(offset, "offset", _UINT32_MAX), need_int(limit, "limit", _UINT32_MAX)


def filter_ids(value: object, allowed: tuple[str, ...] = ("ids",)) -> Mapping[str, Any]:
    """A ``filter`` dict restricted to the fields the method knows (None: no filter)."""
    if value is None:
        return {}
    flt = need_dict(value, "filter")
    for key in flt:
        if key not in allowed:
            raise invalid(f"filter.{key}", f"unknown filter field; known: {', '.join(allowed)}")
    return flt
