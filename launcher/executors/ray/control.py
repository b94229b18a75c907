"""The relay's wire: the handshake line each node connection opens with, and the control channel.

A node dials the hub twice per job, each connection starting with one line::

    LRELAY1 <channel> <token>\\n        channel: "control" or "data"

and the hub answers ``OK\\n`` or ``NO <reason>\\n`` and closes. The data channel then carries
the worker protocol unchanged. The control channel carries JSON lines, each an object with a
``type``: from the node ``hello`` (its sandbox layers, node id, where the model folder is),
``output`` (the worker's stdout/stderr as read), ``heartbeat`` and ``terminated`` (exit code /
signal / oom, the log tail); from the hub ``kill``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

MAGIC = "LRELAY1"
CHANNELS = ("control", "data")
MAX_HANDSHAKE = 256
#: A control line's size limit (the log tail is the biggest part).
MAX_LINE = 1 << 20
#: How often a node sends a heartbeat, and how many may be missed before the job is lost.
HEARTBEAT = 0.5
MISSED_HEARTBEATS = 6
#: How long a node waits for word from its hub before it kills its worker (the hub heartbeats
#: too; generous, as a busy hub's event loop may lag).
HUB_SILENCE = 10.0


class ControlError(ValueError):
    pass


def handshake(channel: str, token: str) -> bytes:
    return f"{MAGIC} {channel} {token}\n".encode()


def parse_handshake(line: bytes) -> tuple[str, str]:
    """(channel, token) of a handshake line; ``ControlError`` if it is not one."""
    if len(line) > MAX_HANDSHAKE or not line.endswith(b"\n"):
        raise ControlError("handshake line too long or unterminated")
    try:
        parts = line[:-1].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ControlError("handshake is not ASCII") from None
    if len(parts) != 3 or parts[0] != MAGIC or parts[1] not in CHANNELS:
        raise ControlError("not a relay handshake")
    return parts[1], parts[2]


@dataclass(frozen=True)
class Hello:
    node_id: str
    layers: dict[str, str]
    model_dir: str
    pid: int
    mounts: dict[str, str] = field(default_factory=dict)  # hub path -> node path


@dataclass(frozen=True)
class Output:
    """A piece of the worker's stdout or stderr, as the node read it."""

    stream: str
    data: bytes


@dataclass(frozen=True)
class Terminated:
    exit_code: int | None
    signal: str | None
    oom: bool
    log_tail: str


def encode(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}, separators=(",", ":")).encode() + b"\n"


def _str(msg: dict[str, Any], key: str, limit: int = 4096) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise ControlError(f"{msg.get('type')}.{key} must be a string of at most {limit}")
    return value


def decode(line: bytes) -> Hello | Output | Terminated | str:
    """A node's control message: ``Hello``, ``Terminated``, or the type name of a bare one."""
    try:
        msg = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ControlError(f"control line is not JSON: {e}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ControlError("control message is not an object with a type")
    kind = msg["type"]
    if kind == "hello":
        layers = msg.get("layers")
        if not isinstance(layers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in layers.items()
        ):
            raise ControlError("hello.layers must map names to states")
        pid = msg.get("pid")
        if not isinstance(pid, int):
            raise ControlError("hello.pid must be an integer")
        mounts = msg.get("mounts", {})
        if not isinstance(mounts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mounts.items()
        ):
            raise ControlError("hello.mounts must map hub paths to node paths")
        return Hello(_str(msg, "nodeId"), layers, _str(msg, "modelDir"), pid, mounts)
    if kind == "terminated":
        code, sig, oom = msg.get("exitCode"), msg.get("signal"), msg.get("oom")
        if (code is None) == (sig is None) or not isinstance(oom, bool):
            raise ControlError("terminated needs exactly one of exitCode and signal, and oom")
        if code is not None and not isinstance(code, int):
            raise ControlError("terminated.exitCode must be an integer")
        if sig is not None and not isinstance(sig, str):
            raise ControlError("terminated.signal must be a name")
        return Terminated(code, sig, oom, _str(msg, "logTail", MAX_LINE // 2))
    if kind == "output":
        stream = msg.get("stream")
        if stream not in ("stdout", "stderr"):
            raise ControlError("output.stream must be stdout or stderr")
        return Output(stream, _str(msg, "data", MAX_LINE // 2).encode("utf-8", "replace"))
    if kind in ("heartbeat", "kill", "startTimeout"):
        return kind
    raise ControlError(f"unknown control message {kind!r}")


async def read_line(reader: asyncio.StreamReader) -> bytes:
    """One control line; EOF as ``b""``; ``ControlError`` for a line over ``MAX_LINE``."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise ControlError("control channel ended inside a line") from None
        return b""
    except asyncio.LimitOverrunError:
        raise ControlError("control line over the limit") from None
