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

from launcher import outcomes as oc
from launcher.store.db import Database

#: Format of the ``response`` column: ``{"v": 2, "response": <the seed's JSON, integer ms>}``.
#: Older launchers stored the seed's JSON itself with durations in float seconds; such
#: records are converted when read.
RECORD_VERSION = 2


def encode(result: oc.JobResult) -> str:
    return json.dumps({"v": RECORD_VERSION, "response": oc.response_json(result)})


def decode(body: str) -> oc.JobResult:
    data = json.loads(body)
    if isinstance(data, dict) and data.get("v") == RECORD_VERSION:
        return oc.result_from_json(data["response"])
    return oc.result_from_json(data, scale=1000)  # a record of an older launcher: seconds


class JobRecords:
    """One row per job, keyed by its state id: running, then finished with its result."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def db(self) -> Database:
        """The database the records live in (its group commit takes the hot path's writes)."""
        return self._db

    def started(self, state_id: str, model_id: str, name: str, started_at: float) -> None:
        """Record a job accepted at ``started_at`` (Unix seconds)."""
        try:
            self._db.statement(
                "INSERT INTO jobs (state_id, model_id, name, started_at, status)"
                " VALUES (?, ?, ?, ?, 'running')",
                (state_id, model_id, name, started_at),
                fsync=False,
            )
        except sqlite3.IntegrityError:
            raise ValueError(f"a job for state {state_id!r} is already recorded") from None

    def finished(self, state_id: str, result: oc.JobResult) -> None:
        """Record the job's result; ``KeyError`` if the job was never started."""
        cursor = self._db.statement(
            "UPDATE jobs SET status = 'finished', response = ? WHERE state_id = ?",
            (encode(result), state_id),
            fsync=False,
        )
        if cursor.rowcount == 0:
            raise KeyError(state_id)

    def started_and_finished(
        self, state_id: str, model_id: str, name: str, started_at: float, result: oc.JobResult
    ) -> None:
        """``started`` then ``finished`` in one statement (a job whose accepted row waited for
        its result); ``ValueError`` if the job is recorded already."""
        try:
            self._db.statement(
                "INSERT INTO jobs (state_id, model_id, name, started_at, status, response)"
                " VALUES (?, ?, ?, ?, 'finished', ?)",
                (state_id, model_id, name, started_at, encode(result)),
                fsync=False,
            )
        except sqlite3.IntegrityError:
            raise ValueError(f"a job for state {state_id!r} is already recorded") from None

    def get(self, model_id: str, state_id: str) -> tuple[str, oc.JobResult | None] | None:
        """``(status, result)``: ``("running", None)``, ``("finished", JobResult)``, or
        ``None`` when no job of this model has that state id."""
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
        result = None if row["response"] is None else decode(row["response"])
        return str(row["status"]), result

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
                [(encode(_lost_job_result(r, now)), r["state_id"]) for r in rows],
            )
        return len(rows)


def _lost_job_result(row: sqlite3.Row, now: float) -> oc.JobResult:
    def total(end: float) -> oc.Durations:
        return oc.Durations(total=max(0, round((end - row["started_at"]) * 1000)))

    if row["created_at"] is not None:
        return oc.JobResult(oc.Success(row["state_id"]), total(row["created_at"]))
    return oc.JobResult(oc.LauncherTerminated(), total(now))
