"""Running a hostile program in a fresh sandbox, as the tests do (no pytest-asyncio here)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

from launcher.sandbox import SandboxConfig, Termination, WorkerPlan, create_sandbox
from launcher.sandbox.layered import LayeredSandbox
from launcher.sandbox.types import WorkerProcess
from launcher.spec import LauncherSpec

HOSTILE = Path(__file__).parent
T = TypeVar("T")

# Every layer that configuration can turn off, off: the fallbacks alone.
ALL_OFF = frozenset({"namespaces", "uid", "cgroup", "seccomp", "zygote", "spare", "rlimits"})


@dataclass
class Place:
    """A model folder, a job folder and a launcher data root, all under one tmp dir."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def job(self) -> Path:
        return self.root / "job"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def make(self) -> Place:
        for path in (self.model, self.job, self.data / "states" / "other"):
            path.mkdir(parents=True, exist_ok=True)
        (self.model / "main.py").write_text("model = None\n")
        (self.data / "launcher.db").write_text("secret database")
        (self.data / "states" / "other" / "key").write_text("another model's state")
        return self


def config_for(
    place: Place, disable: frozenset[str] = frozenset(), **extra: object
) -> SandboxConfig:
    return SandboxConfig(
        state_dir=place.root / "sandbox-state",
        disable=disable,
        hide=(place.data,),
        expose=(HOSTILE,),
        **extra,  # type: ignore[arg-type]
    )


def plan_for(
    place: Place,
    program: str,
    *args: str,
    spec: LauncherSpec | None = None,
    fork_runtime: bool = True,
) -> WorkerPlan:
    return WorkerPlan(
        argv=[sys.executable, str(HOSTILE / program), *args],
        env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        model_dir=place.model,
        job_dir=place.job,
        spec=spec or LauncherSpec(memory_mebibytes=512),
        fork_runtime=fork_runtime,
    )


#: A plan that ``in_sandbox`` runs to its end before the body (None: it does not): the
#: body's first worker is then the spare sandbox made after it, not a fresh fork.
PRIME: WorkerPlan | None = None


def in_sandbox(config: SandboxConfig, body: Callable[[LayeredSandbox], Awaitable[T]]) -> T:
    """Run ``body`` with a fresh sandbox in a fresh event loop; the sandbox is closed after."""

    async def run() -> T:
        sandbox = await create_sandbox(config)
        try:
            if PRIME is not None and sandbox.layers().get("spare") == "on":
                termination, log = await run_to_end(sandbox, PRIME)
                assert termination.exit_code == 0, log
            return await body(sandbox)
        finally:
            await sandbox.close()

    return asyncio.run(run())


async def run_to_end(
    sandbox: LayeredSandbox, plan: WorkerPlan, timeout: float = 20.0
) -> tuple[Termination, str]:
    worker = await sandbox.start(plan)
    try:
        termination = await asyncio.wait_for(worker.wait(), timeout)
        return termination, worker.log_tail()
    finally:
        await worker.close()


async def kill_after(worker: WorkerProcess, seconds: float) -> Termination:
    await asyncio.sleep(seconds)
    worker.kill()
    return await asyncio.wait_for(worker.wait(), 10)


def tagged(tag: str) -> list[psutil.Process]:
    """Live processes whose command line carries ``tag``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if tag in (proc.info["cmdline"] or []) and proc.info["status"] != "zombie":
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_until_gone(tag: str, seconds: float = 5.0) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = tagged(tag)
        if not left:
            return []
        time.sleep(0.05)
    return tagged(tag)
