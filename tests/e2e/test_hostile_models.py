"""Hostile models run through the launcher: each contained, with the right outcome, and the
launcher still serving. (The sandbox's own suite, tests/unit/test_sandbox_hostile.py, checks each
layer directly; this proves the launcher applies them to every job.)"""

from __future__ import annotations

import socket
import time
import uuid

import numpy as np
import psutil
import pytest

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY


def run(client: LauncherClient, what: str, arg: str = "") -> dict:
    params = [{"name": "what", "data": [np.array(what)]}]
    if arg:
        params.append({"name": "arg", "data": [np.array(arg)]})
    return client.model.create_state(
        model_id="hostile", name=what, params=params, execution_location=TEMPORARY
    )


def outcome(client: LauncherClient, res: dict) -> str:
    state_id = res["result"]["success"]["stateId"]
    data = client.model.get_model_state(model_id="hostile", state_id=state_id)
    return data["result"]["data"][0]["data"].decode()


@pytest.fixture(autouse=True)
def still_serving(client: LauncherClient):
    yield
    res = client.model.create_state(
        model_id="hello", name="after", params=[], execution_location=TEMPORARY
    )
    assert "success" in res["result"], res


def test_no_network_to_the_host(client: LauncherClient) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = outcome(client, run(client, "probe_tcp", f"127.0.0.1:{port}"))
    assert result.startswith("refused"), result


def test_launcher_database_is_invisible(client: LauncherClient, launcher: LauncherProcess) -> None:
    result = outcome(client, run(client, "read", str(launcher.root / "launcher.db")))
    assert result.startswith("refused"), result


def test_other_models_states_are_invisible(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    big = np.zeros(1 << 16, np.float32)  # over the inline size: a file on disk
    res = client.model.create_state(
        model_id="echo",
        name="secret",
        params=[{"name": "x", "data": [big]}],
        execution_location=TEMPORARY,
    )
    state_id = res["result"]["success"]["stateId"]
    secret = next((launcher.root / "states" / state_id).iterdir())
    result = outcome(client, run(client, "read", str(secret)))
    assert result.startswith("refused"), result


def test_model_folder_is_read_only(client: LauncherClient, launcher: LauncherProcess) -> None:
    result = outcome(client, run(client, "write_model"))
    assert result.startswith("refused"), result
    assert not (launcher.root / "models" / "hostile" / "written.txt").exists()


def test_killing_its_parent_is_refused(client: LauncherClient, launcher: LauncherProcess) -> None:
    res = run(client, "kill_parent")
    assert "success" in res["result"]
    assert outcome(client, res).startswith("refused")
    assert psutil.pid_exists(launcher.pid)


def test_fork_bomb_is_contained(client: LauncherClient) -> None:
    res = run(client, "fork_bomb")
    if "failed" in res["result"]:  # the memory limit stopped it first
        assert res["result"]["failed"]["error"]["code"] == "code_terminated"
    else:  # the pids limit refused a fork
        assert outcome(client, res).startswith("refused"), outcome(client, res)


def test_escaped_processes_die_with_the_job(client: LauncherClient) -> None:
    tag = f"escape-{uuid.uuid4().hex}"
    assert outcome(client, run(client, "escape", tag)) == "escaped"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [p for p in psutil.process_iter(["cmdline"]) if tag in (p.info["cmdline"] or [])]
        if not alive:
            break
        time.sleep(0.1)
    assert alive == []


def test_output_flood_keeps_the_log_bounded(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    res = run(client, "flood")
    assert outcome(client, res) == "flooded"
    state_id = res["result"]["success"]["stateId"]
    # The job's log keeps only its first and last parts (saved just after the answer, its
    # bounded work files then go; until then it is read from memory).
    log = client.model.get_state_logs("hostile", state_id)["result"]
    assert log["truncated"] is True
    assert sum(len(line["text"]) for line in log["lines"]) < 1 << 21
    work = launcher.root / "logs" / "jobs"
    deadline = time.monotonic() + 10
    while list(work.glob(f"{state_id}*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(work.glob(f"{state_id}*")) == []
