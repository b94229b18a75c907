"""Measurements of the Ray executor: cold createState through a local Ray cluster beside the
local executor, and the relay's throughput for 256 MiB beside a direct Unix socket.

The cluster part runs in a network namespace of its own with only loopback (Ray rewrites
127.0.0.1 to the routable address), re-executing this module there (``--inner``) and reading
its figures back as JSON. The relay part runs here, on loopback: the node's splice
(``launcher.executors.ray.node.pump``) from a worker's Unix socket into the hub's relay
listener (a real handshake, a real token), all in one process and one event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import PROJECT, Settings, median, running_launcher
from bench.create_state import TEMPORARY, Series
from bench.report import Figure, Target

RELAY_BYTES = 256 << 20
CHUNK = 1 << 20


def measure(settings: Settings) -> list[Figure]:
    return measure_cold(settings) + measure_relay(settings)


# Cold createState through Ray -------------------------------------------------------------


def measure_cold(settings: Settings) -> list[Figure]:
    n = settings.count(10, 3)
    inner = [sys.executable, "-m", "bench.ray_cluster", "--inner", str(n)]
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=PROJECT,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the Ray bench failed ({done.returncode}): {done.stderr[-2000:]}")
    got = json.loads(lines[-1])
    return [
        Figure(
            "ray: cold createState p50 (temporary, local cluster)",
            got["ray_p50_ms"],
            "ms",
            "local executor cold p50",
            got["local_p50_ms"],
            Target("ratio", "<=", 30),
            got,
            got["failures"],
        )
    ]


def _inner(n: int) -> None:
    from tests.support.ray_cluster import local_cluster

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    out: dict[str, object] = {"calls": n}
    with running_launcher() as local:
        from launcher.client import LauncherClient

        with LauncherClient(local.address, timeout=120) as client:
            Series().run(client, TEMPORARY, 1)  # the zygote
            series = Series().run(client, TEMPORARY, n)
        out["local_p50_ms"] = median(series.times) * 1000
    with local_cluster(tmp / "home") as (cluster, _):
        args = ["--executor", "ray", "--ray-address", cluster.address]
        with running_launcher([*args, "--ray-node-dir", str(tmp / "node")]) as hub:
            with LauncherClient(hub.address, timeout=120) as client:
                Series().run(client, TEMPORARY, 1)  # the bundle reaches the node's cache
                series = Series().run(client, TEMPORARY, n)
    out["ray_p50_ms"] = median(series.times) * 1000
    out["ray_detail"] = series.detail()
    out["failures"] = len(series.failures)
    print(json.dumps(out), flush=True)


# Relay throughput ---------------------------------------------------------------------------


async def _send(writer: asyncio.StreamWriter, total: int) -> None:
    block = b"\x07" * CHUNK
    for _ in range(total // CHUNK):
        writer.write(block)
        await writer.drain()
    writer.close()


async def _receive(reader: asyncio.StreamReader) -> int:
    got = 0
    while chunk := await reader.read(CHUNK):
        got += len(chunk)
    return got


async def _direct(total: int) -> float:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ra, wa = await asyncio.open_unix_connection(sock=a)
    rb, wb = await asyncio.open_unix_connection(sock=b)
    start = time.perf_counter()
    _, got = await asyncio.gather(_send(wa, total), _receive(rb))
    elapsed = time.perf_counter() - start
    wb.close()
    assert got == total, got
    return elapsed


async def _relayed(total: int) -> float:
    from launcher.executors.ray import control
    from launcher.executors.ray.node import pump
    from launcher.executors.ray.relay import RelayListener

    relay = RelayListener("127.0.0.1", 0)
    await relay.start()
    ticket = relay.issue(60)
    # The worker's socket on the node, and the node's dial to the hub.
    worker, node_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    _, worker_w = await asyncio.open_unix_connection(sock=worker)
    node_r, _ = await asyncio.open_unix_connection(sock=node_side)
    up_r, up_w = await asyncio.open_connection("127.0.0.1", relay.port)
    up_w.write(control.handshake("data", ticket.token))
    assert await up_r.readline() == b"OK\n"
    hub_r, hub_w = await ticket.channels["data"]
    start = time.perf_counter()
    _, _, got = await asyncio.gather(_send(worker_w, total), pump(node_r, up_w), _receive(hub_r))
    elapsed = time.perf_counter() - start
    hub_w.close()
    await relay.close()
    assert got == total, got
    return elapsed


def measure_relay(settings: Settings) -> list[Figure]:
    rounds = settings.count(3, 1)
    me = psutil.Process()
    base = me.memory_info().rss
    direct = median([asyncio.run(_direct(RELAY_BYTES)) for _ in range(rounds)])
    relayed = median([asyncio.run(_relayed(RELAY_BYTES)) for _ in range(rounds)])
    grown = max(0, me.memory_info().rss - base)
    mib = RELAY_BYTES / 2**20
    return [
        Figure(
            "ray: relay throughput, 256 MiB (one process)",
            mib / relayed,
            "MiB/s",
            "direct Unix socket",
            mib / direct,
            Target("ratio", ">=", 0.2),
            {"rounds": rounds, "rss_growth_mib": round(grown / 2**20, 1)},
        )
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--inner":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        _inner(int(sys.argv[2]))
    else:
        for figure in measure(Settings(quick="--quick" in sys.argv)):
            print(figure)
