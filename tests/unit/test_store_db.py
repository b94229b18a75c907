"""Database: durable connection settings, per-thread connections, transactions, schemas."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from launcher.store.db import SCHEMA_VERSION, Database, SchemaError


def test_connections_are_durable_wal_with_foreign_keys(tmp_path: Path) -> None:
    conn = Database(tmp_path / "launcher.db").connect()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_each_thread_gets_its_own_connection(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    seen: list[sqlite3.Connection] = []
    thread = threading.Thread(target=lambda: seen.append(db.connect()))
    thread.start()
    thread.join()
    assert db.connect() is db.connect()
    assert seen[0] is not db.connect()


def test_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    db.register_schema("t", ["CREATE TABLE IF NOT EXISTS t (x INTEGER)"])
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("abandon")
    assert [tuple(r) for r in db.connect().execute("SELECT x FROM t")] == [(1,)]


def test_nested_transaction_rolls_back_only_its_part(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    db.register_schema("t", ["CREATE TABLE IF NOT EXISTS t (x INTEGER)"])
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError), db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("abandon inner")
    assert [tuple(r) for r in db.connect().execute("SELECT x FROM t")] == [(1,)]


def test_concurrent_writers_from_threads_all_land(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    db.register_schema("t", ["CREATE TABLE IF NOT EXISTS t (x INTEGER)"])

    def write(base: int) -> None:
        for i in range(50):
            with db.transaction() as conn:
                (n,) = conn.execute("SELECT COUNT(*) FROM t").fetchone()
                conn.execute("INSERT INTO t VALUES (?)", (base + i,))
                assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == n + 1

    threads = [threading.Thread(target=write, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.connect().execute("SELECT COUNT(DISTINCT x) FROM t").fetchone()[0] == 200


def test_register_schema_is_idempotent_and_survives_reopen(tmp_path: Path) -> None:
    statements = ["CREATE TABLE IF NOT EXISTS extra (id TEXT PRIMARY KEY)"]
    db = Database(tmp_path / "launcher.db")
    db.register_schema("extra", statements)
    db.register_schema("extra", statements)
    with db.transaction() as conn:
        conn.execute("INSERT INTO extra VALUES ('a')")
    db.close()
    again = Database(tmp_path / "launcher.db")
    again.register_schema("extra", statements)
    assert [tuple(r) for r in again.connect().execute("SELECT id FROM extra")] == [("a",)]


def test_register_schema_refuses_a_conflicting_definition(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    db.register_schema("extra", ["CREATE TABLE IF NOT EXISTS extra (a TEXT)"])
    with pytest.raises(SchemaError, match="registered twice"):
        db.register_schema("extra", ["CREATE TABLE IF NOT EXISTS extra (b TEXT)"])


def test_failed_schema_can_be_registered_again_once_fixed(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    with pytest.raises(sqlite3.OperationalError):
        db.register_schema("broken", ["CREATE TABLE IF NOT EXISTS broken (a TEXT"])
    db.register_schema("broken", ["CREATE TABLE IF NOT EXISTS broken (a TEXT)"])


def test_database_from_a_newer_launcher_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "launcher.db"
    Database(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer than this launcher"):
        Database(path)


def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "launcher.db"
    db = Database(path)
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO jobs (state_id, model_id, name, started_at, status)"
            " VALUES ('s', 'm', 'n', 0, 'running')"
        )
    db.close()
    assert Database(path).connect().execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1
