"""DatasetStore: datasets' metadata in SQLite, their entries in append-only files on disk.

Owns the dataset lifecycle (create, add entries, read, remove entries, delete) and the
snapshots a createState job reads a dataset key through (``open_param``). Every change commits
a new ``datasetVersionId`` and a new immutable index file (see ``_dataset_files``); data files
only grow, so an open snapshot keeps reading the version it was taken from whatever happens
afterwards. Writers of one dataset take turns on a per-dataset lock held only while an
upload already staged and validated is appended and committed; readers take no lock.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from launcher.errors import dataset_key_not_found, dataset_not_found, invalid
from launcher.params import ParamSource
from launcher.store import _dataset_files as files
from launcher.store._dataset_append import EntryAppender, append_file
from launcher.store._dataset_read import EntriesSnapshot, EntryRange, Selection, resolve
from launcher.store._dataset_rules import KeyDef, KeyRules, check_definition
from launcher.store.db import Database

__all__ = ["DatasetInfo", "DatasetStore", "EntryRange", "KeyDef", "KeyRules", "PendingAdd"]

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS datasets (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at REAL NOT NULL,
        version_id TEXT NOT NULL,
        entries INTEGER NOT NULL,
        byte_size INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS dataset_keys (
        dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        required INTEGER NOT NULL,
        shape TEXT,
        allowed_types TEXT NOT NULL,
        data_gen INTEGER NOT NULL,
        data_end INTEGER NOT NULL,
        PRIMARY KEY (dataset_id, position)
    )""",
]

# A reader that loses a race with a commit (its index file unlinked under it) tries again.
_READ_ATTEMPTS = 5


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    name: str
    description: str
    created_at: float
    keys: tuple[KeyDef, ...]
    entries: int
    byte_size: int
    version_id: str


@dataclass(frozen=True)
class _KeyState:
    definition: KeyDef
    data_gen: int
    data_end: int


