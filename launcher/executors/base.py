"""What the job runner asks of an executor, and the worker handle it gets back.

An executor is where workers run: ``LocalExecutor`` (this machine's sandbox) or
``RayExecutor`` (a node of a Ray cluster, the worker protocol relayed to this hub). The
runner, the session pool and the servicers see only this protocol and ``Worker``.

A worker's life, in the order of its verbs::

    start -> connected -> initialized -> idle <-> busy -> stopped

``start`` (the executor) returns it ``connected``; the runner marks it ``initialized`` after
``initialize`` answered, ``busy`` during a call and ``idle`` when a persistent launcher
keeps it warm; ``release`` (the executor) kills it at once and tears it down in the
background, once, tracked until ``close``.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from launcher import outcomes as oc
from launcher.sandbox.types import Termination, WorkerProcess
from launcher.spec import LauncherSpec

if TYPE_CHECKING:
    from launcher.store.models import ModelConfig
    from launcher.worker.session import WorkerSession


class PhaseFailed(Exception):
    """A phase ended in a failure outcome."""

    def __init__(self, outcome: oc.Failure) -> None:
        super().__init__(repr(outcome))
        self.outcome = outcome


class SpecRefused(ValueError):
    """A spec this executor can never place (the caller answers ``invalid_parameter``)."""

    def __init__(self, field_path: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_path
        self.reason = reason


class WorkerState(enum.Enum):
    CONNECTED = "connected"
    INITIALIZED = "initialized"
    IDLE = "idle"
    BUSY = "busy"
    STOPPED = "stopped"


_NEXT = {
    WorkerState.CONNECTED: {WorkerState.INITIALIZED},
    WorkerState.INITIALIZED: {WorkerState.BUSY},
    WorkerState.BUSY: {WorkerState.IDLE},
    WorkerState.IDLE: {WorkerState.BUSY},
    WorkerState.STOPPED: set(),
}


def terminated(termination: Termination) -> oc.CodeTerminated:
    return oc.CodeTerminated(termination.exit_code, termination.signal, termination.oom)


@dataclass
class Worker:
    """A started, connected worker: its process (or the node's stand-in), its protocol session.

    ``main_py`` and ``mount_paths`` are where the worker sees the model's entry file and the
    mounted models' folders (the same paths as on the hub for a local worker)."""

    process: WorkerProcess
    session: WorkerSession
    dir: Path | None
    model_id: str
    code_version: str
    mounts: tuple[str, ...]
    main_py: Path = Path()
    #: Mounted models' folders as the worker sees them, by their path here (when they differ).
    paths: dict[str, str] = field(default_factory=dict)
    gpu_ids: list[str] = field(default_factory=list)
    group: str | None = None
    idle_since: float = 0.0
    state: WorkerState = WorkerState.CONNECTED

    def path_of(self, host_path: str) -> str:
        """Where the worker sees the folder that is ``host_path`` here."""
        return self.paths.get(host_path, host_path)

    @property
    def alive(self) -> bool:
        return self.state is not WorkerState.STOPPED and not self.session.ended.done()

    def _move(self, to: WorkerState) -> None:
        if to not in _NEXT[self.state]:
            raise RuntimeError(f"worker cannot go from {self.state.value} to {to.value}")
        self.state = to

    def initialized(self) -> None:
        self._move(WorkerState.INITIALIZED)

    def busy(self) -> None:
        self._move(WorkerState.BUSY)

    def idle(self) -> None:
        self._move(WorkerState.IDLE)
        self.idle_since = time.monotonic()

    def kill(self) -> None:
        """The one kill path: the worker and everything it started die now (idempotent)."""
        self.state = WorkerState.STOPPED
        self.session.close()
        self.process.kill()


class Executor(Protocol):
    """Where workers run."""

    def check_spec(self, spec: LauncherSpec) -> None:
        """Raise ``SpecRefused`` for a spec that can never be placed (e.g. too many GPUs)."""

    async def start(
        self,
        model: ModelConfig,
        spec: LauncherSpec,
        mounts: list[str],
        connect_limit: float,
        group: str | None = None,
    ) -> Worker:
        """A connected worker for ``model``; ``PhaseFailed`` if it dies or does not connect in
        ``connect_limit``. Workers of one ``group`` (a persistent launcher) share ``spec``."""

    def release(self, worker: Worker, log_name: str) -> None:
        """Kill ``worker`` now; tear it down (log kept as ``log_name``) in the background."""

    async def stop(self, worker: Worker, log_name: str) -> None:
        """Kill ``worker`` and wait for its teardown."""

    def open_group(self, group: str, spec: LauncherSpec) -> None:
        """A persistent launcher was created: its shared budget may be prepared."""

    def close_group(self, group: str) -> None:
        """A persistent launcher was deleted: its shared budget goes with its last worker."""

    def layers(self) -> dict[str, str]:
        """Each sandbox layer and its state, as the workers get them."""

    def limits(self) -> dict[str, str]:
        """What this executor can place at most (e.g. its GPUs), for reports."""

    async def close(self) -> None:
        """Wait for teardowns, then release everything (sandbox, cluster connection)."""
