"""Saving ended jobs' logs in batches, off the event loop and off the job's path.

An ended job's kept log waits here (still readable from memory) for at most ``DELAY`` seconds,
then goes with the others of that moment in one SQLite transaction of ``launcher.db`` (table
``job_logs``), committed like the job records (no fsync of its own: a crash of the launcher
keeps it, a power cut may lose the last ones). A warm job thus pays no file creation, no
rename and no fsync for its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from launcher.store.db import Database

log = logging.getLogger("launcher.store")

#: How long an ended job's log may wait to be saved with others.
DELAY = 0.2

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS job_logs (
        state_id TEXT PRIMARY KEY,
        data BLOB NOT NULL,
        truncated INTEGER NOT NULL
    )""",
]


@dataclass(frozen=True)
class Ended:
    state_id: str
    data: bytes
    truncated: bool
    work_files: bool  # whether <id>.joblog.head/.tail exist and go once it is saved


class LogSaver:
    def __init__(self, db: Database, folder: Path, saved: Callable[[list[Ended]], None]) -> None:
        self._db = db
        self._folder = folder
        self._saved = saved
        self._pending: list[Ended] = []
        self._task: asyncio.Task[None] | None = None
        db.register_schema("store.job_logs", SCHEMA)

    def add(self, ended: Ended) -> None:
        self._pending.append(ended)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(DELAY))

    async def _run(self, delay: float) -> None:
        await asyncio.sleep(delay)
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                # Through the group commit's one writer: never a second writer waiting on
                # SQLite's busy handler (a millisecond or more) beside a job's commit.
                await asyncio.wrap_future(self._db.submit(self._save_rows, batch, fsync=False))
                if any(e.work_files for e in batch):
                    await asyncio.to_thread(self._remove_work_files, batch)
            except Exception:  # the logs stay readable from memory; the next batch retries
                log.exception("saving %d job logs failed", len(batch))
                self._pending = batch + self._pending
                await asyncio.sleep(1.0)
                continue
            self._saved(batch)

    async def flush(self) -> None:
        """Save what waits now (at shutdown)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending:
            await self._run(0)

    def _save_rows(self, batch: list[Ended]) -> None:
        with self._db.transaction(fsync=False) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO job_logs (state_id, data, truncated) VALUES (?, ?, ?)",
                [(e.state_id, e.data, int(e.truncated)) for e in batch],
            )

    def _remove_work_files(self, batch: list[Ended]) -> None:
        for ended in batch:
            if ended.work_files:
                for suffix in (".joblog.head", ".joblog.tail"):
                    with contextlib.suppress(FileNotFoundError):
                        (self._folder / f"{ended.state_id}{suffix}").unlink()

    # ---- reading, removing ----

    def load(self, state_id: str) -> tuple[bytes, bool] | None:
        row = (
            self._db.connect()
            .execute("SELECT data, truncated FROM job_logs WHERE state_id = ?", (state_id,))
            .fetchone()
        )
        return None if row is None else (bytes(row[0]), bool(row[1]))

    def size(self, state_id: str) -> int:
        row = (
            self._db.connect()
            .execute("SELECT length(data) FROM job_logs WHERE state_id = ?", (state_id,))
            .fetchone()
        )
        return 0 if row is None else int(row[0])

    def delete(self, state_id: str) -> None:
        with self._db.transaction(fsync=False) as conn:
            conn.execute("DELETE FROM job_logs WHERE state_id = ?", (state_id,))