class DatasetStore:
    def __init__(self, root: Path, db: Database) -> None:
        self.dir = Path(root) / "datasets"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._staging = self.dir / ".staging"
        self._db = db
        db.register_schema("datasets", _SCHEMA)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- metadata ---------------------------------------------------------------------------

    def create(self, name: str, description: str, keys: Sequence[KeyDef]) -> DatasetInfo:
        check_definition(name, description, keys)
        dataset_id, version_id = str(uuid.uuid4()), str(uuid.uuid4())
        dataset_dir = self.dir / dataset_id
        dataset_dir.mkdir()
        for pos in range(len(keys)):
            files.data_path(dataset_dir, pos, 0).touch()
        files.fsync_dir(dataset_dir)
        files.fsync_dir(self.dir)
        created_at = time.time()
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, 0, 0)",
                (dataset_id, name, description, created_at, version_id),
            )
            conn.executemany(
                "INSERT INTO dataset_keys VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                [
                    (
                        dataset_id,
                        pos,
                        k.name,
                        int(k.required),
                        None if k.rules.shape is None else json.dumps(list(k.rules.shape)),
                        json.dumps(list(k.rules.allowed_types)),
                    )
                    for pos, k in enumerate(keys)
                ],
            )
        return DatasetInfo(dataset_id, name, description, created_at, tuple(keys), 0, 0, version_id)

    def get(self, dataset_id: str) -> DatasetInfo:
        found = self.page(ids=[dataset_id], offset=0, limit=1)[0]
        if not found:
            raise dataset_not_found(dataset_id)
        return found[0]

    def page(
        self, offset: int, limit: int, ids: Sequence[str] | None = None
    ) -> tuple[list[DatasetInfo], int]:
        """A page of datasets (oldest first) and the total matching ``ids`` (all if None)."""
        conn = self._db.connect()
        where, args = "", []
        if ids is not None:
            where = f"WHERE id IN ({', '.join('?' * len(ids))})"
            args = list(ids)
        total = conn.execute(f"SELECT count(*) FROM datasets {where}", args).fetchone()[0]
        rows = conn.execute(
            f"SELECT * FROM datasets {where} ORDER BY created_at, id LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        out = [
            DatasetInfo(
                r["id"],
                r["name"],
                r["description"],
                r["created_at"],
                tuple(k.definition for k in self._keys(conn, r["id"])),
                r["entries"],
                r["byte_size"],
                r["version_id"],
            )
            for r in rows
        ]
        return out, total

    def delete(self, dataset_id: str) -> None:
        with self._lock(dataset_id):
            with self._db.transaction() as conn:
                gone = conn.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,)).rowcount
            if not gone:
                raise dataset_not_found(dataset_id)
            # Open snapshots keep their file descriptors, so unlinking cannot change them.
            shutil.rmtree(self.dir / dataset_id, ignore_errors=True)
        with self._locks_guard:
            self._locks.pop(dataset_id, None)

    # -- adding -----------------------------------------------------------------------------

    def begin_add(self, dataset_id: str, keys: Sequence[tuple[str, int]]) -> PendingAdd:
        """Start an upload of ``(key name, byte_size)`` per key, in the order bytes will come."""
        info = self.get(dataset_id)
        by_name = {k.name: pos for pos, k in enumerate(info.keys)}
        parts: list[tuple[int, str, KeyRules, int]] = []
        seen: set[str] = set()
        for i, (name, byte_size) in enumerate(keys):
            if name not in by_name:
                known = ", ".join(repr(k.name) for k in info.keys)
                raise invalid(f"keys[{i}].key", f"the dataset has no key {name!r} (keys: {known})")
            if name in seen:
                raise invalid(f"keys[{i}].key", f"key {name!r} is given twice")
            seen.add(name)
            parts.append((by_name[name], name, info.keys[by_name[name]].rules, byte_size))
        for k in info.keys:
            if k.required and k.name not in seen:
                raise invalid("keys", f"the required key {k.name!r} is missing")
        return PendingAdd(self, dataset_id, EntryAppender(self._staging, parts))

    def _commit_add(self, dataset_id: str, appender: EntryAppender, count: int) -> str:
        with self._lock(dataset_id):
            conn = self._db.connect()
            row = self._row(conn, dataset_id)
            keys = self._keys(conn, dataset_id)
            dataset_dir = self.dir / dataset_id
            old = files.load_index(dataset_dir, row["version_id"], row["entries"], len(keys))
            added = np.zeros((count, len(keys), 2), dtype=files.INDEX_DTYPE)
            ends = {pos: k.data_end for pos, k in enumerate(keys)}
            for upload in appender.keys:
                state = keys[upload.key_pos]
                path = files.data_path(dataset_dir, upload.key_pos, state.data_gen)
                fd = os.open(path, os.O_WRONLY)
                try:
                    # Bytes past the committed end belong to an add that never committed.
                    os.ftruncate(fd, state.data_end)
                    append_file(upload.file, fd, state.data_end, upload.byte_size)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                added[:, upload.key_pos, 0] = np.frombuffer(upload.offsets, dtype=np.uint64)
                added[:, upload.key_pos, 0] += np.uint64(state.data_end)
                added[:, upload.key_pos, 1] = np.frombuffer(upload.lengths, dtype=np.uint64)
                ends[upload.key_pos] = state.data_end + upload.byte_size
            added_bytes = sum(u.byte_size for u in appender.keys)
            return self._commit_version(
                dataset_id, np.concatenate([old, added]), row["byte_size"] + added_bytes, ends
            )

    # -- reading ----------------------------------------------------------------------------

    def read_entries(self, dataset_id: str, selection: Selection) -> EntriesSnapshot:
        """The selected entries of every key, from one version, as a snapshot to stream."""
        index, key_defs, fds = self._snapshot(dataset_id, None)
        try:
            positions = resolve(selection, index.shape[0])
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return EntriesSnapshot([k.name for k in key_defs], fds, index, positions)

    def open_param(self, dataset_id: str, dataset_key: str, name: str) -> ParamSource:
        """A createState param over every present entry of ``dataset_key``, in entry order."""
        index, key_defs, fds = self._snapshot(dataset_id, dataset_key)
        pos = next(i for i, k in enumerate(key_defs) if k.name == dataset_key)
        for i, fd in enumerate(fds):
            if i != pos:
                os.close(fd)
        column = np.array(index[:, pos, :], dtype=np.uint64)
        present = column[:, 1] > 0
        return ParamSource(
            name, fds[pos], np.ascontiguousarray(column[present, 0]), column[present, 1].copy()
        )

    def _snapshot(
        self, dataset_id: str, require_key: str | None
    ) -> tuple[np.ndarray, list[KeyDef], list[int]]:
        """One version's index and a read fd per key, without locking out writers."""
        conn = self._db.connect()
        for _ in range(_READ_ATTEMPTS):
            row = conn.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
            if row is None:
                raise dataset_not_found(dataset_id)
            keys = self._keys(conn, dataset_id)
            if require_key is not None and all(k.definition.name != require_key for k in keys):
                raise dataset_key_not_found(dataset_id, require_key)
            dataset_dir = self.dir / dataset_id
            fds: list[int] = []
            try:
                index = files.load_index(dataset_dir, row["version_id"], row["entries"], len(keys))
                for pos, k in enumerate(keys):
                    fds.append(os.open(files.data_path(dataset_dir, pos, k.data_gen), os.O_RDONLY))
            except FileNotFoundError:
                for fd in fds:
                    os.close(fd)
                continue  # a commit replaced this version meanwhile
            return index, [k.definition for k in keys], fds
        raise OSError(f"dataset {dataset_id} kept changing while it was being read")

    # -- removing ---------------------------------------------------------------------------

    def remove_entries(self, dataset_id: str, selection: Selection) -> str:
        with self._lock(dataset_id):
            conn = self._db.connect()
            row = self._row(conn, dataset_id)
            keys = self._keys(conn, dataset_id)
            dataset_dir = self.dir / dataset_id
            index = files.load_index(dataset_dir, row["version_id"], row["entries"], len(keys))
            keep = np.ones(index.shape[0], dtype=bool)
            keep[resolve(selection, index.shape[0])] = False
            kept = np.array(index[keep])
            byte_size = int(kept[:, :, 1].sum()) if kept.size else 0
            ends = {pos: k.data_end for pos, k in enumerate(keys)}
            return self._commit_version(dataset_id, kept, byte_size, ends)

    # -- internals --------------------------------------------------------------------------

    def _commit_version(
        self, dataset_id: str, index: np.ndarray, byte_size: int, ends: dict[int, int]
    ) -> str:
        """Write the new version's index, then switch to it in one transaction."""
        dataset_dir = self.dir / dataset_id
        version_id = str(uuid.uuid4())
        if index.shape[0]:
            files.write_index(dataset_dir, version_id, index)
        with self._db.transaction() as conn:
            old = self._row(conn, dataset_id)["version_id"]
            conn.execute(
                "UPDATE datasets SET version_id = ?, entries = ?, byte_size = ? WHERE id = ?",
                (version_id, index.shape[0], byte_size, dataset_id),
            )
            conn.executemany(
                "UPDATE dataset_keys SET data_end = ? WHERE dataset_id = ? AND position = ?",
                [(end, dataset_id, pos) for pos, end in ends.items()],
            )
        files.unlink_quietly(files.index_path(dataset_dir, old))
        return version_id

    def _lock(self, dataset_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(dataset_id, threading.Lock())

    @staticmethod
    def _row(conn: sqlite3.Connection, dataset_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        if row is None:
            raise dataset_not_found(dataset_id)
        return row

    @staticmethod
    def _keys(conn: sqlite3.Connection, dataset_id: str) -> list[_KeyState]:
        rows = conn.execute(
            "SELECT * FROM dataset_keys WHERE dataset_id = ? ORDER BY position", (dataset_id,)
        ).fetchall()
        return [
            _KeyState(
                KeyDef(
                    r["name"],
                    bool(r["required"]),
                    KeyRules(
                        None if r["shape"] is None else tuple(json.loads(r["shape"])),
                        tuple(json.loads(r["allowed_types"])),
                    ),
                ),
                r["data_gen"],
                r["data_end"],
            )
            for r in rows
        ]


class PendingAdd:
    """An upload in progress: ``write`` its chunks, then ``commit`` (or ``abort``)."""

    def __init__(self, store: DatasetStore, dataset_id: str, appender: EntryAppender) -> None:
        self._store = store
        self._dataset_id = dataset_id
        self._appender = appender

    def write(self, chunk: bytes) -> None:
        self._appender.write(chunk)

    def commit(self) -> str:
        """Validate the end of the upload and make all its entries visible at once."""
        try:
            count = self._appender.finish()
            return self._store._commit_add(self._dataset_id, self._appender, count)
        finally:
            self._appender.close()

    def abort(self) -> None:
        self._appender.close()
