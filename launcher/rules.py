"""One table of the rules every service applies to ids, names, sizes and limits.

Each rule is a small typed object (in the manner of Ray's ``ray_option_utils.Option``): what
it checks, its bounds, and the reason a person reads when a value breaks it. Servicers, stores
and the host side of the worker protocol all check through these objects, so the same input
gets the same answer (and the same words) everywhere. Limits that the worker runtime enforces
too are defined in ``runtime.protocol`` (the runtime must not import the launcher) and only
re-exported here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from launcher.errors import invalid
from runtime import protocol

__all__ = [
    "CountRule",
    "IdRule",
    "NameRule",
    "RULES",
]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class IdRule:
    """An identifier: one path component of a fixed alphabet, never ``.`` or ``..``."""

    what: str  # "a model id"
    pattern: str
    description: str  # the alphabet and length, as a person reads it

    def ok(self, value: object) -> bool:
        return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None

    def check(self, path: str, value: str) -> str:
        if not self.ok(value):
            raise invalid(path, f"{_shown(value)} is not {self.what}: {self.description}")
        return value


@dataclass(frozen=True)
class NameRule:
    """A free-text name: 1 to ``max_chars`` printable characters, not only blanks."""

    what: str
    max_chars: int

    def reason(self, value: object) -> str | None:
        if not isinstance(value, str) or not value or not value.strip():
            return f"{self.what} must not be empty"
        if len(value) > self.max_chars:
            return f"{self.what} has {len(value)} characters; at most {self.max_chars}"
        if not value.isprintable():
            return f"{self.what} must be printable characters (no control characters)"
        return None

    def ok(self, value: object) -> bool:
        return self.reason(value) is None

    def check(self, path: str, value: str) -> str:
        reason = self.reason(value)
        if reason is not None:
            raise invalid(path, reason)
        return value


@dataclass(frozen=True)
class CountRule:
    """A whole number (a count or a byte size) between ``minimum`` and ``maximum``."""

    what: str
    minimum: int
    maximum: int
    unit: str = ""

    def ok(self, value: object) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.minimum <= value <= self.maximum
        )

    def check(self, path: str, value: int) -> int:
        if not self.ok(value):
            unit = f" {self.unit}" if self.unit else ""
            raise invalid(
                path,
                f"{self.what} must be between {self.minimum} and {self.maximum}{unit}; "
                f"got {_shown(value)}",
            )
        return value


@dataclass(frozen=True)
class NumberRule:
    """A finite number between ``minimum`` and ``maximum`` (CPU shares, seconds)."""

    what: str
    minimum: float
    maximum: float
    unit: str = ""

    def check(self, path: str, value: float) -> float:
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            raise invalid(
                path,
                f"{self.what} must be between {self.minimum:g} and {self.maximum:g} "
                f"{self.unit}; got {_shown(value)}".replace("  ", " "),
            )
        return value


_GENERIC_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_GENERIC_DESCRIPTION = (
    "1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
)

MODEL_ID = IdRule("a model id", _GENERIC_ID, _GENERIC_DESCRIPTION)
#: State ids never hold '.': the state store marks folders being removed with a '.' suffix.
STATE_ID = IdRule(
    "a state id",
    r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
    "1-64 characters of letters, digits, '_' or '-', starting with a letter or digit",
)
SNAPSHOT_ID = IdRule("a snapshot id", _GENERIC_ID, _GENERIC_DESCRIPTION)
LAUNCHER_ID = IdRule("a persistent launcher id", _GENERIC_ID, _GENERIC_DESCRIPTION)
#: Datasets are named by UUIDs, but any well-formed id is looked up (and then not found), so
#: that the Dataset API and a createState dataset param answer the same for the same id.
DATASET_ID = IdRule("a dataset id", _GENERIC_ID, _GENERIC_DESCRIPTION)

MAX_NAME_CHARS = 256
NAME = NameRule("a name", MAX_NAME_CHARS)
PARAM_NAME = NameRule("a param name", MAX_NAME_CHARS)
DATASET_NAME = NameRule("the dataset name", MAX_NAME_CHARS)
DATASET_KEY_NAME = NameRule("a key name", MAX_NAME_CHARS)
#: One limit for a state key's name, whether a worker provides it or upload_state sends it.
STATE_KEY_NAME = NameRule("a state key name", protocol.MAX_STATE_KEY_NAME_CHARS)
GPU_MODEL = NameRule("a GPU model", MAX_NAME_CHARS)
MAX_DESCRIPTION_CHARS = 10_000

# ---- counts and sizes ----
MAX_PARAMS = 256
MAX_MOUNTS = 16
MAX_DATASET_KEYS = 100
MAX_RANK = 255
MAX_GPUS = 64
#: Shared with the worker runtime (``runtime.protocol``): a state's keys and each key's size.
MAX_STATE_KEYS = protocol.MAX_STATE_KEYS
MAX_STATE_KEY_BYTES = protocol.MAX_STATE_KEY_BYTES

STATE_KEY_BYTES = CountRule("a state key's size", 0, MAX_STATE_KEY_BYTES, "bytes (1 GiB)")
STATE_KEYS = CountRule("the number of state keys", 0, MAX_STATE_KEYS)
GPU_COUNT = CountRule("gpus.count", 1, MAX_GPUS)

# ---- intake bounds (defaults of operator flags; see launcher.config.ServeOptions) ----
#: model.toml is configuration: 64 KiB is far more than any real one needs.
MAX_MODEL_TOML_BYTES = 64 << 10
#: main.py is read only to check it is a regular file; its size is bounded all the same
#: (a bigger model keeps its code in modules next to it).
MAX_MAIN_PY_BYTES = 16 << 20
DEFAULT_MAX_TENSORS_PER_PARAM = 1 << 22
DEFAULT_MAX_REQUEST_BYTES = 64 << 30
DEFAULT_INTAKE_IDLE_SECONDS = 60.0
DEFAULT_MAX_CONCURRENT_INTAKES = 64
DEFAULT_MAX_TENANT_INTAKES = 16
DEFAULT_MAX_CONCURRENT_RPCS = 1024


@dataclass(frozen=True)
class IntakeLimits:
    """Operator bounds on createState request streams (``launcher serve`` flags)."""

    idle_seconds: float = DEFAULT_INTAKE_IDLE_SECONDS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_tensors_per_param: int = DEFAULT_MAX_TENSORS_PER_PARAM
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_INTAKES
    max_per_tenant: int = DEFAULT_MAX_TENANT_INTAKES


#: Every rule by name, for documentation and for ``launcher serve --help``.
RULES: dict[str, object] = {
    name: value
    for name, value in dict(globals()).items()
    if isinstance(value, IdRule | NameRule | CountRule | NumberRule)
}


def tensor_reason(
    type_name: str,
    shape: tuple[int, ...],
    allowed_types: tuple[str, ...] | None,
    shape_rule: tuple[int, ...] | None,
) -> str | None:
    """Why a tensor breaks a parameter's or dataset key's rules (None: it does not).

    The one tensor rule check of the launcher: inline params against ``model.toml``, dataset
    entries against their key's rules, and dataset params against ``model.toml``.
    """
    if allowed_types and type_name not in allowed_types:
        return f"type {type_name} is not allowed (allowedTypes: {', '.join(allowed_types)})"
    if shape_rule is not None and (
        len(shape_rule) != len(shape)
        or any(want not in (-1, got) for want, got in zip(shape_rule, shape, strict=True))
    ):
        return (
            f"shape {list(shape)} does not match the shape rule {list(shape_rule)} (-1: any length)"
        )
    return None


def check_tensor(
    path: str,
    type_name: str,
    shape: tuple[int, ...],
    allowed_types: tuple[str, ...] | None,
    shape_rule: tuple[int, ...] | None,
) -> None:
    reason = tensor_reason(type_name, shape, allowed_types, shape_rule)
    if reason is not None:
        raise invalid(path, reason)
