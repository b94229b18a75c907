"""The launcher ⇄ zygote channel on one screen: every message as a typed class.

One message per SOCK_SEQPACKET packet, JSON with an ``op`` field. Each class encodes itself
(``encode() -> bytes``) and ``decode(bytes)`` returns the right class, refusing unknown ops,
missing or extra fields and wrong types with ``ZygoteProtocolError``.

launcher → zygote: ``Spawn`` (the log pipe's write end travels beside it as SCM_RIGHTS),
``Kill``. zygote → launcher: ``Ready``, ``Started``, ``Exited`` (raw wait status of the keeper).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from launcher.sandbox.recipe import Recipe

#: The largest packet either side reads (a recipe with many paths stays far below it).
MAX_PACKET = 4 * 1024 * 1024
_MAX_ID = 64


class ZygoteProtocolError(ValueError):
    """A packet that is not a valid message of the channel."""


def _id(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID:
        raise ZygoteProtocolError(f"bad worker id {value!r}")
    return value


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ZygoteProtocolError(f"{what} must be an integer, not {value!r}")
    return value


@dataclass(frozen=True)
class _Message:
    OP: ClassVar[str]

    def body(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def encode(self) -> bytes:
        return json.dumps({"op": self.OP, **self.body()}, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: dict[str, Any]) -> _Message:
        raise NotImplementedError


@dataclass(frozen=True)
class Ready(_Message):
    """The zygote is up (its pid)."""

    OP: ClassVar[str] = "ready"
    pid: int

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Ready:
        return cls(_int(data["pid"], "pid"))


@dataclass(frozen=True)
class Spawn(_Message):
    """Start a worker from ``recipe``; its stdout pipe (and stderr pipe)
    come as the packet's one or two fds."""

    OP: ClassVar[str] = "spawn"
    id: str
    recipe: Recipe

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "recipe": self.recipe.to_json()}

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Spawn:
        if not isinstance(data["recipe"], dict):
            raise ZygoteProtocolError("recipe must be an object")
        try:
            recipe = Recipe.from_json(data["recipe"])
        except TypeError as exc:
            raise ZygoteProtocolError(f"bad recipe: {exc}") from exc
        return cls(_id(data["id"]), recipe)


@dataclass(frozen=True)
class Kill(_Message):
    """Kill a worker's whole tree (its keeper turns SIGTERM into SIGKILL of the tree)."""

    OP: ClassVar[str] = "kill"
    id: str

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Kill:
        return cls(_id(data["id"]))


@dataclass(frozen=True)
class Started(_Message):
    """The worker's keeper runs with host pid ``pid``."""

    OP: ClassVar[str] = "started"
    id: str
    pid: int

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Started:
        return cls(_id(data["id"]), _int(data["pid"], "pid"))


@dataclass(frozen=True)
class Exited(_Message):
    """The worker's keeper ended with raw wait status ``status``."""

    OP: ClassVar[str] = "exited"
    id: str
    status: int

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Exited:
        return cls(_id(data["id"]), _int(data["status"], "status"))


Message = Ready | Spawn | Kill | Started | Exited
_BY_OP: dict[str, type[_Message]] = {c.OP: c for c in (Ready, Spawn, Kill, Started, Exited)}


def decode(packet: bytes) -> Message:
    """The message in one packet; ``ZygoteProtocolError`` if it is not one."""
    if len(packet) > MAX_PACKET:
        raise ZygoteProtocolError(f"packet of {len(packet)} bytes is over {MAX_PACKET}")
    try:
        data = json.loads(packet)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ZygoteProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ZygoteProtocolError("a message must be a JSON object")
    cls = _BY_OP.get(data.pop("op", None))  # type: ignore[arg-type]
    if cls is None:
        raise ZygoteProtocolError("unknown or missing op")
    expected = {f.name for f in fields(cls)}
    if set(data) != expected:
        raise ZygoteProtocolError(f"{cls.OP}: fields {sorted(data)} instead of {sorted(expected)}")
    return cls.parse(data)  # type: ignore[return-value]
