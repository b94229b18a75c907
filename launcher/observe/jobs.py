"""What the launcher tells about each job: its job log, its operator log line, its metrics.

``JobObserver.accepted`` is the job manager's observer: it opens the job's log (the
``accepted`` line), points the job's output at it, and listens to the job's phase events and
result. The operator's INFO line is written at once; the job log's lines and the counters in
the loop's next turn (off the answer's path), which still comes before any later request is
served: when a caller sees the answer and asks, the job's log and its counters are there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from launcher import outcomes as oc
from launcher.auth import access
from launcher.jobs.job import Job, PhaseEvent
from launcher.observe.metrics import Metrics
from launcher.store.joblogs import JobLog, JobLogs

log = logging.getLogger("launcher.jobs")

#: How long committed states wait to have their sizes counted together.
PERSISTED_DELAY = 0.5


def outcome_text(result: oc.JobResult) -> str:
    """The outcome as the job log says it: the code and what explains it."""
    outcome = result.outcome
    if isinstance(outcome, oc.Success):
        return "success"
    error = oc.failure_error_json(outcome)
    code = error.pop("code")
    if isinstance(outcome, oc.InvalidExecutableFile | oc.ReadExecutableFileFailed):
        return f"{code}: {outcome.reason}"
    if isinstance(outcome, oc.Unknown):
        return f"{code}: an internal error; the operator's log has it under {outcome.reason}"
    details = ", ".join(f"{k}={v}" for k, v in error.items() if k != "exceptionDetails")
    text = f"{code} ({details})" if details else code
    if isinstance(outcome, oc.ModelException) and outcome.details:
        text += f": {outcome.details.strip().splitlines()[-1][:500]}"
    return text


class JobObserver:
    def __init__(
        self,
        logs: JobLogs,
        metrics: Metrics | None = None,
        persisted_bytes: Callable[[str], int] | None = None,
    ) -> None:
        self.logs = logs
        self.metrics = metrics
        self._persisted_bytes = persisted_bytes
        self._closing: set[asyncio.Task[None]] = set()
        self._sizes_wanted: list[str] = []
        self._sizing: asyncio.Task[None] | None = None
        self._deferred = 0  # events heard whose lines are not written yet (the next turn)

    def accepted(self, job: Job) -> None:
        job_log = self.logs.open(job.state_id)
        job.output = job_log.output
        request = job.request
        where = (
            f"persistent launcher {request.persistent_launcher_id}"
            if request.persistent_launcher_id is not None
            else "a temporary launcher"
        )
        line = f"accepted {job.state_id}: model {job.model_id}, on {where}"
        self._deferred += 1  # like the phase lines (below): in the loop's next turn, first
        asyncio.get_running_loop().call_soon(self._accepted_line, job, job_log, line)
        caller = access.current()  # accepted within the createState call: its caller
        key = caller.key.name if caller.key is not None else None
        who = (caller.tenant, key)
        job.listeners.append(lambda item: self._heard(job, job_log, who, item))

    def _accepted_line(self, job: Job, job_log: JobLog, line: str) -> None:
        self._deferred -= 1
        job_log.launcher(line)
        if self.metrics is not None:
            size = sum(source.total_byte_size for source in job.request.params.values())
            if size:
                self.metrics.ingested.inc(size)

    def _heard(
        self,
        job: Job,
        job_log: JobLog,
        who: tuple[str, str | None],
        item: PhaseEvent | oc.JobResult,
    ) -> None:
        """A phase event or the result, as it happens. The operator's line is written at
        once (before the caller has the answer); the job log's line, the metrics and the
        log's saving come right after, in the loop's next turn: after the answer is on its
        way, and before any later request (a log read, a metrics scrape) is served."""
        if isinstance(item, oc.JobResult):
            self._operator_line(job, who, item)
        self._deferred += 1
        asyncio.get_running_loop().call_soon(self._on, job, job_log, who, item)

    def _on(
        self,
        job: Job,
        job_log: JobLog,
        who: tuple[str, str | None],
        item: PhaseEvent | oc.JobResult,
    ) -> None:
        self._deferred -= 1
        if isinstance(item, PhaseEvent):
            if item.finished:
                job_log.launcher(f"phase {item.phase.value} finished in {item.duration} ms")
            else:
                job_log.launcher(f"phase {item.phase.value} started")
            return
        self._ended(job, job_log, who, item)

    def _operator_line(self, job: Job, who: tuple[str, str | None], result: oc.JobResult) -> None:
        durations = result.durations.to_json()
        request = job.request
        tenant, key_name = who
        fields = {
            "event": "job_ended",
            "stateId": job.state_id,
            "model": job.model_id,
            "launcher": request.persistent_launcher_id or "temporary",
            "tenant": tenant,
            "key": key_name,
            "outcome": result.code,
            "durationsMs": durations,
        }
        log.info(
            "job %s model=%s launcher=%s tenant=%s key=%s outcome=%s durations_ms=%s",
            job.state_id,
            job.model_id,
            fields["launcher"],
            tenant or "-",
            key_name or "-",
            result.code,
            ",".join(f"{k}={v}" for k, v in durations.items()),
            extra={"fields": fields},
        )

    def _ended(
        self, job: Job, job_log: JobLog, who: tuple[str, str | None], result: oc.JobResult
    ) -> None:
        durations = result.durations.to_json()
        job_log.launcher(f"outcome: {outcome_text(result)} (total {durations['total']} ms)")
        request = job.request
        launcher = "temporary" if request.persistent_launcher_id is None else "persistent"
        task = asyncio.get_running_loop().create_task(
            self._close(job, job_log, result, launcher, durations)
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        if self.metrics is not None:
            phases = {k: v / 1000 for k, v in durations.items() if k != "total"}
            self.metrics.job_ended(
                result.code, launcher, job.model_id, phases, durations["total"] / 1000, 0
            )

    async def _close(
        self,
        job: Job,
        job_log: JobLog,
        result: oc.JobResult,
        launcher: str,
        durations: dict[str, int],
    ) -> None:
        await self.logs.close(job_log)
        if self.metrics is not None and result.success and self._persisted_bytes is not None:
            self._sizes_wanted.append(job.state_id)
            if self._sizing is None or self._sizing.done():
                self._sizing = asyncio.get_running_loop().create_task(self._count_persisted())

    def _sizes(self, state_ids: list[str]) -> list[int]:
        assert self._persisted_bytes is not None
        return [self._persisted_bytes(state_id) for state_id in state_ids]

    async def _count_persisted(self) -> None:
        """Committed states' sizes, read in batches (one thread hop for many jobs)."""
        await asyncio.sleep(PERSISTED_DELAY)
        while self._sizes_wanted:
            ids, self._sizes_wanted = self._sizes_wanted, []
            try:
                sizes = await asyncio.to_thread(self._sizes, ids)
            except Exception:
                log.exception("the sizes of %d committed states could not be read", len(ids))
                return
            if self.metrics is not None:
                self.metrics.persisted.inc(sum(sizes))

    async def close(self) -> None:
        """Wait for the logs still being saved."""
        while self._deferred:  # the lines of jobs that have just ended come first
            await asyncio.sleep(0)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
        if self._sizing is not None and not self._sizing.done():
            self._sizing.cancel()
