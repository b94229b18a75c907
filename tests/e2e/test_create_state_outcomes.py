"""createState end to end over a real socket: every outcome of the seed's table a model causes."""

from __future__ import annotations

import numpy as np
import pytest

from launcher.client import LauncherClient
from runtime.tensor import deserialize_many
from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY


def create(client: LauncherClient, model_id: str, params=None, **kw):
    return client.model.create_state(
        model_id=model_id,
        name=kw.pop("name", "test"),
        params=params or [],
        execution_location=kw.pop("execution_location", TEMPORARY),
        **kw,
    )


def failed(res: dict) -> dict:
    assert "result" in res and "failed" in res["result"], res
    return res["result"]["failed"]


def test_success_reports_all_phases_and_stores_keys(client: LauncherClient) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    res = create(client, "echo", [{"name": "x", "data": [x, x * 2]}])
    success = res["result"]["success"]
    durations = success["durations"]
    assert set(durations) == {"total", "createLauncher", "codeStartup", "createState"}
    # Integer milliseconds (CONTRACT.md "Durations").
    assert all(type(value) is int for value in durations.values()), durations
    assert durations["total"] >= durations["createState"] >= 0
    assert durations["total"] >= durations["createLauncher"] + durations["codeStartup"]
    state = client.model.get_model_state(model_id="echo", state_id=success["stateId"])
    data = {item["key"]: item["data"] for item in state["result"]["data"]}
    assert data["ok"] == b"yes"
    decoded = deserialize_many(data["x"])
    np.testing.assert_array_equal(decoded[0].numpy(), x)
    np.testing.assert_array_equal(decoded[1].numpy(), x * 2)


def test_first_state_becomes_active(client: LauncherClient) -> None:
    res = create(client, "hello")
    state_id = res["result"]["success"]["stateId"]
    models = client.model.get_models(filter={"ids": ["hello"]})["result"]["models"]
    assert models[0]["activeState"] is not None
    assert any(s["id"] == state_id for s in models[0]["states"])


def test_exception_at_import_is_exception_at_code_startup(client: LauncherClient) -> None:
    f = failed(create(client, "raise_startup"))
    assert f["error"]["code"] == "exception"
    assert f["error"]["at"] == "codeStartup"
    assert "broken at import on purpose" in f["error"]["exceptionDetails"]
    assert "createState" not in f["durations"]


def test_exception_in_create_model_state_carries_traceback(client: LauncherClient) -> None:
    f = failed(create(client, "raise_create"))
    assert f["error"] == {
        "code": "exception",
        "at": "createState",
        "exceptionDetails": f["error"]["exceptionDetails"],
    }
    assert "Traceback" in f["error"]["exceptionDetails"]
    assert "createModelState failed on purpose" in f["error"]["exceptionDetails"]
    assert "createState" in f["durations"]


def test_worker_exit_is_code_terminated_with_exit_code(client: LauncherClient) -> None:
    f = failed(create(client, "exit_code"))
    assert f["error"] == {"code": "code_terminated", "exitCode": 3, "oom": False}


def test_worker_killed_by_signal_names_the_signal(client: LauncherClient) -> None:
    f = failed(create(client, "kill_self"))
    assert f["error"] == {"code": "code_terminated", "signal": "SIGTERM", "oom": False}


def test_slow_import_exceeds_code_startup(client: LauncherClient) -> None:
    f = failed(create(client, "slow_startup"))
    assert f["error"] == {"code": "max_duration_exceeded", "at": "codeStartup"}
    assert 1000 <= f["durations"]["codeStartup"] < 10_000


def test_slow_create_exceeds_create_state(client: LauncherClient) -> None:
    f = failed(create(client, "slow_create"))
    assert f["error"] == {"code": "max_duration_exceeded", "at": "createState"}
    assert 1000 <= f["durations"]["createState"] < 10_000


def test_malformed_model_toml_is_invalid_executable_file(client: LauncherClient) -> None:
    f = failed(create(client, "bad_toml"))
    assert f["error"] == {"code": "invalid_executable_file"}


def test_missing_main_py_is_invalid_executable_file(client: LauncherClient) -> None:
    f = failed(create(client, "no_main"))
    assert f["error"] == {"code": "invalid_executable_file"}


def test_worker_writing_garbage_ends_its_job_not_the_launcher(client: LauncherClient) -> None:
    f = failed(create(client, "garbage"))
    assert f["error"]["code"] == "exception"
    assert "protocol" in f["error"]["exceptionDetails"]
    assert "success" in create(client, "hello")["result"]


