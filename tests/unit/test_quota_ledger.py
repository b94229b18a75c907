"""The quota ledger on a real launcher.db: reservations of concurrent writers never add up
past the quota, growing reservations stop at it, and releases give the room back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from launcher.auth.owners import STATE, Owners
from launcher.auth.quotas import QuotaLedger
from launcher.errors import Denied
from launcher.store.db import Database
from launcher.store.states import StateStore


def test_concurrent_reservations_never_exceed_the_quota(tmp_path: Path) -> None:
    ledger = QuotaLedger(Database(tmp_path / "launcher.db"))
    granted: list[int] = []
    lock = threading.Lock()

    def writer() -> None:
        try:
            ledger.reserve("t", 1000, 300)
        except Denied as e:
            assert e.code == "quota_exceeded"
            return
        with lock:
            granted.append(300)

    threads = [threading.Thread(target=writer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 900
    assert ledger.in_use("t") == 900
    assert ledger.in_use("other") == 0  # per tenant


def test_a_growing_reservation_stops_at_the_quota_and_releases(tmp_path: Path) -> None:
    ledger = QuotaLedger(Database(tmp_path / "launcher.db"))
    held = ledger.reserve("t", 5 << 20, 0, growing=True)
    held.charge(3 << 20)
    with pytest.raises(Denied):
        held.charge(3 << 20)
    assert held.exceeded is not None
    held.release()
    held.release()  # idempotent
    assert ledger.in_use("t") == 0
    with pytest.raises(Denied):  # a released reservation's write is over
        held.charge(1)
    with pytest.raises(Denied):  # a job needs some room: none at a 0-byte quota
        ledger.reserve("t", 0, 0, growing=True)
    ledger.reserve("t", 0, 0).release()  # an empty upload fits


def test_committed_states_count_for_their_owner_only(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    states = StateStore(tmp_path, db)
    owners = Owners(db)
    ledger = QuotaLedger(db)
    pending = states.begin("m", "s", None, [])
    owners.record(STATE, pending.state_id, "alice")
    writer = pending.key_writer("k")
    writer.write(b"x" * 700)
    writer.finish()
    pending.commit()
    assert ledger.in_use("alice") == 700
    assert ledger.in_use("bob") == 0
    with pytest.raises(Denied):
        ledger.reserve("alice", 1000, 301)
    ledger.reserve("bob", 1000, 1000).release()


def test_job_logs_count_in_what_a_tenant_stores_but_not_in_its_quota(tmp_path: Path) -> None:
    from launcher.auth.quotas import StoredBytes
    from launcher.store.joblog_saver import SCHEMA

    db = Database(tmp_path / "launcher.db")
    Owners(db)
    db.register_schema("store.job_logs", SCHEMA)
    with db.transaction() as conn:
        conn.execute("INSERT INTO owners (kind, id, tenant) VALUES (?, ?, ?)", (STATE, "s-a", "t"))
        conn.execute(
            "INSERT INTO job_logs (state_id, data, truncated) VALUES (?, ?, 0)", ("s-a", b"x" * 700)
        )
        conn.execute(
            "INSERT INTO job_logs (state_id, data, truncated) VALUES (?, ?, 0)", ("s-b", b"y" * 50)
        )
    stored = StoredBytes(db)
    assert stored.of("t", with_job_logs=True) == 700
    assert stored.of("t") == 0  # the quota's count
    assert stored.of("default", with_job_logs=True) == 50  # no owner row: the default tenant
