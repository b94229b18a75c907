"""Measurements 3-4: warm and cold createState latency of a trivial model; the job helpers.

Each against its own real launcher with the sandbox on. References, same run: the launcher's
own gRPC health check (warm) and a fresh ``python -c "import numpy"`` process (cold). Every
series also keeps the launcher's reported phase durations, to show where the time goes.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import (
    TRIVIAL_MODEL,
    CpuMeter,
    Settings,
    median,
    numpy_import_times,
    percentile,
    running_launcher,
)
from bench.report import Figure, Target
from launcher.client import LauncherClient

SPEC = {"cpus": 1, "memoryMebibytes": 512}
TEMPORARY = {"type": "temporaryLauncher", "spec": SPEC}
CALL_TIMEOUT = 60.0


class JobFailed(Exception):
    """A createState answered other than success (the launcher's fault, counted not fatal)."""


def trivial_job(
    client: LauncherClient, location: dict[str, Any], streamed: bool = False
) -> tuple[float, dict[str, int]]:
    """One trivial createState: (client-observed seconds, the launcher's durations).
    ``streamed``: through ``create_state_stream`` (the phase events too) instead of the
    one-message form ``create_state`` uses. Anything but success raises JobFailed."""
    start = time.perf_counter()
    if streamed:
        response = list(
            client.model.create_state_stream(
                model_id=TRIVIAL_MODEL, name="bench", params=[], execution_location=location
            )
        )[-1]
    else:
        response = client.model.create_state(
            model_id=TRIVIAL_MODEL, name="bench", params=[], execution_location=location
        )
    elapsed = time.perf_counter() - start
    success = response.get("result", {}).get("success")
    if success is None:
        raise JobFailed(f"createState did not succeed: {response}")
    return elapsed, success["durations"]


def phase_medians(durations: list[dict[str, int]]) -> dict[str, float]:
    """Per phase the launcher reports (total, createLauncher, ...), its median in ms."""
    phases = sorted({phase for d in durations for phase in d})
    return {p: median([d[p] for d in durations if p in d]) for p in phases}  # already ms


@dataclass
class Series:
    """Latencies of successful jobs (with the launcher's durations), and the failures."""

    times: list[float] = field(default_factory=list)
    durations: list[dict[str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def call(
        self, client: LauncherClient, location: dict[str, Any], streamed: bool = False
    ) -> None:
        try:
            elapsed, durations = trivial_job(client, location, streamed)
        except JobFailed as e:
            self.failures.append(str(e))
            return
        self.times.append(elapsed)
        self.durations.append(durations)

    def run(
        self, client: LauncherClient, location: dict[str, Any], n: int, streamed: bool = False
    ) -> Series:
        for _ in range(n):
            self.call(client, location, streamed)
        if not self.times:
            raise RuntimeError(f"every job failed; the first: {self.failures[0]}")
        return self

    def extend(self, other: Series) -> None:
        self.times += other.times
        self.durations += other.durations
        self.failures += other.failures

    def detail(self) -> dict[str, Any]:
        return {
            "calls": len(self.times) + len(self.failures),
            "launcher_p50_ms": phase_medians(self.durations),
            "first_failure": self.failures[:1],
        }


def persistent_location(client: LauncherClient) -> dict[str, Any]:
    created = client.persistent_launcher.create_persistent_launcher(name="bench", spec=SPEC)
    if "result" not in created:
        raise RuntimeError(f"create_persistent_launcher failed: {created}")
    return {
        "type": "persistentLauncher",
        "persistentLauncherId": created["result"]["persistentLauncherId"],
    }


class HealthProbe:
    """Health checks on a channel of their own, connected by one untimed check."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = health_pb2_grpc.HealthStub(self._channel)
        self.times(1)  # the first one pays for connecting

    def times(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            self._stub.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
            times.append(time.perf_counter() - start)
        return times

    def close(self) -> None:
        self._channel.close()


def _warm_up(client: LauncherClient, location: dict[str, Any], n: int) -> None:
    """The first calls start the zygote and the session; failures show in the series after."""
    warm_up = Series()
    for _ in range(n):
        warm_up.call(client, location)


def fsync_floor(directory: Path, n: int) -> dict[str, float]:
    """The disk's floor for one durable commit, in ms (p50): a small file written and
    fsync'd, and a one-row SQLite commit in WAL mode with ``synchronous=FULL`` (what a
    state commit costs at the least)."""
    files: list[float] = []
    commits: list[float] = []
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        path = Path(scratch) / "small"
        for _ in range(n):
            start = time.perf_counter()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"x" * 512)
                os.fsync(fd)
            finally:
                os.close(fd)
            files.append(time.perf_counter() - start)
        conn = sqlite3.connect(Path(scratch) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        for i in range(n):
            start = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?, ?)", (i, b"x" * 64))
            conn.execute("COMMIT")
            commits.append(time.perf_counter() - start)
        conn.close()
    return {
        "file_fsync_p50_ms": median(files) * 1000,
        "sqlite_full_commit_p50_ms": median(commits) * 1000,
    }


def measure_warm(settings: Settings) -> list[Figure]:
    rounds, per_round = settings.count(10, 2), settings.count(20, 5)
    with running_launcher() as launcher, LauncherClient(launcher.address, timeout=60) as client:
        persistent = persistent_location(client)
        _warm_up(client, persistent, 3)
        probe = HealthProbe(launcher.address)
        # Rounds of jobs and health checks by turns, pooled: the machine's state (other
        # guests of the host, memory it takes back) drifts over a run, and both sides of the
        # ratio see the same drift instead of one seeing the quiet minute.
        warm, health, used = Series(), [], {}
        try:
            for _ in range(rounds):
                cpu = CpuMeter(launcher.pid)
                warm.run(client, persistent, per_round)
                for k, v in cpu.lap().items():
                    used[k] = used.get(k, 0.0) + v
                health += probe.times(per_round)
        finally:
            probe.close()
        streamed = Series().run(client, persistent, settings.count(50, 3), streamed=True)
        floor = fsync_floor(launcher.root, settings.count(50, 5))
    health_p50 = median(health) * 1000
    detail = {
        **warm.detail(),
        "health_p99_ms": percentile(health, 99) * 1000,
        # The same job through create_state_stream (phase events streamed): the streaming
        # call's own cost against the one-message form create_state uses.
        "streamed_p50_ms": median(streamed.times) * 1000,
        # CPU per job of the launcher, of the sandbox (zygote, keepers, workers) and of this
        # client, so that the figure is about the launcher.
        "cpu_ms_per_job": {k: v * 1000 / max(1, len(warm.times)) for k, v in used.items()},
        "durable_floor": floor,
    }
    return [
        Figure(
            "3. warm createState p50 (persistent)",
            median(warm.times) * 1000,
            "ms",
            "health check p50",
            health_p50,
            Target("ratio", "<=", 5),
            detail,
            len(warm.failures),
        ),
        Figure(
            "3. warm createState p99 (persistent)",
            percentile(warm.times, 99) * 1000,
            "ms",
            "health check p50",
            health_p50,
            detail=warm.detail(),
            failures=len(warm.failures),
        ),
        Figure(
            "3. durable floor: small file write+fsync p50",
            floor["file_fsync_p50_ms"],
            "ms",
            "SQLite synchronous=FULL commit p50",
            floor["sqlite_full_commit_p50_ms"],
            detail=floor,
        ),
    ]


#: Rounds of the cold row: each a run of cold jobs, then a few reference starts, so that a
#: slow spell of a shared machine falls on both sides alike.
COLD_ROUNDS = 5


def measure_cold(settings: Settings) -> list[Figure]:
    rounds = settings.count(COLD_ROUNDS, 1)
    calls, starts = settings.count(10, 3), settings.count(3, 2)
    cold, numpy_ref = Series(), []
    with running_launcher() as launcher, LauncherClient(launcher.address, timeout=60) as client:
        _warm_up(client, TEMPORARY, 1)
        for _ in range(rounds):
            cold.run(client, TEMPORARY, calls)
            numpy_ref += numpy_import_times(starts)
    return [
        Figure(
            "4. cold createState p50 (temporary, sandbox on)",
            median(cold.times) * 1000,
            "ms",
            "import numpy",
            median(numpy_ref) * 1000,
            Target("ratio", "<=", 0.25),
            {**cold.detail(), "p99_ms": percentile(cold.times, 99) * 1000},
            len(cold.failures),
        )
    ]
