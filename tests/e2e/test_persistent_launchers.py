"""Persistent launchers: lifecycle, persistence across restarts, warm session reuse rules."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from launcher.client import LauncherClient
from tests.support.launcher_proc import HERE, LauncherProcess, running_launcher

SPEC = {"cpus": 1, "memoryMebibytes": 512}


def new_launcher(client: LauncherClient, name: str = "gpu-box") -> dict:
    res = client.persistent_launcher.create_persistent_launcher(name=name, spec=SPEC)
    return {
        "type": "persistentLauncher",
        "persistentLauncherId": res["result"]["persistentLauncherId"],
    }


def create(client: LauncherClient, model_id: str, location: dict) -> dict:
    return client.model.create_state(
        model_id=model_id, name="s", params=[], execution_location=location
    )


def state_key(client: LauncherClient, model_id: str, res: dict, key: str) -> bytes:
    state_id = res["result"]["success"]["stateId"]
    data = client.model.get_model_state(model_id=model_id, state_id=state_id, keys=[key])
    return data["result"]["data"][0]["data"]


def fresh_model(launcher: LauncherProcess, source: str, model_id: str) -> Path:
    target = launcher.root / "models" / model_id
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(HERE / "models" / "e2e" / source, target)
    return target


def test_lifecycle_create_list_sysinfo_delete(client: LauncherClient) -> None:
    location = new_launcher(client, "box-a")
    launcher_id = location["persistentLauncherId"]
    listed = client.persistent_launcher.get_persistent_launchers(filter={"ids": [launcher_id]})
    (info,) = listed["result"]["persistentLaunchers"]
    assert info["name"] == "box-a"
    assert info["spec"] == {"cpus": 1.0, "memoryMebibytes": 512}
    assert info["state"] == {"type": "active"}
    samples = client.persistent_launcher.get_sysinfo(persistent_launcher_id=launcher_id)
    sample = samples["result"]["sysinfo"][-1]
    assert set(sample) >= {"timestamp", "cpus", "memory", "disk"}
    # its own workers' usage (none running yet), not the machine's
    assert sample["memory"] >= 0 and sample["disk"] >= 0
    assert client.persistent_launcher.delete_persistent_launcher(
        persistent_launcher_id=launcher_id
    ) == {"result": {}}
    assert client.persistent_launcher.delete_persistent_launcher(
        persistent_launcher_id=launcher_id
    ) == {"error": {"code": "persistent_launcher_not_found"}}
    assert create(client, "hello", location) == {"error": {"code": "persistent_launcher_not_found"}}
    gone = client.persistent_launcher.get_sysinfo(persistent_launcher_id=launcher_id)
    assert gone == {"error": {"code": "persistent_launcher_not_found"}}


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"cpus": 0, "memoryMebibytes": 512}, "spec.cpus"),
        ({"cpus": 1, "memoryMebibytes": 0}, "spec.memoryMebibytes"),
    ],
)
def test_invalid_spec_is_refused(client: LauncherClient, spec: dict, path: str) -> None:
    res = client.persistent_launcher.create_persistent_launcher(name="bad", spec=spec)
    assert res["error"]["code"] == "invalid_parameter"
    assert res["error"]["parameterName"] == path


def test_warm_session_is_reused_and_code_startup_is_absent(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    fresh_model(launcher, "counter", "counter_reuse")
    location = new_launcher(client)
    first = create(client, "counter_reuse", location)
    second = create(client, "counter_reuse", location)
    assert set(first["result"]["success"]["durations"]) == {"total", "codeStartup", "createState"}
    assert set(second["result"]["success"]["durations"]) == {"total", "createState"}
    assert state_key(client, "counter_reuse", second, "calls") == b"2"
    assert state_key(client, "counter_reuse", first, "pid") == state_key(
        client, "counter_reuse", second, "pid"
    )


def test_a_model_changed_on_disk_gets_a_fresh_session(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    folder = fresh_model(launcher, "counter", "counter_changed")
    location = new_launcher(client)
    create(client, "counter_changed", location)
    (folder / "extra.py").write_text("VALUE = 1\n")
    after = create(client, "counter_changed", location)
    assert "codeStartup" in after["result"]["success"]["durations"]
    assert state_key(client, "counter_changed", after, "calls") == b"1"


def test_temporary_launchers_never_reuse_a_session(client: LauncherClient) -> None:
    location = {"type": "temporaryLauncher", "spec": SPEC}
    for _ in range(2):
        res = create(client, "counter", location)
        assert "createLauncher" in res["result"]["success"]["durations"]
        assert state_key(client, "counter", res, "calls") == b"1"


def test_a_failed_job_does_not_leave_a_session(client: LauncherClient) -> None:
    location = new_launcher(client)
    for _ in range(2):
        res = create(client, "raise_create", location)
        assert "codeStartup" in res["result"]["failed"]["durations"]


def test_sessions_are_per_launcher(client: LauncherClient, launcher: LauncherProcess) -> None:
    fresh_model(launcher, "counter", "counter_per")
    a, b = new_launcher(client, "a"), new_launcher(client, "b")
    create(client, "counter_per", a)
    res = create(client, "counter_per", b)
    assert "codeStartup" in res["result"]["success"]["durations"]


def test_deleting_a_launcher_ends_its_running_jobs_as_launcher_terminated(
    client: LauncherClient,
) -> None:
    location = new_launcher(client)
    results: list[dict] = []
    started = threading.Event()

    def run() -> None:
        for event in client.model.create_state_stream(
            model_id="sleeper", name="s", params=[], execution_location=location
        ):
            if event.get("event") == "phaseStarted" and event["phase"] == "createState":
                started.set()
            if "result" in event or "error" in event:
                results.append(event)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(30)
    listed = client.persistent_launcher.get_persistent_launchers(
        filter={"ids": [location["persistentLauncherId"]]}
    )["result"]["persistentLaunchers"][0]
    assert [r["type"] for r in listed["running"]] == ["createState"]
    client.persistent_launcher.delete_persistent_launcher(
        persistent_launcher_id=location["persistentLauncherId"]
    )
    thread.join(30)
    failed = results[0]["result"]["failed"]
    assert failed["error"] == {"code": "launcher_terminated"}
    assert "createState" in failed["durations"]


def test_launchers_persist_across_restarts_and_idle_sessions_expire(tmp_path_factory) -> None:
    root = Path(tmp_path_factory.mktemp("pl", numbered=True))
    args = ["--session-idle-seconds", "1"]
    with running_launcher(root, args) as proc:
        with LauncherClient(proc.address) as client:
            location = new_launcher(client, "kept")
            create(client, "counter", location)
            time.sleep(3)  # past the idle timeout: the session is stopped
            res = create(client, "counter", location)
            assert "codeStartup" in res["result"]["success"]["durations"]
    with running_launcher(root, args) as proc:
        with LauncherClient(proc.address) as client:
            listed = client.persistent_launcher.get_persistent_launchers()["result"]
            assert [p["name"] for p in listed["persistentLaunchers"]] == ["kept"]
            assert "success" in create(client, "hello", location)["result"]


def test_max_idle_sessions_zero_never_reuses(tmp_path_factory) -> None:
    root = Path(tmp_path_factory.mktemp("pl0", numbered=True))
    with running_launcher(root, ["--max-idle-sessions", "0"]) as proc:
        with LauncherClient(proc.address) as client:
            location = new_launcher(client)
            for _ in range(2):
                res = create(client, "counter", location)
                assert "codeStartup" in res["result"]["success"]["durations"]


def _hold(client: LauncherClient, location: dict, results: list, mib: int = 180) -> None:
    params = [
        {"name": "mib", "data": [np.array(mib)]},
        {"name": "seconds", "data": [np.array(4.0)]},
    ]
    results.append(
        client.model.create_state(
            model_id="hold_memory", name="h", params=params, execution_location=location
        )
    )


def _concurrently(client: LauncherClient, location: dict) -> list[dict]:
    results: list[dict] = []
    threads = [threading.Thread(target=_hold, args=(client, location, results)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_jobs_of_a_persistent_launcher_share_its_memory_budget(client: LauncherClient) -> None:
    spec = {"cpus": 1, "memoryMebibytes": 300}
    res = client.persistent_launcher.create_persistent_launcher(name="budget", spec=spec)
    shared = {
        "type": "persistentLauncher",
        "persistentLauncherId": res["result"]["persistentLauncherId"],
    }
    outcomes = _concurrently(client, shared)  # 2 x 180 MiB > 300 MiB together
    errors = [r["result"]["failed"]["error"] for r in outcomes if "failed" in r["result"]]
    assert errors and all(e["code"] == "code_terminated" and e["oom"] for e in errors), outcomes
    separate = {"type": "temporaryLauncher", "spec": spec}  # each its own 300 MiB
    assert all("success" in r["result"] for r in _concurrently(client, separate))
