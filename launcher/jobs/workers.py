"""Obtaining and releasing workers: plan, sandboxed start, connection, stop and log."""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher import outcomes as oc
from launcher.sandbox.gpus import GpuInventory, GpusBusy
from launcher.sandbox.types import Sandbox, Termination, WorkerPlan, WorkerProcess
from launcher.spec import LauncherSpec
from launcher.store.models import ModelConfig
from launcher.worker.listener import WorkerListener
from launcher.worker.session import WorkerSession

log = logging.getLogger("launcher.jobs")


class PhaseFailed(Exception):
    """A phase ended in a failure outcome."""

    def __init__(self, outcome: oc.Failure) -> None:
        super().__init__(repr(outcome))
        self.outcome = outcome


@dataclass
class Worker:
    """A started, connected worker and the private folder it runs in."""

    process: WorkerProcess
    session: WorkerSession
    dir: Path
    model_id: str
    code_version: str
    mounts: tuple[str, ...]
    gpu_ids: list[str] = field(default_factory=list)
    group: str | None = None
    idle_since: float = field(default=0.0)

    @property
    def alive(self) -> bool:
        return not self.session.ended.done()


def worker_plan(
    model: ModelConfig,
    work_dir: Path,
    spec: LauncherSpec,
    mounts: list[Path],
    gpu_ids: list[str] | None = None,
    group: str | None = None,
) -> WorkerPlan:
    """The plan of a worker for ``model``: our runtime, or the official one, unchanged."""
    ipc = str(work_dir / "ipc.sock")
    if model.runtime == "decthings-model":
        argv = [sys.executable, "-m", "decthings_model"]
        env = {"IPC_PATH": ipc}
    else:
        argv = [sys.executable, "-m", "runtime"]
        threads = str(max(1, int(spec.cpus)))
        env = {
            "IPC_PATH": ipc,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(work_dir),
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "OPENBLAS_NUM_THREADS": threads,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }
    return WorkerPlan(
        argv=argv,
        env=env,
        model_dir=model.path,
        job_dir=work_dir,
        spec=spec,
        mounts=mounts,
        gpu_ids=list(gpu_ids or []),
        group=group,
        fork_runtime=model.runtime == "python" and not model.fresh_process,
    )


def terminated(termination: Termination) -> oc.CodeTerminated:
    return oc.CodeTerminated(termination.exit_code, termination.signal, termination.oom)


class WorkerStarter:
    """Starts workers in the sandbox, each in a fresh folder under ``run_dir``."""

    _ids = itertools.count(1)

    #: How often a job waiting for busy GPUs looks again.
    GPU_POLL = 0.05

    def __init__(
        self, sandbox: Sandbox, run_dir: Path, log_dir: Path, gpus: GpuInventory | None = None
    ) -> None:
        self.sandbox = sandbox
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.gpus = gpus or GpuInventory([])
        self._group_workers: dict[str, int] = {}

    async def _allocate_gpus(self, spec: LauncherSpec) -> list[str]:
        """The job's GPUs, exclusively; waits (cancellably) while they are all taken."""
        if spec.gpus is None:
            return []
        while True:
            try:
                return self.gpus.allocate(spec.gpus.model, spec.gpus.count)
            except GpusBusy:
                await asyncio.sleep(self.GPU_POLL)

    async def start(
        self,
        model: ModelConfig,
        spec: LauncherSpec,
        mounts: list[str],
        connect_limit: float,
        group: str | None = None,
    ) -> Worker:
        """Start and connect a worker; ``PhaseFailed`` if it dies or does not connect in time.
        Workers of one ``group`` (a persistent launcher) share ``spec`` as one budget."""
        gpu_ids = await self._allocate_gpus(spec)
        work_dir = self.run_dir / f"w{next(self._ids)}"
        self._join_group(group)
        try:
            work_dir.mkdir(mode=0o700)
            worker = await self._start(model, spec, mounts, connect_limit, work_dir, gpu_ids, group)
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            self.gpus.release(gpu_ids)
            self._leave_group(group)
            raise
        worker.gpu_ids = gpu_ids
        worker.group = group
        return worker

    def _join_group(self, group: str | None) -> None:
        if group is not None:
            self._group_workers[group] = self._group_workers.get(group, 0) + 1

    def _leave_group(self, group: str | None) -> None:
        """The group's shared budget goes with its last worker (made again for the next)."""
        if group is None:
            return
        self._group_workers[group] -= 1
        if not self._group_workers[group]:
            del self._group_workers[group]
            self.sandbox.release_group(group)

    async def _start(
        self,
        model: ModelConfig,
        spec: LauncherSpec,
        mounts: list[str],
        connect_limit: float,
        work_dir: Path,
        gpu_ids: list[str],
        group: str | None,
    ) -> Worker:
        plan = worker_plan(model, work_dir, spec, [Path(m) for m in mounts], gpu_ids, group)
        if not plan.fork_runtime:
            log.info(
                "model %s: worker started as a fresh process (%s), not forked from the zygote",
                model.model_id,
                "official runtime" if model.runtime == "decthings-model" else "fresh_process",
            )
        async with WorkerListener(work_dir / "ipc.sock") as listener:
            process = await self.sandbox.start(plan)
            accept = asyncio.ensure_future(listener.accept())
            exited = asyncio.shield(process.wait())  # cancelling our wait must not stop theirs
            try:
                waiters: set[asyncio.Future[Any]] = {accept, exited}
                done, _ = await asyncio.wait(
                    waiters, timeout=connect_limit, return_when=asyncio.FIRST_COMPLETED
                )
            except BaseException:
                accept.cancel()
                process.kill()
                await asyncio.shield(process.close())
                raise
            if accept in done:
                reader, writer = accept.result()
                exited.cancel()
                return Worker(
                    process,
                    WorkerSession(reader, writer),
                    work_dir,
                    model.model_id,
                    model.code_version,
                    tuple(mounts),
                )
            accept.cancel()
            process.kill()
            await asyncio.shield(process.close())
            if exited in done:
                raise PhaseFailed(terminated(exited.result()))
            exited.cancel()
            raise PhaseFailed(oc.MaxDurationExceeded("codeStartup"))

    async def stop(self, worker: Worker, log_name: str) -> None:
        """Kill the worker and everything it started; keep its log; remove its folder."""
        worker.session.close()
        worker.process.kill()
        try:
            await asyncio.shield(worker.process.close())
        finally:
            tail = worker.process.log_tail()
            if tail:
                await asyncio.to_thread(self._save_log, log_name, tail)
            shutil.rmtree(worker.dir, ignore_errors=True)
            gpu_ids, worker.gpu_ids = worker.gpu_ids, []
            self.gpus.release(gpu_ids)
            group, worker.group = worker.group, None
            self._leave_group(group)

    def _save_log(self, name: str, text: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.log_dir / f"{name}.log").write_text(text)
