"""Job records: running then finished, durable across restarts, lost jobs reconciled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher import outcomes as oc
from launcher.store.db import Database
from launcher.store.jobs import JobRecords
from launcher.store.states import StateStore

SUCCESS = oc.JobResult(oc.Success("s-1"), oc.Durations(total=1500))


def test_job_is_running_then_finished_with_its_response(tmp_path: Path) -> None:
    jobs = JobRecords(Database(tmp_path / "launcher.db"))
    jobs.started("s-1", "m", "init", 100.0)
    assert jobs.get("m", "s-1") == ("running", None)
    jobs.finished("s-1", SUCCESS)
    assert jobs.get("m", "s-1") == ("finished", SUCCESS)


def test_unknown_job_or_other_models_job_is_none(tmp_path: Path) -> None:
    jobs = JobRecords(Database(tmp_path / "launcher.db"))
    jobs.started("s-1", "m", "init", 1.0)
    assert jobs.get("m", "s-2") is None
    assert jobs.get("other", "s-1") is None


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
        oc.JobResult(oc.LauncherTerminated(), oc.Durations(total=12500)),
    )
    assert after.get("m", "s-done") == ("finished", SUCCESS)
    assert after.reconcile(now=200.0) == 0


def test_reconcile_answers_success_when_the_state_was_committed(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    jobs = JobRecords(db)
    jobs.started("s-made", "m", "made", 100.0)
    StateStore(tmp_path, db).begin("m", "made", state_id="s-made").commit()
    assert jobs.reconcile(now=1e12) == 1
    status, result = jobs.get("m", "s-made") or ("", None)
    assert status == "finished" and result is not None
    assert result.outcome == oc.Success("s-made")
    assert 0 < result.durations.total < (1e12 - 100.0) * 1000
    assert type(result.durations.total) is int


EVERY_OUTCOME = [
    oc.Success("s-1"),
    oc.ModelException(oc.Phase.CODE_STARTUP, "Traceback ...\nValueError: x"),
    oc.ModelException(oc.Phase.CREATE_STATE, None),
    oc.CodeTerminated(exit_code=3),
    oc.CodeTerminated(signal="SIGKILL", oom=True),
    oc.MaxDurationExceeded(oc.Phase.CREATE_STATE),
    oc.Cancelled(),
    oc.LauncherTerminated(),
    oc.ServerOverloaded(),
    oc.Unknown("0123456789ab"),
]


@pytest.mark.parametrize("outcome", EVERY_OUTCOME, ids=lambda o: type(o).__name__)
def test_every_outcome_is_replayed_as_it_was_recorded(tmp_path: Path, outcome: oc.Outcome) -> None:
    db = Database(tmp_path / "launcher.db")
    result = oc.JobResult(
        outcome,
        oc.Durations(
            total=2345,
            phases={oc.Phase.CREATE_LAUNCHER: 12, oc.Phase.CODE_STARTUP: 1000},
        ),
    )
    JobRecords(db).started("s-1", "m", "n", 1.0)
    JobRecords(db).finished("s-1", result)
    db.close()
    assert JobRecords(Database(tmp_path / "launcher.db")).get("m", "s-1") == ("finished", result)


def test_records_of_an_older_launcher_in_seconds_replay_in_milliseconds(tmp_path: Path) -> None:
    """Older launchers stored the seed's JSON itself, with float seconds."""
    db = Database(tmp_path / "launcher.db")
    jobs = JobRecords(db)
    old = {
        "s-ok": {"result": {"success": {"durations": {"total": 1.5, "createState": 0.25},
                                         "stateId": "s-ok"}}},
        "s-boom": {"result": {"failed": {
            "durations": {"total": 2.0004, "codeStartup": 1.9996},
            "error": {"code": "exception", "at": "codeStartup", "exceptionDetails": "boom"},
        }}},
    }  # fmt: skip
    for state_id, response in old.items():
        jobs.started(state_id, "m", "n", 1.0)
        with db.transaction(fsync=False) as conn:
            conn.execute(
                "UPDATE jobs SET status = 'finished', response = ? WHERE state_id = ?",
                (json.dumps(response), state_id),
            )
    assert jobs.get("m", "s-ok") == (
        "finished",
        oc.JobResult(
            oc.Success("s-ok"), oc.Durations(total=1500, phases={oc.Phase.CREATE_STATE: 250})
        ),
    )
    assert jobs.get("m", "s-boom") == (
        "finished",
        oc.JobResult(
            oc.ModelException(oc.Phase.CODE_STARTUP, "boom"),
            oc.Durations(total=2000, phases={oc.Phase.CODE_STARTUP: 2000}),
        ),
    )
