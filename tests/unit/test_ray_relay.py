"""The Ray executor's relay listener and control channel, on loopback, without a cluster."""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest

from launcher.executors.ray import control
from launcher.executors.ray.jobspec import NodeJob
from launcher.executors.ray.node import dial
from launcher.executors.ray.relay import RelayListener, RelayTls
from launcher.spec import LauncherSpec
from tests.support.pki import self_signed


async def _dial(port: int, line: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(line)
    try:
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_a_ticket_admits_each_channel_once() -> None:
    async def go() -> None:
        relay = RelayListener("127.0.0.1", 0)
        await relay.start()
        ticket = relay.issue(60)
        assert await _dial(relay.port, control.handshake("data", ticket.token)) == b"OK\n"
        assert ticket.channels["data"].done()
        reused = await _dial(relay.port, control.handshake("data", ticket.token))
        assert reused.startswith(b"NO ")
        assert await _dial(relay.port, control.handshake("control", ticket.token)) == b"OK\n"
        # Both channels are in: the token is gone, even for a channel it never used again.
        again = await _dial(relay.port, control.handshake("control", ticket.token))
        assert again.startswith(b"NO ")
        assert relay.refused == 2
        await relay.close()

    run(go())


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.split(".")[0] + ".wrong-secret",
        lambda t: "0000000000000000." + t.split(".")[1],
        lambda t: t[:-1],
        lambda t: "",
    ],
)
def test_a_wrong_token_is_refused_and_the_right_one_still_works(mangle) -> None:
    async def go() -> None:
        relay = RelayListener("127.0.0.1", 0)
        await relay.start()
        ticket = relay.issue(60)
        answer = await _dial(relay.port, control.handshake("data", mangle(ticket.token)))
        assert answer.startswith(b"NO ")
        assert not ticket.channels["data"].done()
        assert await _dial(relay.port, control.handshake("data", ticket.token)) == b"OK\n"
        await relay.close()

    run(go())


def test_an_expired_token_is_refused() -> None:
    async def go() -> None:
        relay = RelayListener("127.0.0.1", 0)
        await relay.start()
        ticket = relay.issue(0.0)
        await asyncio.sleep(0.01)
        answer = await _dial(relay.port, control.handshake("control", ticket.token))
        assert answer.startswith(b"NO ")
        await relay.close()

    run(go())


@pytest.mark.parametrize(
    "line",
    [b"GET / HTTP/1.1\r\n", b"LRELAY1 other tok\n", b"LRELAY1 data\n", b"\xff\xfe\n", b"x" * 300],
)
def test_garbage_handshakes_are_refused_and_others_are_served(line: bytes) -> None:
    async def go() -> None:
        relay = RelayListener("127.0.0.1", 0)
        await relay.start()
        ticket = relay.issue(60)
        assert (await _dial(relay.port, line)).startswith(b"NO ")
        assert await _dial(relay.port, control.handshake("data", ticket.token)) == b"OK\n"
        await relay.close()

    run(go())


def test_control_messages_round_trip_and_bad_ones_are_refused() -> None:
    hello = control.decode(
        control.encode("hello", nodeId="n1", layers={"cgroup": "on"}, modelDir="/m", pid=7)
    )
    assert hello == control.Hello("n1", {"cgroup": "on"}, "/m", 7)
    ended = control.decode(
        control.encode("terminated", exitCode=None, signal="SIGKILL", oom=True, logTail="x")
    )
    assert ended == control.Terminated(None, "SIGKILL", True, "x")
    assert control.decode(control.encode("heartbeat")) == "heartbeat"
    out = control.decode(control.encode("output", stream="stderr", data="hi"))
    assert out == control.Output("stderr", b"hi")
    for bad in [
        b"not json\n",
        b"[]\n",
        json.dumps({"type": "terminated", "exitCode": 1, "signal": "SIGKILL", "oom": False}),
        json.dumps({"type": "terminated", "exitCode": "1", "oom": False}),
        json.dumps({"type": "hello", "nodeId": "n", "layers": {"a": 1}, "modelDir": "/", "pid": 1}),
        json.dumps({"type": "output", "stream": "stdin", "data": ""}),
        json.dumps({"type": "launch-missiles"}),
    ]:
        with pytest.raises(control.ControlError):
            control.decode(bad if isinstance(bad, bytes) else bad.encode())


def _job(port: int, token: str, ca: str | None) -> NodeJob:
    spec = LauncherSpec(cpus=1, memory_mebibytes=64)
    return NodeJob(f"127.0.0.1:{port}", token, "/nonexistent", "python", False, spec, 1.0, "d",
                   relay_ca=ca)  # fmt: skip


def test_a_tls_relay_admits_nodes_that_verify_it_and_nothing_in_clear(tmp_path) -> None:
    cert, key = self_signed(tmp_path, "relay")
    other, _ = self_signed(tmp_path, "other")
    tls = RelayTls.load(cert, key)

    async def go() -> None:
        relay = RelayListener("127.0.0.1", 0, tls.context)
        await relay.start()
        ticket = relay.issue(60)
        with pytest.raises(ssl.SSLError):  # a node trusting another certificate gives up
            await dial(_job(relay.port, ticket.token, other.read_text()), "data")
        # In clear text the handshake line never reaches the relay's token check.
        assert not (await _dial(relay.port, control.handshake("data", ticket.token))).startswith(
            b"OK"
        )
        assert not ticket.channels["data"].done()
        _, writer = await dial(_job(relay.port, ticket.token, tls.trust_pem), "data")
        assert ticket.channels["data"].done()
        writer.close()
        await relay.close()

    run(go())
