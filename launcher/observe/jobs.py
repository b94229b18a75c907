"""What the launcher tells about each job: its job log, its operator log line, its metrics.

``JobObserver.accepted`` is the job manager's observer: it opens the job's log (the
``accepted`` line), points the job's output at it, and listens to the job's phase events and
result. A phase's line is written as it happens. What the result brings (the operator's INFO
line, the outcome line, the log's saving, the counters) is done for all the jobs that ended
within ``ENDED_SECONDS`` together, off the answers' path: one pass over warm code instead of a
cold one per job, which on a busy machine costs the next job more than the work itself. A
reader never sees the lag: reading a job's log and scraping the metrics first ``settle`` what
waits, so when a caller sees the answer and asks, the job's log and its counters are there
(the INFO line follows the answer by at most ``ENDED_SECONDS`` and the log's own gathering).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from launcher import outcomes as oc
from launcher.auth import access
from launcher.jobs.job import Job, PhaseEvent
from launcher.observe import logsetup
from launcher.observe.metrics import Metrics
from launcher.store.joblogs import JobLog, JobLogs

log = logging.getLogger("launcher.jobs")

#: How long an ended job's lines and counters may wait to be done with others'.
ENDED_SECONDS = 0.1
#: How many ended jobs may wait (then they are done at once).
ENDED_MAX = 256


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
        #: Ended jobs whose lines and counters wait (``settle``).
        self._ended: list[tuple[Job, JobLog, tuple[str, str | None], oc.JobResult]] = []
        self._timer: asyncio.TimerHandle | None = None
        logs.before_read = self.settle

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
        counters with those of the other jobs ending meanwhile, within ``ENDED_SECONDS``, or
        before a read of the logs or the metrics."""
        if isinstance(item, PhaseEvent):
            if item.finished:
                job_log.launcher(f"phase {item.phase.value} finished in {item.duration} ms")
            else:
                job_log.launcher(f"phase {item.phase.value} started")
            return
        self._ended.append((job, job_log, who, item))
        if len(self._ended) >= ENDED_MAX:
            self.settle()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(ENDED_SECONDS, self.settle)

    def settle(self) -> None:
        """Write the lines and move the counters of the jobs that have ended (on the loop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._ended:
            return
        with logsetup.gathered():  # their INFO lines in one write
            while self._ended:
                ended, self._ended = self._ended, []
                for job, job_log, who, result in ended:
                    try:
                        self._end(job, job_log, who, result)
                    except Exception:  # one job's lines must not cost the others theirs
                        log.exception("job %s: its end could not be recorded", job.state_id)

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

    def _end(
        self, job: Job, job_log: JobLog, who: tuple[str, str | None], result: oc.JobResult
    ) -> None:
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
        self.settle()  # the lines of jobs that have just ended come first
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
