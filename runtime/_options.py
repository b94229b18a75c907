"""Builds ``CreateModelStateOptions`` from the host's ``callCreateModelState`` params.

The host's JSON is checked here, so that a malformed command becomes one clear error result
instead of a ``KeyError`` deep inside a model.
"""

from __future__ import annotations

from typing import Any

from runtime._call import Call
from runtime.api import CreateModelStateOptions, DataLoader, OtherModel, StateLoader, StateProvider


class BadCommand(ValueError):
    """The host's command params do not have the protocol's shape."""


def build_options(call: Call, params: dict[str, Any]) -> CreateModelStateOptions:
    loaders = {}
    for i, param in enumerate(_list(params, "params")):
        name, dataset, amount, total = _param(param, f"params[{i}]")
        if name in loaders:
            raise BadCommand(f"params[{i}]: the name {name!r} appears twice")
        loaders[name] = DataLoader(call, name, dataset, amount, total)
    others = {}
    for i, other in enumerate(_list(params, "otherModels")):
        where = f"otherModels[{i}]"
        if not isinstance(other, dict):
            raise BadCommand(f"{where} is not an object")
        model_id = _field(other, "id", str, where)
        mount_path = _field(other, "mountPath", str, where)
        state = {}
        for j, param in enumerate(_list(other, "state", where)):
            key, dataset, amount, total = _param(param, f"{where}.state[{j}]")
            state[key] = StateLoader(call, key, dataset, amount, total)
        others[model_id] = OtherModel(mount_path, state)
    return CreateModelStateOptions(loaders, StateProvider(call), others)


def _list(doc: dict[str, Any], field: str, where: str = "") -> list[Any]:
    value = doc.get(field, [])
    if not isinstance(value, list):
        raise BadCommand(f"{where + '.' if where else ''}{field} is not a list")
    return value


def _param(param: object, where: str) -> tuple[str, str, int, int]:
    if not isinstance(param, dict):
        raise BadCommand(f"{where} is not an object")
    name = _field(param, "name", str, where)
    dataset = _field(param, "dataset", str, where)
    amount = _field(param, "amount", int, where)
    total = _field(param, "totalByteSize", int, where)
    if amount < 0 or total < 0:
        raise BadCommand(f"{where}: amount and totalByteSize must not be negative")
    return name, dataset, amount, total


def _field(doc: dict[str, Any], field: str, kind: type, where: str) -> Any:
    value = doc.get(field)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadCommand(f"{where}.{field} is missing or not of type {kind.__name__}")
    return value
