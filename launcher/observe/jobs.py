"""What the launcher tells about each job: its job log, its operator log line, its metrics.

``JobObserver.accepted`` is the job manager's observer: it opens the job's log (the
``accepted`` line), points the job's output at it, and listens to the job's phase events and
result. A phase's line is written as it happens; what the result brings (the operator's INFO line,
the outcome line, the log's saving, the counters) in the loop's next turn, off the answer's
path, which still comes before any later request is served: when a caller sees the answer
and asks, the job's log and its counters are there (the INFO line follows the answer by at
most that turn).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from launcher import outcomes as oc
from launcher.auth import access
from launcher.jobs.job import Job, PhaseEvent
from launcher.observe.metrics import Metrics
from launcher.store.joblogs import JobLog, JobLogs

log = logging.getLogger("launcher.jobs")


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
    def __init__(self, logs: JobLogs, metrics: Metrics | None = None) -> None:
        self.logs = logs
        self.metrics = metrics
        self._closing: set[asyncio.Task[None]] = set()
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
        job_log.launcher(f"accepted {job.state_id}: model {job.model_id}, on {where}")
        if self.metrics is not None and request.params:
            size = sum(source.total_byte_size for source in request.params.values())
            if size:
                self.metrics.ingested.inc(size)
        caller = access.current()  # accepted within the createState call: its caller
        key = caller.key.name if caller.key is not None else None
        job.listeners.append(functools.partial(self._heard, job, job_log, (caller.tenant, key)))

    def _heard(
        self,
        job: Job,
        job_log: JobLog,
        who: tuple[str, str | None],
        item: PhaseEvent | oc.JobResult,
    ) -> None:
        """A phase event (its line at once: a few microseconds) or the result: its lines and
        counters in the loop's next turn, after the answer is on its way (its wake-up is
        queued first) and before any later request (a log read, a scrape) is served."""
        if isinstance(item, PhaseEvent):
            if item.finished:
                job_log.launcher(f"phase {item.phase.value} finished in {item.duration} ms")
            else:
                job_log.launcher(f"phase {item.phase.value} started")
            return
        self._deferred += 1
        asyncio.get_running_loop().call_soon(self._ended, job, job_log, who, item)

    def _operator_line(
        self,
        job: Job,
        who: tuple[str, str | None],
        result: oc.JobResult,
        durations: dict[str, int],
    ) -> None:
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
        self._deferred -= 1
        durations = result.durations.to_json()
        if log.isEnabledFor(logging.INFO):
            self._operator_line(job, who, result, durations)
        job_log.launcher(f"outcome: {outcome_text(result)} (total {durations['total']} ms)")
        writing = self.logs.close_now(job_log)
        if writing is not None:  # a file to write (no database): in a task
            task = asyncio.get_running_loop().create_task(writing)
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if self.metrics is None:
            return
        launcher = "temporary" if job.request.persistent_launcher_id is None else "persistent"
        phases = {k: v / 1000 for k, v in durations.items() if k != "total"}
        self.metrics.job_ended(
            result.code,
            launcher,
            job.model_id,
            phases,
            durations["total"] / 1000,
            job.persisted_bytes if result.success else 0,
        )

    async def close(self) -> None:
        """Wait for the logs still being saved."""
        while self._deferred:  # the lines of jobs that have just ended come first
            await asyncio.sleep(0)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
