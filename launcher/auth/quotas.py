"""Per-key quotas: stored state bytes and concurrent createState jobs.

Stored bytes are those of every committed state of the models the key may use (all models
for a ``*`` key): what the key can fill, counted from the states table, so deleting states
frees quota. Keys that share models share that storage. Concurrent jobs are counted per key:
createState calls still in intake plus the accepted jobs of the key that have not ended.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from launcher.auth.keys import ApiKey
from launcher.store.db import Database


class StoredBytes:
    """Sum of the byte sizes of the committed states of some models."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _sum(self, models: frozenset[str] | None) -> int:
        query = (
            "SELECT COALESCE(SUM(k.byte_size), 0) FROM state_keys k"
            " JOIN states s ON s.id = k.state_id"
        )
        args: list[str] = []
        if models is not None:
            query += f" WHERE s.model_id IN ({', '.join('?' * len(models))})"
            args = sorted(models)
        return int(self._db.connect().execute(query, args).fetchone()[0])

    async def of(self, key: ApiKey) -> int:
        return await asyncio.to_thread(self._sum, key.models)

    async def allows(self, key: ApiKey, adding: int = 0) -> bool:
        """Whether the key may store ``adding`` more bytes (a job of unknown size: 0, so it
        may start while the key is under its quota)."""
        if key.max_stored_bytes is None:
            return True
        stored = await self.of(key)
        if adding == 0:
            return stored < key.max_stored_bytes
        return stored + adding <= key.max_stored_bytes


class JobQuota:
    """Concurrent createState jobs per key. ``is_running(state_id)`` asks the job manager."""

    def __init__(self, is_running: Callable[[str], bool]) -> None:
        self._is_running = is_running
        self._intakes: Counter[str] = Counter()
        self._jobs: dict[str, set[str]] = {}

    def count(self, key_id: str) -> int:
        jobs = self._jobs.get(key_id, set())
        jobs.intersection_update({s for s in jobs if self._is_running(s)})
        if not jobs:
            self._jobs.pop(key_id, None)
        return self._intakes[key_id] + len(jobs)

    def try_enter(self, key: ApiKey) -> bool:
        """Take a place for a new call, if the key has one free; pair with ``accepted`` or
        ``left``."""
        if key.max_concurrent_jobs is not None and self.count(key.id) >= key.max_concurrent_jobs:
            return False
        self._intakes[key.id] += 1
        return True

    def accepted(self, key_id: str, state_id: str) -> None:
        self._leave_intake(key_id)
        self._jobs.setdefault(key_id, set()).add(state_id)

    def left(self, key_id: str) -> None:
        """The call ended without a job (refused in intake, or the client went away)."""
        self._leave_intake(key_id)

    def _leave_intake(self, key_id: str) -> None:
        self._intakes[key_id] -= 1
        if self._intakes[key_id] <= 0:
            del self._intakes[key_id]
