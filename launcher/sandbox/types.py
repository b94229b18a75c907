"""What the rest of the launcher asks of a sandbox, and what it gets back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from launcher.spec import LauncherSpec


@dataclass(frozen=True)
class WorkerPlan:
    """Everything needed to start one worker process.

    Paths are host paths; inside the sandbox they appear at the same paths (model
    folder and mounts read-only, ``job_dir`` writable and holding the IPC socket), so
    the host never translates paths.
    """

    argv: list[str]  # e.g. [python, "-m", "runtime"]
    env: dict[str, str]  # the whole environment (IPC_PATH included)
    model_dir: Path  # read-only inside
    job_dir: Path  # writable, private; holds the IPC socket
    spec: LauncherSpec
    mounts: list[Path] = field(default_factory=list)  # other models' folders, read-only
    gpu_ids: list[str] = field(default_factory=list)  # exclusively assigned GPUs
    fork_runtime: bool = True  # may be forked from the warm zygote (runtime = "python")
    #: Workers of one group (a persistent launcher) share one budget: a parent cgroup holding
    #: ``spec``'s limits for all of them together. None: the worker's own limits only.
    group: str | None = None


@dataclass(frozen=True)
class Termination:
    """How a worker process ended. Exactly one of exit_code and signal is set."""

    exit_code: int | None = None
    signal: str | None = None  # a name such as "SIGKILL"
    oom: bool = False  # proven: a memory limit killed it


class WorkerProcess(Protocol):
    pid: int
    #: Where its output goes as read, ``sink(stream, data)`` (the running job's log), or None.
    sink: Callable[[str, bytes], None] | None

    async def wait(self) -> Termination: ...

    def kill(self) -> None:
        """Kill the worker and everything it started (idempotent)."""

    def log_tail(self) -> str:
        """The worker's stdout/stderr, bounded (head and tail kept)."""

    def drain_output(self) -> None:
        """Hand ``sink`` what the worker's output pipes hold right now."""

    async def close(self) -> None:
        """Release the worker's resources (cgroup, tmpfs, ...); kills it if alive."""


class Sandbox(Protocol):
    def layers(self) -> dict[str, str]:
        """Each isolation layer and its state (e.g. {"netns": "on", "cgroup": "off: ..."})."""

    async def start(self, plan: WorkerPlan) -> WorkerProcess: ...

    def release_group(self, group: str) -> None:
        """Remove a group's shared budget once its workers are gone (launcher deleted)."""

    async def close(self) -> None: ...
