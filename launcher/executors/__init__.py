"""Executors: where workers run (``LocalExecutor`` here; ``RayExecutor`` in ``executors.ray``).

``LocalExecutor`` is imported on first use: a Ray node's ``run-job`` imports this package
for the seam's types only, and the local executor pulls in the worker session (and numpy).
"""

from typing import TYPE_CHECKING, Any

from launcher.executors.base import Executor, PhaseFailed, SpecRefused, Worker, WorkerState

if TYPE_CHECKING:
    from launcher.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor", "PhaseFailed", "SpecRefused", "Worker", "WorkerState"]


def __getattr__(name: str) -> Any:
    if name == "LocalExecutor":
        from launcher.executors.local import LocalExecutor

        return LocalExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
