"""One tracked teardown per worker: kill now, close its process, release the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from launcher.executors.base import Worker


class Teardowns:
    """Tears workers down once each; ``wait`` waits for those still running."""

    def __init__(
        self, log_dir: Path, release: Callable[[Worker], Coroutine[Any, Any, None]]
    ) -> None:
        self.log_dir = log_dir
        self._release = release
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def release(self, worker: Worker, log_name: str) -> asyncio.Task[None]:
        """Kill ``worker`` at once; its teardown runs in the background (once per worker)."""
        worker.kill()
        task = self._tasks.get(id(worker))
        if task is None:
            task = asyncio.create_task(self._teardown(worker, log_name))
            self._tasks[id(worker)] = task
            task.add_done_callback(lambda _: self._tasks.pop(id(worker), None))
        return task

    async def stop(self, worker: Worker, log_name: str) -> None:
        await asyncio.shield(self.release(worker, log_name))

    async def _teardown(self, worker: Worker, log_name: str) -> None:
        # What the worker wrote went to its jobs' logs as it came (launcher.store.joblogs).
        try:
            await worker.process.close()
        finally:
            await self._release(worker)

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
