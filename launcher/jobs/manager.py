"""Admission and bookkeeping of createState jobs: limits, the running table, records.

Which worker runs a job is the runner's business; this module decides whether a job
may run now, later (queued: round-robin across tenants, first come first served within
one, see ``launcher.jobs.fair``) or not at all
(``server_overloaded``), keeps the id -> job table for cancellation and listing, and
records every job durably so ``wait_for_state_to_be_created`` answers after a restart.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from launcher import outcomes as oc
from launcher.auth.owners import DEFAULT_TENANT, STATE, Owners
from launcher.jobs.fair import FairSlots
from launcher.jobs.job import Job
from launcher.jobs.request import JobRequest
from launcher.jobs.runner import JobRunner
from launcher.store.jobs import JobRecords

log = logging.getLogger("launcher.jobs")


class JobRefused(Exception):
    """A job refused before it was accepted (the launcher is draining): no state id was
    handed out and nothing was recorded; ``result`` is its answer (``server_overloaded``)."""

    def __init__(self, result: oc.JobResult) -> None:
        super().__init__(result.code)
        self.result = result


class JobManager:
    def __init__(
        self,
        runner: JobRunner,
        records: JobRecords,
        new_state_id: Any,
        max_concurrent: int,
        max_queued: int,
        max_per_tenant: int | None = None,
    ) -> None:
        self.runner = runner
        self.records = records
        self._new_state_id = new_state_id
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        #: Slots taken round-robin across tenants, at most ``max_per_tenant`` each.
        self._slots = FairSlots(max_concurrent, max_per_tenant)
        #: Where a job's state is recorded as its tenant's (``launcher.auth.owners``).
        self.owners: Owners | None = None
        self._running = 0
        self._queued = 0
        self.jobs: dict[str, Job] = {}
        #: Called with each accepted job, before it runs (its log, metrics, operator line).
        self.observer: Callable[[Job], None] | None = None
        self._draining = False

    @property
    def load(self) -> tuple[int, int]:
        return self._running, self._queued

    async def submit(self, request: JobRequest, id_given_out: bool = True) -> Job:
        """Accept a resolved request: assign the state id and start (or queue) the job.
        While draining, ``JobRefused`` at once (``server_overloaded``, no state id).
        ``id_given_out=False``: the caller learns the state id only with the result (the
        one-message call), so the accepted rows are written with the result, in one
        transaction (with a success's state rows), instead of a transaction of their own."""
        if self._draining:
            request.close()
            raise JobRefused(oc.JobResult(oc.ServerOverloaded(), oc.Durations()))
        state_id = self._new_state_id()
        job = Job(state_id, request)
        job.record = functools.partial(self._write_result, job, not id_given_out)
        if id_given_out:
            # Not fsync'd on its own: the state's commit (fsync'd) makes these rows durable
            # too. Not waited for here: the job starts at once, and every later write of the
            # job (its commit, its record) is queued behind this one on the same writer.
            # Whoever hands the state id out waits for it first (``accept_written``), so the
            # id's rows (its tenant) exist before anyone can name it.
            job.accept_written = self.records.db.submit(self._accept, job, fsync=False)
        self.jobs[state_id] = job
        if self.observer is not None:
            self.observer(job)
        overloaded = self._running >= self.max_concurrent and self._queued >= self.max_queued
        if overloaded:
            request.close()
            job.task = asyncio.create_task(self._finish_now(job, oc.ServerOverloaded()))
        else:
            self._queued += 1
            job.task = asyncio.create_task(self._run(job))
        return job

    async def ensure_accepted(self, jobs: list[Job]) -> None:
        """Write now the accepted rows that were left for the result: before an answer names
        these running jobs' state ids (a crash from then on must leave a record that answers
        ``launcher_terminated`` for them)."""
        waits = []
        for job in jobs:
            if job.accept_written is None:
                job.accept_written = self.records.db.submit(self._accept, job, fsync=False)
            waits.append(asyncio.wrap_future(job.accept_written))
        if waits:
            await asyncio.gather(*waits)

    def _accept(self, job: Job) -> None:
        """Record the accepted job, and its state as its tenant's before the state exists
        (in the writer thread; once: a second call does nothing)."""
        if job.accepted_rows:
            return
        request = job.request
        self.records.started(job.state_id, request.model_id, request.name, job.started_at)
        if self.owners is not None:
            self.owners.record(STATE, job.state_id, request.tenant or DEFAULT_TENANT)
        job.accepted_rows = True

    def _write_result(self, job: Job, with_accept: bool, result: oc.JobResult) -> None:
        """The job's result row (in the writer thread), after its accepted rows if those
        were left for now (and no answer has named the job since)."""
        request = job.request
        if with_accept and not job.accepted_rows:  # both rows in one statement
            self.records.started_and_finished(
                job.state_id, request.model_id, request.name, job.started_at, result
            )
            if self.owners is not None:
                self.owners.record(STATE, job.state_id, request.tenant or DEFAULT_TENANT)
            job.accepted_rows = True
            return
        self.records.finished(job.state_id, result)

    async def _finish_now(self, job: Job, outcome: oc.Failure) -> None:
        await self._record(job, oc.JobResult(outcome, job.elapsed()))

    async def _run(self, job: Job) -> None:
        queued = True
        try:
            try:
                await self._slots.acquire(job.request.tenant)
            except asyncio.CancelledError:
                if not job.cancel_requested:
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                self._queued -= 1
                queued = False
                await self._finish_now(job, job.cancel_outcome)
                return
            self._queued -= 1
            queued = False
            self._running += 1
            try:
                result = await self.runner.run(job)
            finally:
                self._running -= 1
                self._slots.release(job.request.tenant)
            await self._record(job, result)
        except Exception:
            log.exception("job %s: recording its outcome failed", job.state_id)
            raise
        finally:
            if queued:
                self._queued -= 1
            job.request.close()
            if not job.response.done():  # shutdown cancelled it: lost to the launcher
                job.finish(oc.JobResult(oc.LauncherTerminated(), job.elapsed()))

    async def _record(self, job: Job, response: oc.JobResult) -> None:
        try:
            if response is not job.recorded and job.record is not None:
                # (a success is recorded with its commit)
                await asyncio.wrap_future(self.records.db.submit(job.record, response, fsync=False))
        finally:
            self.jobs.pop(job.state_id, None)
            job.finish(response)

    def creating(self, model_id: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.model_id == model_id and not j.response.done()]

    @property
    def accepting(self) -> bool:
        return not self._draining

    def stop_accepting(self) -> None:
        """From now on every job is refused at once (``JobRefused``: no state id)."""
        self._draining = True

    async def drain(self, deadline: float) -> None:
        """Stop accepting; wait up to ``deadline`` seconds, then end the rest as terminated."""
        self.stop_accepting()
        jobs = {j.task: j for j in self.jobs.values() if j.task is not None}
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=deadline)
            for task in pending:  # recorded as launcher_terminated, with the durations that ran
                jobs[task].cancel(oc.LauncherTerminated())
            if pending:
                await asyncio.wait(pending, timeout=10)
