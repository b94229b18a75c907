"""Model snapshots: a frozen copy of a model's code folder and a pin of its active state.

Layout: ``<root>/snapshots/<snapshotId>/code/`` is a copy of the model folder (every file
fsync'd, then made read-only), ``<root>/snapshots/<snapshotId>/state/k000…`` are hard links to
the key files of the state that was active. Metadata lives in SQLite (``snapshots``,
``snapshot_keys``).

Why hard links pin the state: a committed key file is never written again, so a second name
for its inode freezes its bytes at no cost. Deleting the state unlinks only the state's names;
the snapshot's keep the bytes, so ``delete_model_state`` needs to know nothing of snapshots.
Keys that have no file of their own (small keys kept in the database) or that sit on another
file system are copied instead.

Creation follows the states' commit protocol: built in ``<root>/tmp/snapshots/<id>/``, fsync'd,
renamed into place, parents fsync'd, then the rows inserted in one transaction; ``reconcile``
removes what a crash left half done. Deletion removes the rows first (nothing new can resolve
the snapshot), then the folder, unless a job that resolved it is still alive (a lease): then
the folder goes when the last such job is released, or at the next start.
"""

from __future__ import annotations

import base64
import builtins
import errno
import json
import logging
import os
import secrets
import shutil
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.store.blobs import KeyReader, StateKey, fsync_dir, remove_tree
from launcher.store.db import Database, batches, rows_of_models
from launcher.store.errors import StateNotFound, StoreError
from launcher.store.states import StateRecord, StateStore

log = logging.getLogger(__name__)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS snapshots (
        id TEXT PRIMARY KEY,
        model_id TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        state_id TEXT NOT NULL,
        mounted_models TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS snapshots_by_model ON snapshots(model_id, created_at)",
    """CREATE TABLE IF NOT EXISTS snapshot_keys (
        snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        key TEXT NOT NULL,
        file TEXT NOT NULL,
        byte_size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (snapshot_id, key)
    )""",
]
# Written by Python when main.py is imported outside a read-only sandbox; not the model's code.
_IGNORED = frozenset({"__pycache__"})
_TRASH_SUFFIX = ".deleted"
# How often creation restarts pinning when the active state is swapped and deleted meanwhile.
_PIN_ATTEMPTS = 3


class SnapshotNotFound(StoreError):
    code = "snapshot_not_found"

    def __init__(self, model_id: str, snapshot_id: str) -> None:
        self.model_id = model_id
        self.snapshot_id = snapshot_id
        super().__init__(f"model {model_id!r} has no snapshot {snapshot_id!r}")


@dataclass(frozen=True)
class SnapshotKey:
    key: StateKey
    file: str


@dataclass(frozen=True)
class SnapshotRecord:
    id: str
    model_id: str
    name: str
    created_at: float
    state_id: str
    keys: tuple[SnapshotKey, ...]
    mounted_models: tuple[dict[str, Any], ...]  # those of the pinned state
    folder: Path

    @property
    def code_dir(self) -> Path:
        return self.folder / "code"

    def open_key(self, key: SnapshotKey) -> KeyReader:
        return KeyReader(self.folder / "state" / key.file, key.key)


