"""Persistent launchers: named, long-lived, with a spec their jobs share; kept across restarts."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass

from launcher.spec import GpuRequest, LauncherSpec
from launcher.store.db import Database

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS persistent_launchers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
]

#: At most this many rows are kept in memory (the rest are read from the database each time).
_MAX_KNOWN = 10_000


@dataclass(frozen=True)
class PersistentLauncherRecord:
    id: str
    name: str
    spec: LauncherSpec
    created_at: float


def _spec_from_json(raw: str) -> LauncherSpec:
    data = json.loads(raw)
    gpus = data.get("gpus")
    return LauncherSpec(
        cpus=data["cpus"],
        memory_mebibytes=data["memoryMebibytes"],
        disk_mebibytes=data.get("diskMebibytes"),
        swap_mebibytes=data.get("swapMebibytes"),
        gpus=GpuRequest(gpus["model"], gpus["count"]) if gpus else None,
    )


class PersistentLaunchers:
    """The rows, and a copy of each row read (every job on a persistent launcher looks its
    row up). Only this process writes them (one launcher per root), and a delete drops the
    copy, so the copy is never stale; a read that raced a delete does not keep its copy."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.register_schema("persistent_launchers", _SCHEMA)
        self._lock = threading.Lock()
        self._known: dict[str, PersistentLauncherRecord] = {}
        self._deletes = 0  # bumped by every delete: a read from before one is not kept

    def create(self, name: str, spec: LauncherSpec) -> PersistentLauncherRecord:
        record = PersistentLauncherRecord("pl-" + secrets.token_hex(10), name, spec, time.time())
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO persistent_launchers (id, name, spec, created_at) VALUES (?, ?, ?, ?)",
                (record.id, name, json.dumps(spec.to_json()), record.created_at),
            )
        return record

    def get(self, launcher_id: str) -> PersistentLauncherRecord | None:
        known = self._known.get(launcher_id)
        if known is not None:
            return known
        deletes = self._deletes
        row = (
            self.db.connect()
            .execute(
                "SELECT id, name, spec, created_at FROM persistent_launchers WHERE id = ?",
                (launcher_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        record = PersistentLauncherRecord(row[0], row[1], _spec_from_json(row[2]), row[3])
        with self._lock:
            if deletes == self._deletes and len(self._known) < _MAX_KNOWN:
                self._known[launcher_id] = record
        return record

    def exists(self, launcher_id: str) -> bool:
        return self.get(launcher_id) is not None

    def list(self) -> list[PersistentLauncherRecord]:
        rows = (
            self.db.connect()
            .execute(
                "SELECT id, name, spec, created_at FROM persistent_launchers ORDER BY created_at"
            )
            .fetchall()
        )
        return [PersistentLauncherRecord(r[0], r[1], _spec_from_json(r[2]), r[3]) for r in rows]

    def delete(self, launcher_id: str) -> bool:
        with self._lock:
            self._deletes += 1
            self._known.pop(launcher_id, None)
        try:
            with self.db.transaction() as conn:
                cur = conn.execute("DELETE FROM persistent_launchers WHERE id = ?", (launcher_id,))
        finally:
            with self._lock:
                self._deletes += 1
                self._known.pop(launcher_id, None)
        return cur.rowcount > 0
