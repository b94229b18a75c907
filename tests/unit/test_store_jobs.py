"""Job records: running then finished, durable across restarts, lost jobs reconciled."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.store.db import Database
from launcher.store.jobs import JobRecords
from launcher.store.states import StateStore

SUCCESS = {"result": {"success": {"stateId": "s-1", "durations": {"total": 1.5}}}}


def test_job_is_running_then_finished_with_its_response(tmp_path: Path) -> None:
    jobs = JobRecords(Database(tmp_path / "launcher.db"))
    jobs.started("s-1", "m", "init", 100.0)
    assert jobs.get("m", "s-1") == ("running", None)
    assert jobs.running("m") == [{"id": "s-1", "name": "init", "startedAt": 100.0}]
    jobs.finished("s-1", SUCCESS)
    assert jobs.get("m", "s-1") == ("finished", SUCCESS)
    assert jobs.running("m") == []


def test_unknown_job_or_other_models_job_is_none(tmp_path: Path) -> None:
    jobs = JobRecords(Database(tmp_path / "launcher.db"))
    jobs.started("s-1", "m", "init", 1.0)
    assert jobs.get("m", "s-2") is None
    assert jobs.get("other", "s-1") is None
    assert jobs.running("other") == []


def test_running_lists_only_that_models_jobs_oldest_first(tmp_path: Path) -> None:
    jobs = JobRecords(Database(tmp_path / "launcher.db"))
    jobs.started("s-b", "m", "second", 2.0)
    jobs.started("s-a", "m", "first", 1.0)
    jobs.started("s-c", "n", "other", 0.5)
    assert [j["id"] for j in jobs.running("m")] == ["s-a", "s-b"]


def test_starting_a_job_twice_is_refused(tmp_path: Path) -> None:
    jobs = JobRecords(Database(tmp_path / "launcher.db"))
    jobs.started("s-1", "m", "init", 1.0)
    with pytest.raises(ValueError, match="already recorded"):
        jobs.started("s-1", "m", "init", 2.0)


def test_finishing_an_unknown_job_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        JobRecords(Database(tmp_path / "launcher.db")).finished("s-x", SUCCESS)


def test_records_survive_a_restart(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    JobRecords(db).started("s-1", "m", "init", 1.0)
    JobRecords(db).finished("s-1", SUCCESS)
    db.close()
    assert JobRecords(Database(tmp_path / "launcher.db")).get("m", "s-1") == ("finished", SUCCESS)


def test_reconcile_turns_lost_jobs_into_launcher_terminated(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    before = JobRecords(db)
    before.started("s-lost", "m", "lost", 100.0)
    before.started("s-done", "m", "done", 100.0)
    before.finished("s-done", SUCCESS)
    db.close()

    after = JobRecords(Database(tmp_path / "launcher.db"))
    assert after.reconcile(now=112.5) == 1
    assert after.get("m", "s-lost") == (
        "finished",
        {
            "result": {
                "failed": {
                    "durations": {"total": 12.5},
                    "error": {"code": "launcher_terminated"},
                }
            }
        },
    )
    assert after.get("m", "s-done") == ("finished", SUCCESS)
    assert after.running("m") == []
    assert after.reconcile(now=200.0) == 0


def test_reconcile_answers_success_when_the_state_was_committed(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    jobs = JobRecords(db)
    jobs.started("s-made", "m", "made", 100.0)
    StateStore(tmp_path, db).begin("m", "made", state_id="s-made").commit()
    assert jobs.reconcile(now=1e12) == 1
    status, response = jobs.get("m", "s-made") or ("", None)
    assert status == "finished" and response is not None
    success = response["result"]["success"]
    assert success["stateId"] == "s-made"
    assert 0 < success["durations"]["total"] < 1e12 - 100.0


def test_response_that_is_not_json_is_refused(tmp_path: Path) -> None:
    jobs = JobRecords(Database(tmp_path / "launcher.db"))
    jobs.started("s-1", "m", "init", 1.0)
    with pytest.raises(TypeError):
        jobs.finished("s-1", {"result": {"bytes": b"raw"}})
    assert jobs.get("m", "s-1") == ("running", None)
