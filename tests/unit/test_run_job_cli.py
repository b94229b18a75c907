"""``launcher run-job`` (the Ray node side) refuses a bad job description clearly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

GOOD = {
    "relay": "127.0.0.1:9",
    "token": "t",
    "nodeDir": "/nonexistent",
    "runtime": "python",
    "freshProcess": False,
    "spec": {"cpus": 1, "memoryMebibytes": 64},
    "connectLimit": 1,
    "digest": "d",
}


@pytest.mark.parametrize(
    "stdin",
    [
        b"",
        b"not json",
        b"[]",
        json.dumps({k: v for k, v in GOOD.items() if k != "token"}).encode(),
        json.dumps({**GOOD, "spec": {"cpus": "many"}}).encode(),
        json.dumps({**GOOD, "mountDirs": []}).encode(),
    ],
)
def test_a_bad_job_description_is_exit_2_with_a_reason(stdin: bytes) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "run-job"],
        input=stdin,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert b"run-job: bad job description" in done.stderr
    assert b"Traceback" not in done.stderr
