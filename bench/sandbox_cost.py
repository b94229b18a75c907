"""Measurement 2, sandbox overhead: spawning one worker with every layer vs with none.

Each worker is the real ``python -m runtime``: started by ``create_sandbox(...).start(plan)``,
it connects to a listening Unix socket, the socket is closed, and it exits. Timed from the
start call to the exit, for three sandboxes in the same run: every layer (zygote fork), every
layer but the zygote (exec'd entry helper), and every configurable layer off (plain spawn, the
reference). The first worker of each sandbox (which starts its zygote) is not counted.

Beside them, what the child-side layers cost each worker, timed inside a forked child: the
file system view (mount namespace, the one disk-budget tmpfs, the made /etc, binds by fd) and
installing the seccomp allowlist.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import BENCH_MODELS, TRIVIAL_MODEL, Settings, median, temp_dir
from bench.report import Figure
from launcher.sandbox import (
    LAYER_NAMES,
    Sandbox,
    SandboxConfig,
    WorkerPlan,
    create_sandbox,
    libc,
    seccomp,
)
from launcher.sandbox.layered import LayeredSandbox
from launcher.sandbox.mounts import build_root
from launcher.spec import LauncherSpec
from launcher.worker.listener import WorkerListener

STEP_TIMEOUT = 30.0
SPEC = LauncherSpec(cpus=1, memory_mebibytes=512)


async def _one_worker(sandbox: Sandbox, job_dir: Path) -> tuple[float, float]:
    """(seconds to connect, seconds to exit) of one runtime worker."""
    job_dir.mkdir(mode=0o700)
    ipc = job_dir / "ipc.sock"
    plan = WorkerPlan(
        argv=[sys.executable, "-m", "runtime"],
        env={"IPC_PATH": str(ipc), "PATH": "/usr/bin:/bin", "HOME": str(job_dir)},
        model_dir=BENCH_MODELS / TRIVIAL_MODEL,
        job_dir=job_dir,
        spec=SPEC,
    )
    async with WorkerListener(ipc) as listener:
        start = time.perf_counter()
        worker = await sandbox.start(plan)
        try:
            _, writer = await asyncio.wait_for(listener.accept(), STEP_TIMEOUT)
            connected = time.perf_counter() - start
            writer.close()
            ended = await asyncio.wait_for(worker.wait(), STEP_TIMEOUT)
            exited = time.perf_counter() - start
        finally:
            await worker.close()
    if ended.exit_code != 0:
        raise RuntimeError(f"the worker ended {ended}: {worker.log_tail()}")
    return connected, exited


@dataclass
class SpawnSeries:
    connect_ms: list[float]
    exit_ms: list[float]
    layers: dict[str, str]


async def _series(disable: frozenset[str], n: int, folder: Path) -> SpawnSeries:
    sandbox = await create_sandbox(SandboxConfig(state_dir=folder / "sandbox", disable=disable))
    try:
        await _one_worker(sandbox, folder / "warm")
        samples = [await _one_worker(sandbox, folder / f"job{i}") for i in range(n)]
    finally:
        await sandbox.close()
    return SpawnSeries(
        connect_ms=[c * 1000 for c, _ in samples],
        exit_ms=[e * 1000 for _, e in samples],
        layers=sandbox.layers(),
    )


def _run(disable: frozenset[str], n: int) -> SpawnSeries:
    with temp_dir("sandbox") as folder:
        return asyncio.run(_series(disable, n, folder))


def _in_child(step: Callable[[], float]) -> float:
    """Milliseconds ``step`` reports, run in a forked child (its changes die with it)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            os.write(write_fd, struct.pack("d", step()))
        finally:
            os._exit(0)
    os.close(write_fd)
    data = os.read(read_fd, 8)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return struct.unpack("d", data)[0] * 1000 if len(data) == 8 else float("nan")


async def _layer_costs(n: int, folder: Path) -> dict[str, list[float]]:
    job = folder / "job"
    job.mkdir(mode=0o700)
    (job / "ipc.sock").touch()
    sandbox = await create_sandbox(
        SandboxConfig(state_dir=folder / "sandbox", bindable_dirs=(BENCH_MODELS.parent,))
    )
    try:
        assert isinstance(sandbox, LayeredSandbox)
        plan = WorkerPlan(
            argv=[sys.executable, "-m", "runtime"],
            env={"PATH": "/usr/bin:/bin"},
            model_dir=BENCH_MODELS / TRIVIAL_MODEL,
            job_dir=job,
            spec=LauncherSpec(cpus=1, memory_mebibytes=512, disk_mebibytes=64),
        )
        recipe = sandbox.recipe(plan, None, True)
        on = sandbox.layers()
    finally:
        await sandbox.close()

    def view() -> float:
        assert recipe.layout is not None
        libc.unshare(libc.CLONE_NEWNS)
        start = time.perf_counter()
        build_root(recipe.layout)
        return time.perf_counter() - start

    def allowlist() -> float:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        start = time.perf_counter()
        seccomp.install()
        return time.perf_counter() - start

    out: dict[str, list[float]] = {}
    if on.get("mountns") == "on" and recipe.layout is not None:
        out["file system view"] = [_in_child(view) for _ in range(n)]
    if on.get("seccomp") == "on":
        out["seccomp allowlist"] = [_in_child(allowlist) for _ in range(n)]
    return out


def _layers(n: int) -> dict[str, list[float]]:
    with temp_dir("sandbox-layers") as folder:
        return asyncio.run(_layer_costs(n, folder))


def measure(settings: Settings) -> list[Figure]:
    n = settings.count(10, 1)
    layer_ms = _layers(settings.count(25, 3))
    full = _run(frozenset(), n)
    no_zygote = _run(frozenset({"zygote"}), n)
    none = _run(LAYER_NAMES, n)
    reference = median(none.exit_ms)
    return [
        Figure(
            "2. worker spawn to exit, all layers (zygote)",
            median(full.exit_ms),
            "ms",
            "no layers",
            reference,
            detail={"all": asdict(full), "none": asdict(none)},
        ),
        Figure(
            "2. worker spawn to exit, all layers but zygote",
            median(no_zygote.exit_ms),
            "ms",
            "no layers",
            reference,
            detail={"all_but_zygote": asdict(no_zygote)},
        ),
        *(
            Figure(
                f"2. per-worker cost of the {layer} (in the worker's setup)",
                median(samples),
                "ms",
                "no layers",
                reference,
                detail={"samples_ms": samples},
            )
            for layer, samples in layer_ms.items()
        ),
    ]
