"""Warm sessions of persistent launchers: idle initialized workers, reused by the next job.

A session is reused only for the same model at the same code version (a model whose
files changed on disk starts a fresh worker) with the same mounted folders, and only
while it is alive. Idle sessions expire after ``idle_timeout`` seconds; each launcher
keeps at most ``max_idle`` of them. Temporary launchers never use this pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from launcher.executors.base import Worker

# launcher, tenant ("" without keys), model, code version, mounts: a warm session is never
# handed to another tenant's job, even on the same launcher (an admin's jobs are their own).
SessionKey = tuple[str, str, str, str, tuple[str, ...]]


class SessionPool:
    def __init__(
        self,
        stop: Callable[[Worker], Coroutine[Any, Any, None]],
        idle_timeout: float = 300.0,
        max_idle: int = 4,
    ) -> None:
        self._stop = stop
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self._idle: dict[SessionKey, list[Worker]] = {}
        self._reaper: asyncio.Task[None] | None = None

    def take(
        self,
        launcher_id: str,
        model_id: str,
        code_version: str,
        mounts: tuple[str, ...],
        tenant: str | None = None,
    ) -> Worker | None:
        """An idle live session for this job (of this tenant), or None."""
        workers = self._idle.get((launcher_id, tenant or "", model_id, code_version, mounts))
        while workers:
            worker = workers.pop()
            if worker.alive:
                return worker
            self._discard(worker)
        return None

    def put(self, launcher_id: str, worker: Worker, tenant: str | None = None) -> None:
        """Keep a worker whose job succeeded, if the launcher has room; else stop it."""
        if not worker.alive or self._count(launcher_id) >= self.max_idle:
            self._discard(worker)
            return
        worker.idle()
        key = (launcher_id, tenant or "", worker.model_id, worker.code_version, worker.mounts)
        self._idle.setdefault(key, []).append(worker)
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap())

    def _count(self, launcher_id: str) -> int:
        return sum(len(v) for k, v in self._idle.items() if k[0] == launcher_id)

    def _discard(self, worker: Worker) -> None:
        asyncio.create_task(self._stop(worker))

    def idle_count(self) -> int:
        """How many warm sessions are idle now (for ``launcher_warm_sessions``)."""
        return sum(len(workers) for workers in self._idle.values())

    def drop_launcher(self, launcher_id: str) -> None:
        """Stop every idle session of a launcher (it was deleted)."""
        for key in [k for k in self._idle if k[0] == launcher_id]:
            for worker in self._idle.pop(key):
                self._discard(worker)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        workers = [w for ws in self._idle.values() for w in ws]
        self._idle.clear()
        await asyncio.gather(*(self._stop(w) for w in workers), return_exceptions=True)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(self.idle_timeout, 5.0))
            now = time.monotonic()
            for key, workers in list(self._idle.items()):
                keep = []
                for worker in workers:
                    if worker.alive and now - worker.idle_since < self.idle_timeout:
                        keep.append(worker)
                    else:
                        self._discard(worker)
                if keep:
                    self._idle[key] = keep
                else:
                    del self._idle[key]
