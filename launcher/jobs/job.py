"""One accepted createState job: its id, timing, subscribers and final response."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass

from launcher import outcomes as oc
from launcher.jobs.request import JobRequest


@dataclass(frozen=True)
class PhaseEvent:
    phase: oc.Phase
    finished: bool
    duration: int | None = None  # milliseconds, when finished


class Job:
    """Created at acceptance; ``response`` resolves to the job's ``JobResult``."""

    def __init__(self, state_id: str, request: JobRequest) -> None:
        self.state_id = state_id
        self.request = request
        # Resolving the request (model folder, mounts, datasets) counts towards ``total``.
        self.accepted_ns = time.monotonic_ns() - getattr(request, "resolve_ns", 0)
        self.started_at = time.time()  # Unix seconds
        self.response: asyncio.Future[oc.JobResult] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self.cancel_requested = False
        self.cancel_outcome: oc.Failure = oc.Cancelled()
        self._subscribers: list[asyncio.Queue[PhaseEvent | oc.JobResult]] = []
        #: Those of them that asked for the phase events too.
        self._phase_subscribers: list[asyncio.Queue[PhaseEvent | oc.JobResult]] = []
        #: Called at once with each phase event and then the result (job log, metrics).
        self.listeners: list[Callable[[PhaseEvent | oc.JobResult], None]] = []
        #: Where the model's output goes while this job runs: ``output(stream, data)``.
        self.output: Callable[[str, bytes], None] | None = None
        #: Records the job's result durably (set by the manager; the runner calls it inside
        #: the state's commit, so a success and its record share one transaction).
        self.record: Callable[[oc.JobResult], None] | None = None
        #: The result ``record`` stored, once it has (then nothing records it again).
        self.recorded: oc.JobResult | None = None
        #: The write of the job's accepted rows (set by the manager; None: nothing to wait for).
        self.accept_written: concurrent.futures.Future[None] | None = None
        #: Whether those rows are written (set in the writer thread that writes them).
        self.accepted_rows = False
        #: The bytes of the state it committed (set by the runner once committed).
        self.persisted_bytes = 0

    async def accepted(self) -> None:
        """Wait until the job's accepted rows are written (before its id is handed out)."""
        if self.accept_written is not None:
            await asyncio.wrap_future(self.accept_written)

    @property
    def model_id(self) -> str:
        return self.request.model_id

    @property
    def name(self) -> str:
        return self.request.name

    def subscribe(self, phases: bool = True) -> asyncio.Queue[PhaseEvent | oc.JobResult]:
        """A queue of this job's phase events (``phases``), ending with its ``JobResult``."""
        queue: asyncio.Queue[PhaseEvent | oc.JobResult] = asyncio.Queue()
        if self.response.done():
            queue.put_nowait(self.response.result())
        else:
            self._subscribers.append(queue)
            if phases:
                self._phase_subscribers.append(queue)
        return queue

    def emit(self, event: PhaseEvent) -> None:
        for listener in self.listeners:
            listener(event)
        for queue in self._phase_subscribers:
            queue.put_nowait(event)

    @property
    def started_at_ms(self) -> int:
        """When the job was accepted, in integer Unix milliseconds."""
        return round(self.started_at * 1000)

    def elapsed(self) -> oc.Durations:
        """Durations with only ``total``: from acceptance until now."""
        return oc.Durations(total=oc.ms(time.monotonic_ns() - self.accepted_ns))

    def finish(self, response: oc.JobResult) -> None:
        if self.response.done():
            return
        self.response.set_result(response)
        # The subscribers first: their wake-ups (the answer) are then queued on the loop ahead
        # of anything a listener leaves for the loop's next turn (the job log's lines).
        for queue in self._subscribers:
            queue.put_nowait(response)
        self._subscribers.clear()
        self._phase_subscribers.clear()
        for listener in self.listeners:
            listener(response)

    def cancel(self, outcome: oc.Failure | None = None) -> None:
        """Stop the job; it ends as ``outcome`` (default ``cancelled``) with the durations
        that ran. Deleting its persistent launcher ends it as ``launcher_terminated``."""
        self.cancel_requested = True
        if outcome is not None:
            self.cancel_outcome = outcome
        if self.task is not None and not self.task.done():
            self.task.cancel()
