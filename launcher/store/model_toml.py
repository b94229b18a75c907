"""``model.toml``: its fields, their types and defaults, validated into typed values.

Every refusal is a ``ModelConfigError`` whose message names the field (``max_durations_seconds.
code_startup``, ``parameters.create_state[1].shape``), since a model author reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.tensor import TYPE_CODES

RUNTIMES = ("python", "decthings-model")
TENSOR_TYPES = tuple(TYPE_CODES)
MAX_DIMENSIONS = 255
DEFAULT_CODE_STARTUP = 120.0
DEFAULT_CREATE_STATE = 3600.0


class ModelConfigError(Exception):
    """A bad ``model.toml``, or ``main.py`` missing (``invalid_executable_file``)."""


@dataclass(frozen=True)
class ParamRule:
    name: str
    required: bool
    shape: tuple[int, ...] | None
    allowed_types: tuple[str, ...] | None


@dataclass(frozen=True)
class ModelToml:
    runtime: str = "python"
    name: str | None = None
    max_code_startup: float = DEFAULT_CODE_STARTUP
    max_create_state: float = DEFAULT_CREATE_STATE
    parameters: tuple[ParamRule, ...] = ()
    #: The model needs a fresh interpreter (for example to initialise a GPU driver): its
    #: worker is exec'd instead of forked from the warm zygote.
    fresh_process: bool = False


def parse_model_toml(doc: Mapping[str, Any] | None) -> ModelToml:
    """Validate a parsed ``model.toml`` (``None``: no file, all defaults)."""
    if doc is None:
        return ModelToml()
    _only_keys(doc, "", ("runtime", "name", "fresh_process", "max_durations_seconds", "parameters"))
    fresh_process = doc.get("fresh_process", False)
    if not isinstance(fresh_process, bool):
        raise ModelConfigError(f"fresh_process must be true or false (got {fresh_process!r})")
    runtime = doc.get("runtime", "python")
    if runtime not in RUNTIMES:
        raise ModelConfigError(f"runtime must be one of {', '.join(RUNTIMES)} (got {runtime!r})")
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ModelConfigError("name must be a non-empty string")
    durations = _table(doc, "max_durations_seconds")
    _only_keys(durations, "max_durations_seconds.", ("code_startup", "create_state"))
    parameters = _table(doc, "parameters")
    _only_keys(parameters, "parameters.", ("create_state",))
    return ModelToml(
        runtime=runtime,
        name=name,
        max_code_startup=_duration(durations, "code_startup", DEFAULT_CODE_STARTUP),
        max_create_state=_duration(durations, "create_state", DEFAULT_CREATE_STATE),
        parameters=_param_rules(parameters.get("create_state", [])),
        fresh_process=fresh_process,
    )


def _only_keys(table: Mapping[str, Any], prefix: str, known: tuple[str, ...]) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ModelConfigError(
            f"unknown field {prefix}{unknown[0]} (known: {', '.join(prefix + k for k in known)})"
        )


def _table(doc: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = doc.get(field, {})
    if not isinstance(value, dict):
        raise ModelConfigError(f"{field} must be a table")
    return value


def _duration(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    field = f"max_durations_seconds.{key}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelConfigError(f"{field} must be a number of seconds (got {value!r})")
    if not math.isfinite(value) or value <= 0:
        raise ModelConfigError(f"{field} must be positive and finite (got {value!r})")
    return float(value)


def _param_rules(entries: object) -> tuple[ParamRule, ...]:
    if not isinstance(entries, list):
        raise ModelConfigError("parameters.create_state must be an array of tables")
    rules: list[ParamRule] = []
    for i, entry in enumerate(entries):
        field = f"parameters.create_state[{i}]"
        if not isinstance(entry, dict):
            raise ModelConfigError(f"{field} must be a table")
        _only_keys(entry, f"{field}.", tuple(_RULE_FIELDS))
        if "name" not in entry:
            raise ModelConfigError(f"{field}.name is missing")
        values = {
            key: check(f"{field}.{key}", entry.get(key)) for key, check in _RULE_FIELDS.items()
        }
        if any(r.name == values["name"] for r in rules):
            raise ModelConfigError(f"{field}.name {values['name']!r} is defined twice")
        rules.append(ParamRule(**values))
    return tuple(rules)


def _rule_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ModelConfigError(f"{field} must be a non-empty string")
    return value


def _rule_required(field: str, value: object) -> bool:
    # Declaring a parameter says the model expects it, so required unless stated otherwise.
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ModelConfigError(f"{field} must be true or false (got {value!r})")
    return value


def _rule_shape(field: str, value: object) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_DIMENSIONS:
        raise ModelConfigError(f"{field} must be an array of at most {MAX_DIMENSIONS} integers")
    for dim in value:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < -1:
            raise ModelConfigError(f"{field} entries must be integers >= -1 (got {dim!r})")
    return tuple(value)


def _rule_allowed_types(field: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ModelConfigError(f"{field} must be a non-empty array of tensor type names")
    for name in value:
        if name not in TENSOR_TYPES:
            raise ModelConfigError(
                f"{field}: {name!r} is not a tensor type (one of {', '.join(TENSOR_TYPES)})"
            )
    return tuple(value)


# The fields of one [[parameters.create_state]] entry and the check that turns each into its
# ParamRule value (None when the field is absent).
_RULE_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "name": _rule_name,
    "required": _rule_required,
    "shape": _rule_shape,
    "allowed_types": _rule_allowed_types,
}
