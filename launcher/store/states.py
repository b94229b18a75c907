"""Model states: key bytes in files under ``<root>/states/<stateId>/``, metadata in SQLite.

Creating a state goes through ``PendingState`` (``launcher.store.pending``, which holds the commit
protocol); this module reads, renames, activates, deletes and reconciles committed states.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launcher import rules
from launcher.store.blobs import KeyReader, KeyWriter, StateKey, fsync_dir, remove_tree
from launcher.store.db import Database, batches, rows_of_models
from launcher.store.errors import (
    CorruptBlob,
    StateIsActive,
    StateKeyNotFound,
    StateNotFound,
    StoreError,
)
from launcher.store.pending import PendingState, StateRecord

__all__ = [
    "CorruptBlob",
    "KeyReader",
    "KeyWriter",
    "PendingState",
    "StateIsActive",
    "StateKey",
    "StateKeyNotFound",
    "StateNotFound",
    "StateRecord",
    "StateStore",
    "StoreError",
]

log = logging.getLogger(__name__)

# Folders being removed get this suffix; '.' never occurs in a state id, so no clash.
_TRASH_SUFFIX = ".deleted"


class StateStore:
    """All states of all models under ``<root>/states/``."""

    def __init__(self, root: Path, db: Database) -> None:
        self._db = db
        self._states_dir = Path(root) / "states"
        self._work_root = Path(root) / "tmp" / "states"
        self._states_dir.mkdir(parents=True, exist_ok=True)
        self._work_root.mkdir(parents=True, exist_ok=True)

    def new_state_id(self) -> str:
        """A fresh id: ``s-`` and 20 base32 characters (100 random bits), URL- and path-safe."""
        return "s-" + base64.b32encode(secrets.token_bytes(15)).decode().lower()[:20]

    def begin(
        self,
        model_id: str,
        name: str,
        state_id: str | None = None,
        mounted_models: builtins.list[dict[str, Any]] | None = None,
        fresh: bool = False,
    ) -> PendingState:
        """A state being created. ``fresh``: ``state_id`` was just made by ``new_state_id``
        (100 random bits: no state has it, and the database's key would refuse it at the
        commit anyway), so it is not looked up (the job's hot path)."""
        if state_id is None:
            state_id, fresh = self.new_state_id(), True
        elif not isinstance(state_id, str) or not rules.STATE_ID.ok(state_id):
            raise ValueError(f"invalid state id {state_id!r}")
        if not fresh:
            if self._row(self._db.connect(), state_id) is not None:
                raise ValueError(f"state id {state_id!r} already exists")
            if (self._states_dir / state_id).exists() or (self._work_root / state_id).exists():
                raise ValueError(f"state id {state_id!r} is already being created")
        mounted = json.dumps(list(mounted_models or []))
        return PendingState(
            self._db,
            self._states_dir,
            self._work_root / state_id,
            state_id,
            model_id,
            name,
            mounted,
            lazy_folder=fresh,
        )

    async def commit(
        self, pending: PendingState, then: Callable[[], None] | None = None
    ) -> StateRecord:
        """Commit ``pending`` from the event loop. A state of only inline keys goes straight
        to the group commit's writer (one thread hop; its rows share an fsync with concurrent
        jobs'); one with key files first fsyncs its folders in a worker thread. ``then`` runs
        right after the state's rows in the same transaction (the job's record)."""
        if pending.in_files:
            record = await asyncio.to_thread(pending.commit)
            if then is not None:
                await asyncio.wrap_future(self._db.submit(then, fsync=False))
            return record
        return await asyncio.wrap_future(self._db.submit(_commit_then, pending, then))

    def get(self, model_id: str, state_id: str | None = None) -> StateRecord:
        """The state (``None``: the model's active state); ``StateNotFound``."""
        conn = self._db.connect()
        if state_id is None:
            state_id = self.active_state_id(model_id)
            if state_id is None:
                raise StateNotFound(model_id, None)
        row = self._row(conn, state_id)
        if row is None or row["model_id"] != model_id:
            raise StateNotFound(model_id, state_id)
        return self._records(conn, [row])[0]

    def list(self, model_id: str) -> builtins.list[StateRecord]:
        """The model's states, oldest first."""
        conn = self._db.connect()
        rows = conn.execute(
            "SELECT * FROM states WHERE model_id = ? ORDER BY created_at, id", (model_id,)
        ).fetchall()
        return self._records(conn, rows)

    def list_many(self, model_ids: builtins.list[str]) -> dict[str, builtins.list[StateRecord]]:
        """``list`` of each model in a few queries (listing a page of models)."""
        conn = self._db.connect()
        found: dict[str, builtins.list[StateRecord]] = {m: [] for m in model_ids}
        for record in self._records(conn, rows_of_models(conn, "states", builtins.list(found))):
            found[record.model_id].append(record)
        return found

    def active_state_ids(self, model_ids: builtins.list[str]) -> dict[str, str]:
        """The active state of each of ``model_ids`` that has one, in a few queries."""
        conn = self._db.connect()
        found: dict[str, str] = {}
        for batch in batches(model_ids):
            for row in conn.execute(
                "SELECT model_id, state_id FROM active_states"
                f" WHERE model_id IN ({','.join('?' * len(batch))})",
                batch,
            ):
                found[str(row["model_id"])] = str(row["state_id"])
        return found

    def active_state_id(self, model_id: str) -> str | None:
        row = (
            self._db.connect()
            .execute("SELECT state_id FROM active_states WHERE model_id = ?", (model_id,))
            .fetchone()
        )
        return None if row is None else str(row["state_id"])

    def open_key(self, model_id: str, state_id: str, key: str) -> KeyReader:
        """An open reader of one key; ``StateNotFound``, ``StateKeyNotFound``, ``CorruptBlob``."""
        conn = self._db.connect()
        row = self._row(conn, state_id)
        if row is None or row["model_id"] != model_id:
            raise StateNotFound(model_id, state_id)
        key_row = conn.execute(
            "SELECT * FROM state_keys WHERE state_id = ? AND key = ?", (state_id, key)
        ).fetchone()
        if key_row is None:
            raise StateKeyNotFound(state_id, key)
        path = self._states_dir / state_id / key_row["file"]
        try:
            return KeyReader(
                path, StateKey(key, key_row["byte_size"], key_row["sha256"]), key_row["data"]
            )
        except FileNotFoundError:
            # Deleted between the lookup and the open (the row goes first), or lost on disk.
            if self._row(conn, state_id) is None:
                raise StateNotFound(model_id, state_id) from None
            raise CorruptBlob(str(path), "file is missing") from None

    def rename(self, model_id: str, state_id: str, name: str) -> None:
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE states SET name = ? WHERE id = ? AND model_id = ?",
                (name, state_id, model_id),
            )
            if cursor.rowcount == 0:
                raise StateNotFound(model_id, state_id)

    def set_active(self, model_id: str, state_id: str) -> None:
        with self._db.transaction() as conn:
            row = self._row(conn, state_id)
            if row is None or row["model_id"] != model_id:
                raise StateNotFound(model_id, state_id)
            conn.execute(
                "INSERT OR REPLACE INTO active_states (model_id, state_id) VALUES (?, ?)",
                (model_id, state_id),
            )

    def delete(self, model_id: str, state_id: str) -> None:
        """Remove a state (``StateIsActive`` for the active one). Readers that already hold a
        key open keep reading it: the row goes first, then the files are unlinked."""
        with self._db.transaction() as conn:
            row = self._row(conn, state_id)
            if row is None or row["model_id"] != model_id:
                raise StateNotFound(model_id, state_id)
            if self.active_state_id(model_id) == state_id:
                raise StateIsActive(model_id, state_id)
            conn.execute("DELETE FROM states WHERE id = ?", (state_id,))
        trash = self._work_root / (state_id + _TRASH_SUFFIX)
        try:
            os.rename(self._states_dir / state_id, trash)
        except FileNotFoundError:
            return  # every key was inline
        fsync_dir(self._states_dir)
        remove_tree(trash)

    def reconcile(self) -> None:
        """At start, before any job: remove unfinished work and state folders without a row."""
        for entry in self._work_root.iterdir():
            remove_tree(entry)
        committed = {
            str(r["id"]) for r in self._db.connect().execute("SELECT id FROM states").fetchall()
        }
        for entry in self._states_dir.iterdir():
            if entry.name not in committed:
                log.info("removing %s: not a committed state", entry)
                remove_tree(entry)
        fsync_dir(self._states_dir)
        fsync_dir(self._work_root)
        with_files = {
            str(r["state_id"])
            for r in self._db.connect().execute(
                "SELECT DISTINCT state_id FROM state_keys WHERE data IS NULL"
            )
        }
        for state_id in sorted(with_files - {e.name for e in self._states_dir.iterdir()}):
            log.error("state %s is committed but its folder is missing", state_id)

    @staticmethod
    def _row(conn: sqlite3.Connection, state_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM states WHERE id = ?", (state_id,)
        ).fetchone()
        return row

    @staticmethod
    def _records(
        conn: sqlite3.Connection, rows: builtins.list[sqlite3.Row]
    ) -> builtins.list[StateRecord]:
        keys: dict[str, builtins.list[StateKey]] = {str(r["id"]): [] for r in rows}
        for batch in batches(builtins.list(keys)):
            for k in conn.execute(
                f"SELECT * FROM state_keys WHERE state_id IN ({','.join('?' * len(batch))})"
                " ORDER BY state_id, position",
                batch,
            ):
                keys[k["state_id"]].append(StateKey(k["key"], k["byte_size"], k["sha256"]))
        return [
            StateRecord(
                id=r["id"],
                model_id=r["model_id"],
                name=r["name"],
                created_at=r["created_at"],
                keys=tuple(keys[r["id"]]),
                mounted_models=tuple(json.loads(r["mounted_models"])),
                being_deleted=bool(r["being_deleted"]),
            )
            for r in rows
        ]


def _commit_then(pending: PendingState, then: Callable[[], None] | None) -> StateRecord:
    record = pending.commit()
    if then is not None:
        then()
    return record
