"""``LocalExecutor``: workers in this machine's sandbox, GPUs from this machine's inventory."""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.executors.base import SpecRefused, Worker
from launcher.executors.connect import start_connected
from launcher.executors.plan import worker_plan
from launcher.executors.teardown import Teardowns
from launcher.sandbox.gpus import GpuInventory, GpuRequestError, GpusBusy
from launcher.sandbox.types import Sandbox
from launcher.spec import LauncherSpec
from launcher.worker.session import WorkerSession

if TYPE_CHECKING:
    from launcher.store.models import ModelConfig

log = logging.getLogger("launcher.executors")


class LocalExecutor:
    """Starts workers in ``sandbox``, each in a fresh folder under ``run_dir``; logs to
    ``log_dir``; GPUs assigned exclusively from ``gpus``."""

    _ids = itertools.count(1)

    #: How often a job waiting for busy GPUs looks again.
    GPU_POLL = 0.05

    def __init__(
        self, sandbox: Sandbox, run_dir: Path, log_dir: Path, gpus: GpuInventory | None = None
    ) -> None:
        self.sandbox = sandbox
        self.run_dir = run_dir
        self.gpus = gpus or GpuInventory([])
        self._group_workers: dict[str, int] = {}
        self._teardowns = Teardowns(log_dir, self._teardown)

    def check_spec(self, spec: LauncherSpec) -> None:
        if spec.gpus is not None:
            try:
                self.gpus.check(spec.gpus.model, spec.gpus.count)
            except GpuRequestError as e:
                raise SpecRefused("gpus", str(e)) from None

    def layers(self) -> dict[str, str]:
        return self.sandbox.layers()

    def limits(self) -> dict[str, str]:
        gpus = ", ".join(f"{g.id}: {g.model}" for g in self.gpus.gpus)
        return {"executor": "local", "gpus": gpus or "none"}

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
        gpu_ids = await self._allocate_gpus(spec)
        work_dir = self.run_dir / f"w{next(self._ids)}"
        self._join_group(group)
        try:
            work_dir.mkdir(mode=0o700)
            plan = worker_plan(
                model.runtime,
                model.fresh_process,
                model.path,
                work_dir,
                spec,
                [Path(m) for m in mounts],
                gpu_ids,
                group,
            )
            if not plan.fork_runtime:
                log.info(
                    "model %s: worker started as a fresh process (%s), not forked from the zygote",
                    model.model_id,
                    "official runtime" if model.runtime == "decthings-model" else "fresh_process",
                )
            process, reader, writer = await start_connected(self.sandbox, plan, connect_limit)
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            self.gpus.release(gpu_ids)
            self._leave_group(group)
            raise
        return Worker(
            process,
            WorkerSession(reader, writer),
            work_dir,
            model.model_id,
            model.code_version,
            tuple(mounts),
            main_py=model.main_py,
            gpu_ids=gpu_ids,
            group=group,
        )

    def release(self, worker: Worker, log_name: str) -> None:
        self._teardowns.release(worker, log_name)

    async def stop(self, worker: Worker, log_name: str) -> None:
        await self._teardowns.stop(worker, log_name)

    def open_group(self, group: str, spec: LauncherSpec) -> None:
        """Nothing to prepare: the group's cgroup is made with its first worker."""

    def group_usage(self, group: str) -> Any:
        """What a persistent launcher's workers use now (its cgroup), or None."""
        usage = getattr(self.sandbox, "group_usage", None)
        return usage(group) if usage is not None else None

    def close_group(self, group: str) -> None:
        if group not in self._group_workers:
            self.sandbox.release_group(group)

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

    async def _teardown(self, worker: Worker) -> None:
        """After the worker's process is closed: its folder, GPUs and group share go."""
        if worker.dir is not None:
            shutil.rmtree(worker.dir, ignore_errors=True)
        gpu_ids, worker.gpu_ids = worker.gpu_ids, []
        self.gpus.release(gpu_ids)
        group, worker.group = worker.group, None
        self._leave_group(group)

    async def close(self) -> None:
        await self._teardowns.wait()
        await self.sandbox.close()
