"""Durable records of createState jobs, so that ``wait_for_state_to_be_created`` keeps
answering after a job ends, and after a crash (unfinished jobs become ``launcher_terminated``).

Records are committed without their own fsync: they survive a crash of the launcher process
(SQLite's WAL is in the kernel), and the next state commit, which is fsync'd, makes them
durable against a power cut too. After a power cut, a job whose record was lost answers
``state_not_found``; its state, if committed, is intact (``reconcile`` answers success for a
committed state whose job still reads running).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from launcher.store.db import Database


class JobRecords:
    """One row per job, keyed by its state id: running, then finished with its response."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def started(self, state_id: str, model_id: str, name: str, started_at: float) -> None:
        with self._db.transaction(fsync=False) as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE state_id = ?", (state_id,)).fetchone():
                raise ValueError(f"a job for state {state_id!r} is already recorded")
            conn.execute(
                "INSERT INTO jobs (state_id, model_id, name, started_at, status)"
                " VALUES (?, ?, ?, ?, 'running')",
                (state_id, model_id, name, started_at),
            )

    def finished(self, state_id: str, response: dict[str, Any]) -> None:
        """Record the job's final response (the seed's response dict); ``KeyError`` if the job
        was never started."""
        body = json.dumps(response)
        with self._db.transaction(fsync=False) as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = 'finished', response = ? WHERE state_id = ?",
                (body, state_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(state_id)

    def get(self, model_id: str, state_id: str) -> tuple[str, dict[str, Any] | None] | None:
        """``(status, response)``: ``("running", None)``, ``("finished", {...})``, or ``None``
        when no job of this model has that state id."""
        row = (
            self._db.connect()
            .execute(
                "SELECT status, response FROM jobs WHERE state_id = ? AND model_id = ?",
                (state_id, model_id),
            )
            .fetchone()
        )
        if row is None:
            return None
        response = None if row["response"] is None else json.loads(row["response"])
        return str(row["status"]), response

    def running(self, model_id: str) -> list[dict[str, Any]]:
        """The model's running jobs, oldest first: ``[{"id", "name", "startedAt"}]``."""
        rows = (
            self._db.connect()
            .execute(
                "SELECT state_id, name, started_at FROM jobs"
                " WHERE status = 'running' AND model_id = ? ORDER BY started_at, state_id",
                (model_id,),
            )
            .fetchall()
        )
        return [
            {"id": r["state_id"], "name": r["name"], "startedAt": r["started_at"]} for r in rows
        ]

    def reconcile(self, now: float) -> int:
        """At start: every job still "running" was lost with the previous launcher process.
        Record it as failed with ``launcher_terminated``, unless its state was committed before
        the crash (the response was not recorded in time): that state is durable, so the job
        answers success, with ``total`` up to the commit. Returns how many jobs were lost."""
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT j.state_id, j.started_at, s.created_at FROM jobs j"
                " LEFT JOIN states s ON s.id = j.state_id AND s.model_id = j.model_id"
                " WHERE j.status = 'running'"
            ).fetchall()
            conn.executemany(
                "UPDATE jobs SET status = 'finished', response = ? WHERE state_id = ?",
                [(json.dumps(_lost_job_response(r, now)), r["state_id"]) for r in rows],
            )
        return len(rows)


def _lost_job_response(row: sqlite3.Row, now: float) -> dict[str, Any]:
    if row["created_at"] is not None:
        total = max(0.0, row["created_at"] - row["started_at"])
        return {"result": {"success": {"durations": {"total": total}, "stateId": row["state_id"]}}}
    return {
        "result": {
            "failed": {
                "durations": {"total": max(0.0, now - row["started_at"])},
                "error": {"code": "launcher_terminated"},
            }
        }
    }