def test_unknown_model_is_model_not_found(client: LauncherClient) -> None:
    assert create(client, "no_such_model") == {"error": {"code": "model_not_found"}}


def test_unknown_persistent_launcher(client: LauncherClient) -> None:
    location = {"type": "persistentLauncher", "persistentLauncherId": "pl-nope"}
    res = create(client, "hello", execution_location=location)
    assert res == {"error": {"code": "persistent_launcher_not_found"}}


def test_unknown_dataset_names_its_id(client: LauncherClient) -> None:
    params = [{"name": "x", "data": {"type": "dataset", "datasetId": "ds-x", "datasetKey": "k"}}]
    res = create(client, "echo", params)
    assert res == {"error": {"code": "dataset_not_found", "datasetId": "ds-x"}}


def test_cancel_running_job_reports_durations_that_ran(client: LauncherClient) -> None:
    events = client.model.create_state_stream(
        model_id="sleeper", name="c", params=[], execution_location=TEMPORARY
    )
    state_id = None
    for event in events:
        if event.get("event") == "phaseStarted" and event["phase"] == "createState":
            state_id = event["stateId"]
            creating = client.model.get_creating_states(model_id="sleeper")["result"]["states"]
            assert [s["id"] for s in creating] == [state_id]
            assert client.model.cancel_create_state(model_id="sleeper", state_id=state_id) == {
                "result": {}
            }
        if "result" in event or "error" in event:
            final = event
    f = failed(final)
    assert f["error"] == {"code": "cancelled"}
    assert "createState" in f["durations"]
    waited = client.model.wait_for_state_to_be_created(model_id="sleeper", state_id=state_id)
    assert waited == final
    again = client.model.cancel_create_state(model_id="sleeper", state_id=state_id)
    assert again == {"error": {"code": "state_already_created"}}


def test_stream_yields_phases_in_order(client: LauncherClient) -> None:
    events = list(
        client.model.create_state_stream(
            model_id="hello", name="s", params=[], execution_location=TEMPORARY
        )
    )
    phases = [(e["event"], e["phase"]) for e in events[:-1]]
    assert phases == [
        ("phaseStarted", "createLauncher"),
        ("phaseFinished", "createLauncher"),
        ("phaseStarted", "codeStartup"),
        ("phaseFinished", "codeStartup"),
        ("phaseStarted", "createState"),
        ("phaseFinished", "createState"),
    ]
    assert "success" in events[-1]["result"]


@pytest.mark.parametrize(
    ("x", "reason_part"),
    [
        (np.zeros((2, 3), np.int32), "type i32"),
        (np.zeros((2, 4), np.float32), "shape [2, 4]"),
    ],
)
def test_param_definitions_are_checked_before_a_worker_starts(
    client: LauncherClient, x: np.ndarray, reason_part: str
) -> None:
    res = create(client, "typed", [{"name": "x", "data": [x]}])
    err = res["error"]
    assert err["code"] == "invalid_parameter"
    assert err["parameterName"] == "params[0].data[0]"
    assert reason_part in err["reason"]


def test_missing_required_param_is_refused(client: LauncherClient) -> None:
    res = create(client, "typed")
    assert res["error"]["code"] == "invalid_parameter"
    assert "'x'" in res["error"]["reason"]


def test_official_runtime_runs_with_the_same_host(client: LauncherClient) -> None:
    x = np.array([1.5, 2.5], np.float32)
    res = create(client, "official", [{"name": "x", "data": [x]}])
    state_id = res["result"]["success"]["stateId"]
    state = client.model.get_model_state(model_id="official", state_id=state_id)
    data = {item["key"]: item["data"] for item in state["result"]["data"]}
    assert data["runtime"] == b"decthings-model"
    np.testing.assert_array_equal(deserialize_many(data["x"])[0].numpy(), x)


def test_unreadable_main_py_is_read_executable_file_failed(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    folder = launcher.root / "models" / "unreadable"
    folder.mkdir(exist_ok=True)
    main_py = folder / "main.py"
    if not main_py.is_symlink():
        main_py.symlink_to(main_py)  # a symlink loop: reading it is an I/O error (ELOOP)
    f = failed(create(client, "unreadable"))
    assert f["error"] == {"code": "read_executable_file_failed"}
