"""Running one job: obtain a worker, initialize, createModelState, commit; every exit typed.

The phases and what ends them:
- createLauncher (temporary launchers): the sandboxed worker starts and connects.
- codeStartup: ``initialize`` until ``modelSessionInitialized`` (on a persistent launcher,
  the worker start too; absent when a warm session is reused).
- createState: ``callCreateModelState`` until its result; keys stream to disk meanwhile.
Deadlines come from the model's ``max_durations_seconds``; a worker that goes away is
``code_terminated`` (with the sandbox's proof of OOM), a worker that breaks the protocol
ends its job as an ``exception`` naming the violation.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from launcher import outcomes as oc
from launcher.jobs.job import Job, PhaseEvent
from launcher.sandbox.types import Sandbox, WorkerPlan, WorkerProcess
from launcher.spec import LauncherSpec
from launcher.store.models import ModelConfig
from launcher.store.states import StateStore
from launcher.worker.frames import ConnectionEnded, ProtocolViolation
from launcher.worker.listener import WorkerListener
from launcher.worker.session import CallResult, OtherModelSources, WorkerSession

log = logging.getLogger("launcher.jobs")

#: How long a worker that closed its socket gets to exit before it is killed.
EXIT_GRACE = 5.0


class PhaseFailed(Exception):
    def __init__(self, outcome: oc.Failure) -> None:
        super().__init__(repr(outcome))
        self.outcome = outcome


@dataclass
class Worker:
    process: WorkerProcess
    session: WorkerSession


def worker_plan(
    model: ModelConfig, job_dir: Path, spec: LauncherSpec, mounts: list[Path]
) -> WorkerPlan:
    """The plan of a worker for ``model``: our runtime, or the official one, unchanged."""
    ipc = str(job_dir / "ipc.sock")
    if model.runtime == "decthings-model":
        argv = [sys.executable, "-m", "decthings_model"]
        env = {"IPC_PATH": ipc}
    else:
        argv = [sys.executable, "-m", "runtime"]
        threads = str(max(1, int(spec.cpus)))
        env = {
            "IPC_PATH": ipc,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(job_dir),
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
        job_dir=job_dir,
        spec=spec,
        mounts=mounts,
        fork_runtime=model.runtime == "python",
    )


class JobRunner:
    """Runs jobs against one sandbox and one state store."""

    def __init__(self, sandbox: Sandbox, states: StateStore, run_dir: Path, log_dir: Path) -> None:
        self.sandbox = sandbox
        self.states = states
        self.run_dir = run_dir
        self.log_dir = log_dir

    async def run(self, job: Job) -> tuple[oc.Outcome, oc.Durations]:
        durations = oc.Durations()
        try:
            outcome = await self._run(job, durations)
        except asyncio.CancelledError:
            if not job.cancel_requested:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            outcome = job.cancel_outcome
        except PhaseFailed as e:
            outcome = e.outcome
        except Exception:
            log_id = uuid.uuid4().hex[:12]
            log.exception("job %s failed with an internal error [log id %s]", job.state_id, log_id)
            outcome = oc.Unknown(log_id)
        durations.total = time.monotonic() - job.accepted
        return outcome, durations

    @asynccontextmanager
    async def _phase(self, job: Job, phase: str, durations: oc.Durations) -> AsyncIterator[None]:
        job.emit(PhaseEvent(phase, finished=False))
        start = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - start
            setattr(durations, _FIELD[phase], elapsed)
            job.emit(PhaseEvent(phase, finished=True, duration=elapsed))

    async def _run(self, job: Job, durations: oc.Durations) -> oc.Outcome:
        request = job.request
        if request.startup_failure is not None:
            return request.startup_failure
        model = request.model
        assert model is not None and request.spec is not None
        job_dir = self.run_dir / job.state_id
        job_dir.mkdir(mode=0o700)
        pending = self.states.begin(
            model.model_id, request.name, job.state_id, [m.to_json() for m in request.mounts]
        )
        worker: Worker | None = None
        committed = False
        try:
            if request.persistent_launcher_id is None:
                async with self._phase(job, "createLauncher", durations):
                    worker = await self._start_worker(model, job_dir, request.spec, request)
                async with self._phase(job, "codeStartup", durations):
                    result = await self._initialize(worker, model)
            else:  # a persistent launcher: starting its worker is part of codeStartup
                async with self._phase(job, "codeStartup", durations):
                    worker = await self._start_worker(model, job_dir, request.spec, request)
                    result = await self._initialize(worker, model)
            if result.error_details is not None:
                return oc.ModelException("codeStartup", result.error_details)
            others = [OtherModelSources(m.model_id, m.path, m.keys) for m in request.mounts]
            async with self._phase(job, "createState", durations):
                result = await self._step(
                    worker,
                    "createState",
                    model.max_create_state,
                    worker.session.create_model_state(request.params, others, pending),
                )
            if result.error_details is not None:
                return oc.ModelException("createState", result.error_details)
            await asyncio.to_thread(pending.commit)
            committed = True
            return oc.Success(job.state_id)
        finally:
            if not committed:
                await asyncio.to_thread(pending.abort)
            if worker is not None:
                await self._stop_worker(job, worker)
            shutil.rmtree(job_dir, ignore_errors=True)

    async def _initialize(self, worker: Worker, model: ModelConfig) -> CallResult:
        return await self._step(
            worker, "codeStartup", model.max_code_startup, worker.session.initialize(model.main_py)
        )

    async def _start_worker(
        self, model: ModelConfig, job_dir: Path, spec: LauncherSpec, request: object
    ) -> Worker:
        mounts = [Path(m.path) for m in getattr(request, "mounts", [])]
        plan = worker_plan(model, job_dir, spec, mounts)
        async with WorkerListener(job_dir / "ipc.sock") as listener:
            process = await self.sandbox.start(plan)
            accept = asyncio.ensure_future(listener.accept())
            exited = asyncio.shield(process.wait())  # cancelling our wait must not stop theirs
            try:
                done, _ = await asyncio.wait(
                    {accept, exited},
                    timeout=model.max_code_startup,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            except BaseException:
                process.kill()
                await process.close()
                raise
            finally:
                accept.cancel()
            if accept in done and not accept.cancelled():
                reader, writer = accept.result()
                exited.cancel()
                return Worker(process, WorkerSession(reader, writer))
            process.kill()
            if exited in done:
                termination = exited.result()
                await process.close()
                raise PhaseFailed(
                    oc.CodeTerminated(termination.exit_code, termination.signal, termination.oom)
                )
            exited.cancel()
            await process.close()
            raise PhaseFailed(oc.MaxDurationExceeded("codeStartup"))

    async def _step(self, worker: Worker, phase: str, limit: float, call: object) -> CallResult:
        """Await one command's answer within ``limit``; map every other ending to an outcome."""
        try:
            async with asyncio.timeout(limit):
                return await call  # type: ignore[misc]
        except TimeoutError:
            worker.process.kill()
            raise PhaseFailed(oc.MaxDurationExceeded(phase)) from None
        except ProtocolViolation as e:
            worker.process.kill()
            raise PhaseFailed(
                oc.ModelException(phase, f"The worker broke the launcher protocol: {e}")
            ) from None
        except ConnectionEnded:
            termination = await self._termination(worker)
            raise PhaseFailed(
                oc.CodeTerminated(termination.exit_code, termination.signal, termination.oom)
            ) from None

    async def _termination(self, worker: Worker):  # noqa: ANN202
        try:
            return await asyncio.wait_for(asyncio.shield(worker.process.wait()), EXIT_GRACE)
        except TimeoutError:
            worker.process.kill()
            return await worker.process.wait()

    async def _stop_worker(self, job: Job, worker: Worker) -> None:
        worker.session.close()
        worker.process.kill()
        try:
            await asyncio.shield(worker.process.close())
        finally:
            tail = worker.process.log_tail()
            if tail:
                await asyncio.to_thread(self._save_log, job.state_id, tail)

    def _save_log(self, state_id: str, text: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.log_dir / f"{state_id}.log").write_text(text)


_FIELD = {
    "createLauncher": "create_launcher",
    "codeStartup": "code_startup",
    "createState": "create_state",
}
