"""A data root written by an older launcher (job records in float seconds) still replays:
``wait_for_state_to_be_created`` answers its jobs in integer milliseconds, through a real
launcher started on that root."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from launcher.client import LauncherClient
from launcher.store.db import Database
from tests.support.launcher_proc import running_launcher

OLD_SUCCESS = {
    "result": {
        "success": {
            "durations": {"total": 0.2504, "createLauncher": 0.0126, "createState": 0.05},
            "stateId": "s-oldsuccess",
        }
    }
}
OLD_FAILED = {
    "result": {
        "failed": {
            "durations": {"total": 1.5, "codeStartup": 1.25},
            "error": {"code": "max_duration_exceeded", "at": "codeStartup"},
        }
    }
}


def _old_root(root: Path) -> None:
    db = Database(root / "launcher.db")
    with db.transaction() as conn:
        for state_id, response in (("s-oldsuccess", OLD_SUCCESS), ("s-oldfailed", OLD_FAILED)):
            conn.execute(
                "INSERT INTO jobs (state_id, model_id, name, started_at, status, response)"
                " VALUES (?, 'hello', 'old', 1700000000.5, 'finished', ?)",
                (state_id, json.dumps(response)),
            )
        conn.execute(  # lost with the old launcher: reconciled at start, in ms
            "INSERT INTO jobs (state_id, model_id, name, started_at, status)"
            " VALUES ('s-oldlost', 'hello', 'lost', 1700000000.5, 'running')"
        )
    db.close()


def test_records_of_an_older_launcher_answer_in_integer_milliseconds() -> None:
    with tempfile.TemporaryDirectory(prefix="lu-") as folder:
        root = Path(folder)
        _old_root(root)
        with running_launcher(root) as proc, LauncherClient(proc.address) as client:

            def wait(state_id: str) -> dict:
                return client.model.wait_for_state_to_be_created(
                    model_id="hello", state_id=state_id
                )

            assert wait("s-oldsuccess") == {
                "result": {
                    "success": {
                        "durations": {"total": 250, "createLauncher": 13, "createState": 50},
                        "stateId": "s-oldsuccess",
                    }
                }
            }
            assert wait("s-oldfailed") == {
                "result": {
                    "failed": {
                        "durations": {"total": 1500, "codeStartup": 1250},
                        "error": {"code": "max_duration_exceeded", "at": "codeStartup"},
                    }
                }
            }
            lost = wait("s-oldlost")["result"]["failed"]
            assert lost["error"] == {"code": "launcher_terminated"}
            assert type(lost["durations"]["total"]) is int and lost["durations"]["total"] > 0
            # New jobs on the same root are recorded, and replayed, in the new form.
            made = client.model.create_state(
                model_id="hello",
                name="new",
                params=[],
                execution_location={
                    "type": "temporaryLauncher",
                    "spec": {"cpus": 1, "memoryMebibytes": 256},
                },
            )
            state_id = made["result"]["success"]["stateId"]
            assert wait(state_id) == made
