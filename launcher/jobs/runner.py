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
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from launcher import faults
from launcher import outcomes as oc
from launcher.auth.quotas import ChargedState
from launcher.executors.base import Executor, PhaseFailed, Worker, terminated
from launcher.executors.sessions import SessionPool
from launcher.jobs.job import Job, PhaseEvent
from launcher.store.models import ModelConfig
from launcher.store.states import StateStore
from launcher.worker.frames import ConnectionEnded, ProtocolViolation
from launcher.worker.session import CallResult, OtherModelSources, StateSink

log = logging.getLogger("launcher.jobs")

#: How long a worker that closed its socket gets to exit before it is killed.
EXIT_GRACE = 5.0


class JobRunner:
    """Runs jobs: workers from ``executor`` (or warm ones from ``sessions``), state to ``states``.
    Needs no gRPC server: anything that makes ``Job``s can drive it."""

    def __init__(self, executor: Executor, states: StateStore, sessions: SessionPool) -> None:
        self.executor = executor
        self.states = states
        self.sessions = sessions

    async def run(self, job: Job) -> oc.JobResult:
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
        if isinstance(outcome, oc.Success) and job.recorded is not None:
            return job.recorded  # recorded with its commit, its total taken then
        durations.total = oc.ms(time.monotonic_ns() - job.accepted_ns)
        quota = job.request.quota
        if quota is not None and quota.exceeded is not None and not isinstance(outcome, oc.Success):
            # the worker's state went past its tenant's quota: stopped as the bytes came
            outcome = oc.QuotaExceeded(getattr(quota.exceeded, "detail", "quota exceeded"))
        return oc.JobResult(outcome, durations)

    @asynccontextmanager
    async def _phase(
        self, job: Job, phase: oc.Phase, durations: oc.Durations
    ) -> AsyncIterator[None]:
        job.emit(PhaseEvent(phase, finished=False))
        start = time.monotonic_ns()
        try:
            yield
        finally:
            elapsed = oc.ms(time.monotonic_ns() - start)
            durations.phases[phase] = elapsed
            job.emit(PhaseEvent(phase, finished=True, duration=elapsed))

    async def _run(self, job: Job, durations: oc.Durations) -> oc.Outcome:
        request = job.request
        if request.startup_failure is not None:
            failure = request.startup_failure
            # The reason is not in the response: the operator log carries it, by state id.
            log.warning(
                "state %s of model %s: %s: %s",
                job.state_id,
                request.model_id,
                type(failure).__name__,
                getattr(failure, "reason", ""),
            )
            return failure
        model = request.model
        assert model is not None and request.spec is not None
        mounts = tuple(m.path for m in request.mounts)
        # On the loop (no I/O: the id is the manager's fresh one, and the folder is made with
        # the first key that needs a file): no thread hop here.
        pending = self.states.begin(
            model.model_id,
            request.name,
            job.state_id,
            [m.to_json() for m in request.mounts],
            fresh=True,
        )
        launcher_id = request.persistent_launcher_id
        worker: Worker | None = None
        keep_worker = False
        committed = False
        try:
            if launcher_id is None:
                async with self._phase(job, oc.Phase.CREATE_LAUNCHER, durations):
                    worker = await self.executor.start(
                        model, request.spec, list(mounts), model.max_code_startup
                    )
                worker.process.sink = job.output
                async with self._phase(job, oc.Phase.CODE_STARTUP, durations):
                    await self._initialize(worker, model)
            else:
                worker = self.sessions.take(
                    launcher_id, model.model_id, model.code_version, mounts, request.tenant
                )
                if worker is not None:
                    worker.process.sink = job.output
                else:  # a persistent launcher: the worker start is codeStartup's
                    async with self._phase(job, oc.Phase.CODE_STARTUP, durations):
                        worker = await self.executor.start(
                            model, request.spec, list(mounts), model.max_code_startup, launcher_id
                        )
                        worker.process.sink = job.output
                        await self._initialize(worker, model)
            others = [
                OtherModelSources(m.model_id, worker.path_of(m.path), m.keys)
                for m in request.mounts
            ]
            worker.busy()
            async with self._phase(job, oc.Phase.CREATE_STATE, durations):
                faults.point("create_state")
                result = await self._step(
                    worker,
                    oc.Phase.CREATE_STATE,
                    model.max_create_state,
                    worker.session.create_model_state(
                        request.params, others, _charged(job, pending)
                    ),
                )
            if result.error_details is not None:
                return oc.ModelException(oc.Phase.CREATE_STATE, result.error_details)
            record = await self.states.commit(pending, _recorder(job, durations))
            job.persisted_bytes = sum(key.byte_size for key in record.keys)
            committed = True
            faults.point("after_commit")
            keep_worker = launcher_id is not None
            return oc.Success(job.state_id)
        finally:
            if not committed:
                await asyncio.to_thread(pending.abort)
            if worker is not None:
                # What it wrote before answering is this job's; what comes later is not.
                worker.process.drain_output()
                worker.process.sink = None
                if keep_worker and launcher_id is not None:
                    self.sessions.put(launcher_id, worker, job.request.tenant)
                else:
                    # Killed just after the answer has left: killing a process tree (and its
                    # exit) costs milliseconds that the answer need not wait for, and the
                    # worker has answered or is past use. Its cgroup, folder and log are
                    # tidied later still.
                    _after_answer(self.executor.release, worker, job.state_id)

    async def _initialize(self, worker: Worker, model: ModelConfig) -> None:
        result = await self._step(
            worker,
            oc.Phase.CODE_STARTUP,
            model.max_code_startup,
            worker.session.initialize(worker.main_py),
        )
        if result.error_details is not None:
            raise PhaseFailed(oc.ModelException(oc.Phase.CODE_STARTUP, result.error_details))
        worker.initialized()

    async def _step(
        self, worker: Worker, phase: oc.Phase, limit: float, call: Awaitable[CallResult]
    ) -> CallResult:
        """Await one command's answer within ``limit``; map every other ending to an outcome."""
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError:
            worker.kill()
            raise PhaseFailed(oc.MaxDurationExceeded(phase)) from None
        except ProtocolViolation as e:
            worker.kill()
            raise PhaseFailed(
                oc.ModelException(phase, f"The worker broke the launcher protocol: {e}")
            ) from None
        except ConnectionEnded:
            try:
                termination = await asyncio.wait_for(
                    asyncio.shield(worker.process.wait()), EXIT_GRACE
                )
            except TimeoutError:
                worker.kill()
                termination = await asyncio.shield(worker.process.wait())
            raise PhaseFailed(terminated(termination)) from None


def _after_answer(fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn`` two loop turns from now. The job's end, in this same step, queues its
    answer's wake-up next; that step hands the answer to gRPC, then ``fn`` runs."""
    loop = asyncio.get_running_loop()
    loop.call_soon(loop.call_soon, fn, *args)


def _charged(job: Job, pending: StateSink) -> StateSink:
    """The job's state sink: its tenant's quota charged as the worker's keys arrive."""
    if job.request.quota is None:
        return pending
    return ChargedState(pending, job.request.quota)


def _recorder(job: Job, durations: oc.Durations) -> Callable[[], None] | None:
    """The job's success recorded in its state's commit transaction (one group-commit trip
    less before the answer); runs in the writer thread, right after the state's rows."""
    record = job.record
    if record is None:
        return None

    def success() -> None:
        durations.total = oc.ms(time.monotonic_ns() - job.accepted_ns)
        result = oc.JobResult(oc.Success(job.state_id), durations)
        record(result)
        job.recorded = result

    return success
