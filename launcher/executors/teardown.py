"""One tracked teardown per worker: kill now, close its process, keep its log, release the rest."""

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
        try:
            await worker.process.close()
        finally:
            tail = worker.process.log_tail()
            if tail:
                await asyncio.to_thread(self._save_log, log_name, tail)
            await self._release(worker)

    def _save_log(self, name: str, text: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.log_dir / f"{name}.log").write_text(text)

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
