"""Group commit: concurrent writes share transactions; each one's failure is its own."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from launcher.store.db import Database


def _insert(db: Database, state_id: str) -> str:
    with db.transaction() as conn:  # a savepoint of the group's transaction
        conn.execute(
            "INSERT INTO jobs (state_id, model_id, name, started_at, status)"
            " VALUES (?, 'm', 'n', 0, 'running')",
            (state_id,),
        )
    return state_id


def _fail(db: Database, state_id: str) -> None:
    _insert(db, state_id)
    raise ValueError("refused")


def _ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as other:  # another connection sees only committed rows
        return {r[0] for r in other.execute("SELECT state_id FROM jobs")}


def test_concurrent_writes_all_land_and_each_answers_after_its_commit(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    answered: list[str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        for j in range(25):
            value = db.submit(_insert, db, f"s-{i}-{j}", fsync=j % 2 == 0).result(30)
            assert value in _ids(tmp_path / "launcher.db")  # committed before the answer
            with lock:
                answered.append(value)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answered) == 200
    assert _ids(tmp_path / "launcher.db") == set(answered)
    db.close()


def test_a_failing_write_is_undone_alone(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    futures = [db.submit(_insert, db, "s-a"), db.submit(_fail, db, "s-b")]
    futures.append(db.submit(_insert, db, "s-c"))
    futures.append(db.submit(_insert, db, "s-a"))  # duplicate key: refused by SQLite
    assert futures[0].result(30) == "s-a"
    with pytest.raises(ValueError, match="refused"):
        futures[1].result(30)
    assert futures[2].result(30) == "s-c"
    with pytest.raises(sqlite3.IntegrityError):
        futures[3].result(30)
    assert _ids(tmp_path / "launcher.db") == {"s-a", "s-c"}
    db.close()


def test_write_inside_the_group_runs_at_once_and_close_then_reuse(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    nested = db.submit(lambda: db.write(_insert, db, "s-inner")).result(30)
    assert nested == "s-inner"
    assert db.write(_insert, db, "s-outer") == "s-outer"
    db.close()  # commits what is queued and ends the writer; a later write starts a new one
    assert db.write(_insert, db, "s-late") == "s-late"
    db.close()
    assert _ids(tmp_path / "launcher.db") == {"s-inner", "s-outer", "s-late"}
