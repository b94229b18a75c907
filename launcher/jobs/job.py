"""One accepted createState job: its id, timing, subscribers and final response."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from launcher import outcomes as oc
from launcher.jobs.request import JobRequest


@dataclass(frozen=True)
class PhaseEvent:
    phase: str  # createLauncher | codeStartup | createState
    finished: bool
    duration: float | None = None

    def to_json(self, state_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": "phaseFinished" if self.finished else "phaseStarted",
            "phase": self.phase,
            "stateId": state_id,
        }
        if self.duration is not None:
            out["duration"] = self.duration
        return out


class Job:
    """Created at acceptance; ``response`` resolves to the seed's response dict."""

    def __init__(self, state_id: str, request: JobRequest) -> None:
        self.state_id = state_id
        self.request = request
        self.accepted = time.monotonic()
        self.started_at = time.time()
        self.response: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self.cancel_requested = False
        self.cancel_outcome: oc.Failure = oc.Cancelled()
        self._subscribers: list[asyncio.Queue[PhaseEvent | dict[str, Any]]] = []

    @property
    def model_id(self) -> str:
        return self.request.model_id

    @property
    def name(self) -> str:
        return self.request.name

    def subscribe(self) -> asyncio.Queue[PhaseEvent | dict[str, Any]]:
        """A queue of this job's phase events, ending with its response dict."""
        queue: asyncio.Queue[PhaseEvent | dict[str, Any]] = asyncio.Queue()
        if self.response.done():
            queue.put_nowait(self.response.result())
        else:
            self._subscribers.append(queue)
        return queue

    def emit(self, event: PhaseEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    def finish(self, response: dict[str, Any]) -> None:
        if self.response.done():
            return
        self.response.set_result(response)
        for queue in self._subscribers:
            queue.put_nowait(response)
        self._subscribers.clear()

    def cancel(self, outcome: oc.Failure | None = None) -> None:
        """Stop the job; it ends as ``outcome`` (default ``cancelled``) with the durations
        that ran. Deleting its persistent launcher ends it as ``launcher_terminated``."""
        self.cancel_requested = True
        if outcome is not None:
            self.cancel_outcome = outcome
        if self.task is not None and not self.task.done():
            self.task.cancel()