class SnapshotStore:
    """All snapshots of all models under ``<root>/snapshots/``."""

    def __init__(self, root: Path, db: Database, states: StateStore) -> None:
        self._db = db
        self._states = states
        self._dir = Path(root) / "snapshots"
        self._work_root = Path(root) / "tmp" / "snapshots"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._work_root.mkdir(parents=True, exist_ok=True)
        db.register_schema("snapshots", _SCHEMA)
        # Leases of live jobs, and deleted snapshots whose folder waits for them to end.
        self._lock = threading.Lock()
        self._leases: dict[str, int] = {}
        self._doomed: set[str] = set()

    def create(
        self,
        model_id: str,
        name: str,
        code_dir: Path,
        then: Callable[[str], None] | None = None,
    ) -> SnapshotRecord:
        """Freeze ``code_dir`` and the model's active state; ``StateNotFound`` without one.
        ``then(snapshot_id)`` runs inside the transaction that commits it (its owner's row:
        the snapshot never exists without it)."""
        snapshot_id = "sn-" + base64.b32encode(secrets.token_bytes(15)).decode().lower()[:20]
        work = self._work_root / snapshot_id
        final = self._dir / snapshot_id
        work.mkdir()
        renamed = False
        try:
            state, keys = self._pin_active_state(model_id, work / "state")
            _freeze_tree(code_dir, work / "code")
            fsync_dir(work)
            os.rename(work, final)
            renamed = True
            fsync_dir(self._dir)
            fsync_dir(self._work_root)
            created_at = time.time()
            mounted = json.dumps(list(state.mounted_models))
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO snapshots (id, model_id, name, created_at, state_id,"
                    " mounted_models) VALUES (?, ?, ?, ?, ?, ?)",
                    (snapshot_id, model_id, name, created_at, state.id, mounted),
                )
                conn.executemany(
                    "INSERT INTO snapshot_keys (snapshot_id, position, key, file, byte_size,"
                    " sha256) VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (snapshot_id, i, k.key.key, k.file, k.key.byte_size, k.key.sha256)
                        for i, k in enumerate(keys)
                    ],
                )
                if then is not None:
                    then(snapshot_id)
        except BaseException:
            _remove_frozen(final if renamed else work)
            raise
        return SnapshotRecord(
            snapshot_id,
            model_id,
            name,
            created_at,
            state.id,
            tuple(keys),
            state.mounted_models,
            final,
        )

    def _pin_active_state(
        self, model_id: str, target: Path
    ) -> tuple[StateRecord, builtins.list[SnapshotKey]]:
        for _ in range(_PIN_ATTEMPTS):
            state = self._states.get(model_id)
            remove_tree(target)
            target.mkdir()
            try:
                keys = [self._pin_key(state, i, k.key, target) for i, k in enumerate(state.keys)]
            except StateNotFound:
                continue  # deactivated and deleted meanwhile: pin the new active state
            fsync_dir(target)
            return state, keys
        raise StateNotFound(model_id, None)

    def _pin_key(self, state: StateRecord, index: int, key: str, target: Path) -> SnapshotKey:
        file = f"k{index:03d}"
        with self._states.open_key(state.model_id, state.id, key) as reader:
            if not _link_open_file(reader, target / file):
                _copy_fd(reader.fd, target / file, 0o444)
            return SnapshotKey(StateKey(key, reader.byte_size, reader.sha256), file)

    def get(self, model_id: str, snapshot_id: str) -> SnapshotRecord:
        conn = self._db.connect()
        row = conn.execute("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        if row is None or row["model_id"] != model_id:
            raise SnapshotNotFound(model_id, snapshot_id)
        return self._records(conn, [row])[0]

    def exists(self, model_id: str, snapshot_id: str) -> bool:
        row = (
            self._db.connect()
            .execute("SELECT model_id FROM snapshots WHERE id = ?", (snapshot_id,))
            .fetchone()
        )
        return row is not None and row["model_id"] == model_id

    def list(self, model_id: str) -> builtins.list[SnapshotRecord]:
        """The model's snapshots, oldest first."""
        conn = self._db.connect()
        rows = conn.execute(
            "SELECT * FROM snapshots WHERE model_id = ? ORDER BY created_at, id", (model_id,)
        ).fetchall()
        return self._records(conn, rows)

    def list_many(self, model_ids: builtins.list[str]) -> dict[str, builtins.list[SnapshotRecord]]:
        """``list`` of each model in a few queries (listing a page of models)."""
        conn = self._db.connect()
        found: dict[str, builtins.list[SnapshotRecord]] = {m: [] for m in model_ids}
        for record in self._records(conn, rows_of_models(conn, "snapshots", builtins.list(found))):
            found[record.model_id].append(record)
        return found

    def acquire(
        self, model_id: str, snapshot_id: str, owner: object
    ) -> tuple[SnapshotRecord, Callable[[], object]]:
        """The snapshot, its folder kept until the returned release is called (once; later
        calls do nothing) or, failing that, until ``owner`` (a job's request) is garbage."""
        with self._lock:
            record = self.get(model_id, snapshot_id)
            self._leases[snapshot_id] = self._leases.get(snapshot_id, 0) + 1
        return record, weakref.finalize(owner, self._release, snapshot_id)

    def _release(self, snapshot_id: str) -> None:
        with self._lock:
            left = self._leases[snapshot_id] - 1
            if left:
                self._leases[snapshot_id] = left
                return
            del self._leases[snapshot_id]
            if snapshot_id not in self._doomed:
                return
            self._doomed.discard(snapshot_id)
        self._remove_folder(snapshot_id)

    def delete(self, model_id: str, snapshot_id: str) -> None:
        """Remove a snapshot (``SnapshotNotFound``); jobs that mount it keep their view."""
        with self._lock:
            with self._db.transaction() as conn:
                row = conn.execute(
                    "SELECT model_id FROM snapshots WHERE id = ?", (snapshot_id,)
                ).fetchone()
                if row is None or row["model_id"] != model_id:
                    raise SnapshotNotFound(model_id, snapshot_id)
                conn.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))
            if self._leases.get(snapshot_id):
                self._doomed.add(snapshot_id)
                return
        self._remove_folder(snapshot_id)

    def _remove_folder(self, snapshot_id: str) -> None:
        trash = self._work_root / (snapshot_id + _TRASH_SUFFIX)
        try:
            os.rename(self._dir / snapshot_id, trash)
        except FileNotFoundError:
            log.warning("snapshot %s had no folder when it was deleted", snapshot_id)
            return
        fsync_dir(self._dir)
        _remove_frozen(trash)

    def reconcile(self) -> None:
        """At start, before any job: remove unfinished work and folders without a row."""
        for entry in self._work_root.iterdir():
            _remove_frozen(entry)
        committed = {str(r["id"]) for r in self._db.connect().execute("SELECT id FROM snapshots")}
        for entry in self._dir.iterdir():
            if entry.name not in committed:
                log.info("removing %s: not a committed snapshot", entry)
                _remove_frozen(entry)
        fsync_dir(self._dir)
        fsync_dir(self._work_root)

    def _records(
        self, conn: sqlite3.Connection, rows: builtins.list[sqlite3.Row]
    ) -> builtins.list[SnapshotRecord]:
        keys: dict[str, builtins.list[SnapshotKey]] = {str(r["id"]): [] for r in rows}
        for batch in batches(builtins.list(keys)):
            for k in conn.execute(
                "SELECT * FROM snapshot_keys"
                f" WHERE snapshot_id IN ({','.join('?' * len(batch))})"
                " ORDER BY snapshot_id, position",
                batch,
            ):
                key = StateKey(k["key"], k["byte_size"], k["sha256"])
                keys[k["snapshot_id"]].append(SnapshotKey(key, k["file"]))
        return [
            SnapshotRecord(
                id=r["id"],
                model_id=r["model_id"],
                name=r["name"],
                created_at=r["created_at"],
                state_id=r["state_id"],
                keys=tuple(keys[r["id"]]),
                mounted_models=tuple(json.loads(r["mounted_models"])),
                folder=self._dir / r["id"],
            )
            for r in rows
        ]


