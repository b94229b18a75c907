"""Executors: where workers run (``LocalExecutor`` here; ``RayExecutor`` in ``executors.ray``)."""

from launcher.executors.base import Executor, PhaseFailed, SpecRefused, Worker, WorkerState
from launcher.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor", "PhaseFailed", "SpecRefused", "Worker", "WorkerState"]
