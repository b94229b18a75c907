"""The launcher ⇄ zygote channel: each message kind encodes to fixed bytes and back."""

from __future__ import annotations

import pytest

from launcher.sandbox.mounts import FsLayout
from launcher.sandbox.recipe import Recipe
from launcher.sandbox.zygote_messages import (
    Exited,
    Kill,
    Ready,
    Spawn,
    Started,
    ZygoteProtocolError,
    decode,
)

_RECIPE = Recipe(
    argv=["/usr/bin/python3", "-m", "runtime"],
    env={"IPC_PATH": "/run/w1/ipc.sock"},
    cwd="/run/w1",
    run_module="runtime",
    namespaces=0x20000000,
    layout=FsLayout(staging="/s/root", read_only=["/m/a"], writable=["/run/w1"]),
    uid=65534,
    gid=65534,
    seccomp=True,
)
_RECIPE_JSON = (
    '{"argv":["/usr/bin/python3","-m","runtime"],"env":{"IPC_PATH":"/run/w1/ipc.sock"},'
    '"cwd":"/run/w1","run_module":"runtime","namespaces":536870912,"layout":'
)


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (Ready(41), b'{"op":"ready","pid":41}'),
        (Kill("7"), b'{"op":"kill","id":"7"}'),
        (Started("7", 1234), b'{"op":"started","id":"7","pid":1234}'),
        (Exited("7", 9), b'{"op":"exited","id":"7","status":9}'),
    ],
    ids=["ready", "kill", "started", "exited"],
)
def test_small_messages_snapshot(message: object, wire: bytes) -> None:
    assert message.encode() == wire  # type: ignore[attr-defined]
    assert decode(wire) == message


def test_spawn_snapshot() -> None:
    message = Spawn("3", _RECIPE)
    wire = message.encode()
    assert wire.startswith(b'{"op":"spawn","id":"3","recipe":' + _RECIPE_JSON.encode())
    assert decode(wire) == message
    assert decode(wire).recipe.layout == _RECIPE.layout  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"op":"explode","id":"1"}', "unknown"),
        (b'{"id":"1"}', "unknown or missing op"),
        (b'{"op":"kill"}', "fields"),
        (b'{"op":"kill","id":"1","extra":2}', "fields"),
        (b'{"op":"kill","id":""}', "bad worker id"),
        (b'{"op":"kill","id":"' + b"x" * 65 + b'"}', "bad worker id"),
        (b'{"op":"started","id":"1","pid":"12"}', "integer"),
        (b'{"op":"exited","id":"1","status":true}', "integer"),
        (b'{"op":"spawn","id":"1","recipe":[]}', "recipe must be an object"),
        (b'{"op":"spawn","id":"1","recipe":{"argv":[],"bogus":1}}', "bad recipe"),
    ],
)
def test_bad_packets_are_refused(wire: bytes, reason: str) -> None:
    with pytest.raises(ZygoteProtocolError, match=reason):
        decode(wire)
