"""Measurement 5: throughput of trivial createState jobs with 8 concurrent clients.

Each client is a thread with its own channel, calling in a loop for a fixed time, on a
temporary launcher per job and on one persistent launcher. Reference, same run and same 8
threads: the launcher's gRPC health checks per second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import CpuMeter, Settings, median, running_launcher
from bench.create_state import (
    CALL_TIMEOUT,
    TEMPORARY,
    Series,
    persistent_location,
    trivial_job,
)
from bench.report import Figure, Target
from launcher.client import LauncherClient

CLIENTS = 8


def _rate(worker: Callable[[Callable[[], bool]], Series], seconds: float) -> tuple[float, Series]:
    """Runs ``worker(keep_going)`` in CLIENTS threads for ``seconds``; (successes/s, all)."""
    results = [Series() for _ in range(CLIENTS)]
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def run(i: int) -> None:
        try:
            results[i] = worker(lambda: time.perf_counter() < deadline)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 2 * CALL_TIMEOUT)
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}") from errors[0]
    total = Series()
    for result in results:
        total.extend(result)
    return len(total.times) / elapsed, total


def _job_rate(address: str, location: dict[str, Any], seconds: float) -> tuple[float, Series]:
    def worker(keep_going: Callable[[], bool]) -> Series:
        series = Series()
        with LauncherClient(address, timeout=CALL_TIMEOUT) as client:
            while keep_going():
                series.call(client, location)
        return series

    return _rate(worker, seconds)


def _health_rate(address: str, seconds: float) -> tuple[float, Series]:
    def worker(keep_going: Callable[[], bool]) -> Series:
        series = Series()
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while keep_going():
                start = time.perf_counter()
                stub.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
                series.times.append(time.perf_counter() - start)
        return series

    return _rate(worker, seconds)


def measure(settings: Settings) -> list[Figure]:
    seconds = settings.count(6, 1)
    with running_launcher() as launcher, LauncherClient(launcher.address, timeout=60) as client:
        persistent = persistent_location(client)
        trivial_job(client, persistent)  # start the zygote
        health_rate, health = _health_rate(launcher.address, seconds)
        cpu = CpuMeter(launcher.pid)
        temp_rate, temp_jobs = _job_rate(launcher.address, TEMPORARY, seconds)
        temp_cpu = cpu.lap()
        pers_rate, pers_jobs = _job_rate(launcher.address, persistent, seconds)
        pers_cpu = cpu.lap()
    detail = {
        "clients": CLIENTS,
        "seconds": seconds,
        "health_checks": len(health.times),
        "health_p50_ms": median(health.times) * 1000,
    }
    return [
        Figure(
            f"5. throughput, {CLIENTS} clients, {kind} (jobs)",
            rate,
            "/s",
            "health checks",
            health_rate,
            # The target is the persistent launcher's (trivial jobs on warm sessions); a
            # temporary job builds and tears down a whole sandbox (~20 ms of CPU on 2 cores).
            Target("value", ">=", 200) if kind == "persistent" else None,
            {
                **detail,
                **jobs.detail(),
                "p50_ms": median(jobs.times) * 1000 if jobs.times else None,
                # CPU seconds per successful job, of the launcher and of this process (the 8
                # clients): what bounds the rate on a small machine.
                "cpu_ms_per_job": {k: v * 1000 / max(1, len(jobs.times)) for k, v in use.items()},
            },
            len(jobs.failures),
        )
        for kind, rate, jobs, use in (
            ("temporary", temp_rate, temp_jobs, temp_cpu),
            ("persistent", pers_rate, pers_jobs, pers_cpu),
        )
    ]