def _freeze_tree(source: Path, target: Path) -> None:
    """Copy ``source`` to the new ``target``: folders, regular files (fsync'd) and symlinks (as
    links); other kinds (fifos, sockets) are skipped. Everything ends read-only."""
    target.mkdir()
    with os.scandir(source) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name in _IGNORED:
                continue
            dest = target / entry.name
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), dest)
            elif entry.is_dir(follow_symlinks=False):
                _freeze_tree(Path(entry.path), dest)
            elif entry.is_file(follow_symlinks=False):
                executable = entry.stat(follow_symlinks=False).st_mode & stat.S_IXUSR
                fd = os.open(entry.path, os.O_RDONLY)
                try:
                    _copy_fd(fd, dest, 0o555 if executable else 0o444)
                finally:
                    os.close(fd)
            else:
                log.warning("snapshot of %s: skipping %s, not a file or folder", source, entry.path)
    fsync_dir(target)
    os.chmod(target, 0o555)


def _link_open_file(reader: KeyReader, dest: Path) -> bool:
    """Hard-link the file ``reader`` holds open, if its path still names it. Not so for a key
    kept in the database (served from memory), a state deleted meanwhile, or another file
    system: the caller copies from the open descriptor then, which always has the bytes."""
    try:
        held, named = os.fstat(reader.fd), os.stat(reader.path)
        if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
            return False
        os.link(reader.path, dest)
    except FileNotFoundError:
        return False
    except OSError as e:
        if e.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            return False
        raise
    return True


def _copy_fd(fd: int, dest: Path, mode: int) -> None:
    with open(dest, "xb") as out:
        with os.fdopen(os.dup(fd), "rb") as src:
            src.seek(0)
            shutil.copyfileobj(src, out, 1 << 20)
        out.flush()
        os.fchmod(out.fileno(), mode)
        os.fsync(out.fileno())


def _remove_frozen(path: Path) -> None:
    """Remove a tree whose folders were made read-only (they must be writable to empty)."""
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, _ in os.walk(path):
            os.chmod(dirpath, 0o755)
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    remove_tree(path)
