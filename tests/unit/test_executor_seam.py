"""The executor seam without the gRPC server: the job runner on a LocalExecutor, real workers.

The runner, the session pool and the executor are built by hand (as the Ray issue's node or
any other host would); jobs run real sandboxed workers and store real state files.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import outcomes as oc
from launcher.executors import LocalExecutor, SpecRefused, WorkerState
from launcher.executors.sessions import SessionPool
from launcher.jobs.job import Job
from launcher.jobs.request import JobRequest
from launcher.jobs.runner import JobRunner
from launcher.sandbox import SandboxConfig, create_sandbox
from launcher.sandbox.gpus import Gpu, GpuInventory
from launcher.spec import GpuRequest, LauncherSpec
from launcher.store.db import Database
from launcher.store.models import ModelRegistry
from launcher.store.states import StateStore
from tests.support.launcher_proc import populate_models

SPEC = LauncherSpec(cpus=1, memory_mebibytes=256)


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ls-"))  # short: worker socket paths are limited
    populate_models(path / "models")
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _parts(root: Path) -> tuple[JobRunner, LocalExecutor, ModelRegistry, StateStore]:
    run_dir = root / "run"
    run_dir.mkdir(mode=0o711)
    sandbox = await create_sandbox(
        SandboxConfig(state_dir=run_dir / "sandbox", hide=(root,), bindable_dirs=(root / "models",))
    )
    gpus = GpuInventory([Gpu("0", "H100", 0)])
    executor = LocalExecutor(sandbox, run_dir, root / "logs", gpus)
    states = StateStore(root, Database(root / "launcher.db"))
    sessions = SessionPool(lambda w: executor.stop(w, "session"))
    return JobRunner(executor, states, sessions), executor, ModelRegistry(root / "models"), states


def _job(states: StateStore, models: ModelRegistry, model_id: str, **kw: object) -> Job:
    request = JobRequest(model_id, "seam", models.load(model_id), None, spec=SPEC, **kw)
    return Job(states.new_state_id(), request)


def test_the_runner_runs_jobs_without_a_server(root: Path) -> None:
    async def go() -> None:
        runner, executor, models, states = await _parts(root)
        try:
            job = _job(states, models, "hello")
            result = await runner.run(job)
            assert result.outcome == oc.Success(job.state_id), result
            assert states.get("hello", job.state_id).id == job.state_id
            failed = await runner.run(_job(states, models, "exit_code"))
            assert failed.outcome == oc.CodeTerminated(exit_code=3)
        finally:
            await runner.sessions.close()
            await executor.close()
        assert list((root / "run").glob("w*")) == []  # every worker folder torn down

    asyncio.run(asyncio.wait_for(go(), 120))


def test_warm_workers_go_idle_and_busy_and_stop_once(root: Path) -> None:
    async def go() -> None:
        runner, executor, models, states = await _parts(root)
        try:
            first = await runner.run(_job(states, models, "counter", persistent_launcher_id="pl"))
            assert first.success
            model = models.load("counter")
            worker = runner.sessions.take("pl", "counter", model.code_version, ())
            assert worker is not None and worker.state is WorkerState.IDLE
            worker.busy()
            with pytest.raises(RuntimeError, match="from busy to initialized"):
                worker.initialized()
            executor.release(worker, "twice")
            executor.release(worker, "twice")  # one teardown, however often it is asked
            await executor.stop(worker, "twice")
            assert worker.state is WorkerState.STOPPED and not worker.alive
        finally:
            await runner.sessions.close()
            await executor.close()

    asyncio.run(asyncio.wait_for(go(), 120))


def test_a_spec_the_machine_can_never_hold_is_refused_by_the_executor(root: Path) -> None:
    async def go() -> None:
        runner, executor, *_ = await _parts(root)
        try:
            executor.check_spec(LauncherSpec(gpus=GpuRequest("H100", 1)))
            with pytest.raises(SpecRefused) as refused:
                executor.check_spec(LauncherSpec(gpus=GpuRequest("H100", 2)))
            assert refused.value.field == "gpus"
            assert executor.limits() == {"executor": "local", "gpus": "0: H100"}
            assert executor.layers()
        finally:
            await executor.close()

    asyncio.run(asyncio.wait_for(go(), 60))
