"""The launcher's SQLite database (``<root>/launcher.db``): connections, transactions, schema.

Owns the connection settings every store relies on for durability (WAL, ``synchronous=FULL``,
foreign keys, a busy timeout), one connection per thread, and the schema: the core tables of
states and job records are versioned with ``PRAGMA user_version``; other stores (datasets,
persistent launchers) add theirs with ``register_schema``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from launcher.store.group import GroupCommitter

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000

# Migration i (1-based) brings user_version from i-1 to i. Append only; never edit a
# released step, since existing databases have already run it.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE states (
            id TEXT PRIMARY KEY,
            model_id TEXT NOT NULL,
            name TEXT NOT NULL,
            created_at REAL NOT NULL,
            mounted_models TEXT NOT NULL,
            being_deleted INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX states_by_model ON states(model_id, created_at)",
        """CREATE TABLE state_keys (
            state_id TEXT NOT NULL REFERENCES states(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            key TEXT NOT NULL,
            file TEXT NOT NULL,
            byte_size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            data BLOB,
            PRIMARY KEY (state_id, key)
        )""",
        """CREATE TABLE active_states (
            model_id TEXT PRIMARY KEY,
            state_id TEXT NOT NULL REFERENCES states(id)
        )""",
        """CREATE TABLE jobs (
            state_id TEXT PRIMARY KEY,
            model_id TEXT NOT NULL,
            name TEXT NOT NULL,
            started_at REAL NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'finished')),
            response TEXT
        )""",
        "CREATE INDEX jobs_by_status ON jobs(status, model_id, started_at)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


def batches(ids: list[str]) -> list[list[str]]:
    """``ids`` in slices of 500: a query's ``IN (?, ...)`` stays under SQLite's limit on bound
    parameters."""
    return [ids[start : start + 500] for start in range(0, len(ids), 500)]


def rows_of_models(conn: sqlite3.Connection, table: str, model_ids: list[str]) -> list[sqlite3.Row]:
    """Every row of ``table`` (``states``, ``snapshots``) of the given models, each model's
    oldest first, in one query per 500 models."""
    rows: list[sqlite3.Row] = []
    for batch in batches(model_ids):
        rows += conn.execute(
            f"SELECT * FROM {table} WHERE model_id IN ({','.join('?' * len(batch))})"
            " ORDER BY created_at, id",
            batch,
        ).fetchall()
    return rows


class SchemaError(Exception):
    """The database cannot be used by this version of the launcher."""


class Database:
    """``launcher.db``: per-thread connections and explicit ``BEGIN IMMEDIATE`` transactions."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._registered: dict[str, tuple[str, ...]] = {}
        self._migrate()
        #: The hot path's writes (job records, owners, state rows) share transactions here.
        self._group = GroupCommitter(self)

    def submit(self, fn: Callable[..., T], *args: Any, fsync: bool = True) -> Future[T]:
        """Run ``fn(*args)`` in the group commit: one writer thread runs every write queued
        while its previous commit ran in one transaction (each in its own savepoint, so one
        failing undoes only itself), fsync'd if any of them asks. The future resolves once
        that transaction is committed (durably, for ``fsync=True``). ``fn`` may use
        ``transaction()``: it becomes a savepoint of the group's transaction."""
        return self._group.submit(fn, args, fsync)

    def write(self, fn: Callable[..., T], *args: Any, fsync: bool = True) -> T:
        """``submit`` and wait (blocking) for its result; inside the group, ``fn`` runs at once."""
        if self._group.is_writer():
            return fn(*args)
        return self.submit(fn, *args, fsync=fsync).result()

    def connect(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions come from ``transaction``)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        # check_same_thread=False only so that close() may close every thread's connection;
        # each connection is still used by the one thread that opened it.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            conn.close()
            raise SchemaError(f"{self.path}: cannot enable WAL journal mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        with self._lock:
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, fsync: bool = True) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an exception).

        IMMEDIATE takes the write lock up front, so a read-then-write transaction never fails
        half way with SQLITE_BUSY. Nested use becomes a savepoint of the outer transaction.
        ``fsync=False`` commits with ``synchronous=NORMAL``: the change survives a crash of the
        process (it is in the WAL) but not a power cut until the next fsync'd commit, which
        makes every earlier WAL frame durable too.
        """
        conn = self.connect()
        if not fsync and not conn.in_transaction:
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                with self.transaction() as inner:
                    yield inner
            finally:
                conn.execute("PRAGMA synchronous=FULL")
            return
        if conn.in_transaction:
            conn.execute("SAVEPOINT nested")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
                raise
            conn.execute("RELEASE nested")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def statement(
        self, sql: str, params: tuple[Any, ...] = (), fsync: bool = True
    ) -> sqlite3.Cursor:
        """One statement, atomic by itself: inside this thread's transaction a part of it
        (a failed statement undoes only itself, no savepoint needed), else committed alone
        as ``transaction(fsync)`` would."""
        conn = self.connect()
        if conn.in_transaction:
            return conn.execute(sql, params)
        with self.transaction(fsync) as conn:
            return conn.execute(sql, params)

    def register_schema(self, name: str, statements: list[str]) -> None:
        """Run a store's ``CREATE … IF NOT EXISTS`` statements once, in one transaction.

        Registering the same name again with the same statements does nothing; with different
        statements it is refused, since two stores must not disagree on one schema.
        """
        wanted = tuple(statements)
        with self._lock:
            known = self._registered.get(name)
            if known is not None:
                if known != wanted:
                    raise SchemaError(f"schema {name!r} registered twice with different statements")
                return
            self._registered[name] = wanted
        try:
            with self.transaction() as conn:
                for statement in wanted:
                    conn.execute(statement)
        except BaseException:
            with self._lock:
                del self._registered[name]
            raise

    def close(self) -> None:
        """Close every thread's connection; later calls to ``connect`` open new ones."""
        self._group.stop()
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def _migrate(self) -> None:
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"{self.path} has schema version {version}, newer than this launcher's "
                    f"{SCHEMA_VERSION}; upgrade the launcher"
                )
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            # PRAGMA takes no parameters; SCHEMA_VERSION is an int constant.
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
