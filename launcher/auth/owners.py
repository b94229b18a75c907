"""Which tenant owns each dataset, persistent launcher, state and snapshot.

One table, ``owners (kind, id, tenant)``, beside the stores' own tables. A dataset's or
persistent launcher's row is written in the transaction that makes it; a state's when its job
is accepted or its upload begins, before it exists; a snapshot's right after it is made. An
object without a row (made before tenants existed, or a snapshot in the instant before its
row) belongs to the default tenant, the one a launcher without keys has.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from launcher.store.db import Database

DEFAULT_TENANT = "default"
DATASET = "dataset"
LAUNCHER = "launcher"
STATE = "state"
SNAPSHOT = "snapshot"
KINDS = (DATASET, LAUNCHER, STATE, SNAPSHOT)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS owners (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    )""",
    "CREATE INDEX IF NOT EXISTS owners_by_tenant ON owners(kind, tenant)",
]

#: How to tell that an object of each kind exists (its store's table).
_EXISTS = {
    DATASET: ("SELECT 1 FROM datasets WHERE id = ?",),
    LAUNCHER: ("SELECT 1 FROM persistent_launchers WHERE id = ?",),
    STATE: ("SELECT 1 FROM states WHERE id = ?", "SELECT 1 FROM jobs WHERE state_id = ?"),
    SNAPSHOT: ("SELECT 1 FROM snapshots WHERE id = ?",),
}
#: Every id of each kind (for the default tenant's objects without a row).
_ALL = {
    DATASET: "SELECT id FROM datasets",
    LAUNCHER: "SELECT id FROM persistent_launchers",
    STATE: "SELECT id FROM states",
    SNAPSHOT: "SELECT id FROM snapshots",
}
_CHUNK = 500


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind of object {kind!r}")


class Owners:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.register_schema("auth.owners", _SCHEMA)

    def record(self, kind: str, object_id: str, tenant: str) -> None:
        """``object_id`` belongs to ``tenant`` (durably, before the call returns)."""
        _check_kind(kind)
        self._db.statement(
            "INSERT OR REPLACE INTO owners (kind, id, tenant) VALUES (?, ?, ?)",
            (kind, object_id, tenant),
        )

    def tenant_of(self, kind: str, object_id: str) -> str | None:
        """The owning tenant; None when the object does not exist (and has no row)."""
        _check_kind(kind)
        conn = self._db.connect()
        row = conn.execute(
            "SELECT tenant FROM owners WHERE kind = ? AND id = ?", (kind, object_id)
        ).fetchone()
        if row is not None:
            return str(row[0])
        return DEFAULT_TENANT if self._exists(conn, kind, object_id) else None

    def tenants_of(self, kind: str, ids: Iterable[str]) -> dict[str, str]:
        """The owner of each id that has a row; ids without one are left out."""
        _check_kind(kind)
        wanted = list(dict.fromkeys(ids))
        conn = self._db.connect()
        out: dict[str, str] = {}
        for start in range(0, len(wanted), _CHUNK):
            part = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(part))
            rows = conn.execute(
                f"SELECT id, tenant FROM owners WHERE kind = ? AND id IN ({marks})", (kind, *part)
            )
            out.update((str(r[0]), str(r[1])) for r in rows)
        return out

    def ids_of(self, kind: str, tenant: str) -> set[str]:
        """Every existing id of ``kind`` that ``tenant`` owns."""
        _check_kind(kind)
        conn = self._db.connect()
        try:
            existing = {str(r[0]) for r in conn.execute(_ALL[kind])}
        except sqlite3.OperationalError:  # that store's table was never made
            return set()
        rows = conn.execute("SELECT id, tenant FROM owners WHERE kind = ?", (kind,)).fetchall()
        owned = {str(r[0]): str(r[1]) for r in rows}
        return {i for i in existing if owned.get(i, DEFAULT_TENANT) == tenant}

    @staticmethod
    def _exists(conn: sqlite3.Connection, kind: str, object_id: str) -> bool:
        for query in _EXISTS[kind]:
            try:
                if conn.execute(query, (object_id,)).fetchone() is not None:
                    return True
            except sqlite3.OperationalError:
                continue
        return False
