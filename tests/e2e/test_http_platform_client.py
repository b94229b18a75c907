"""The platform's own Python client (PyPI decthings-api 0.0.4), sync and async, unchanged,
against ``launcher serve --http``: every method it has, with the platform's shapes.

Known client bugs (PLATFORM-HTTP.md) are tested around, never by weakening the server:
the sync getEntries reads one blob per index (one-key datasets only; the async client is used
for two keys), and the client has no cancelCreateState (its raw call is used).
"""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from decthings_api import DecthingsClient, DecthingsClientSync
from decthings_api.tensor import DecthingsTensor

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.platform_http import TEMPORARY, http_launcher

FIXED = {
    "f32": np.float32,
    "f64": np.float64,
    "i8": np.int8,
    "i16": np.int16,
    "i32": np.int32,
    "i64": np.int64,
    "u8": np.uint8,
    "u16": np.uint16,
    "u32": np.uint32,
    "u64": np.uint64,
    "boolean": np.bool_,
}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LauncherProcess, str]]:
    with tempfile.TemporaryDirectory(prefix="lh-") as root:
        with http_launcher(Path(root)) as (proc, url):
            yield proc, url


@pytest.fixture(scope="module")
def base(served: tuple[LauncherProcess, str]) -> str:
    return served[1]


@pytest.fixture
def client(base: str) -> DecthingsClientSync:
    return DecthingsClientSync(http_server_address=base)


def tensor(values: Any, kind: str) -> DecthingsTensor:
    if kind in ("string", "binary"):
        # An object array: the client's list path checks binary elements for str (its bug).
        array = np.array(values, dtype=object)
        return DecthingsTensor(array, kind, list(array.shape))
    array = np.array(values, dtype=FIXED[kind])
    return DecthingsTensor(array, kind, list(array.shape))


def create(client: DecthingsClientSync, model_id: str, params: list[Any], **kw: Any) -> Any:
    request = {"modelId": model_id, "name": "s", "params": params, "executionLocation": TEMPORARY}
    request.update(kw)
    return client.model.create_state(request)


def state(client: DecthingsClientSync, model_id: str, state_id: str) -> dict[str, bytes]:
    result, error = client.model.get_model_state({"modelId": model_id, "stateId": state_id})
    assert error is None, error
    return {item["key"]: item["data"] for item in result["data"]}


def assert_durations(durations: dict[str, Any]) -> None:
    assert isinstance(durations["total"], int) and not isinstance(durations["total"], bool)
    for value in durations.values():
        assert isinstance(value, int) and value >= 0


def test_create_state_with_every_fixed_type_and_strings_reaches_the_model(
    client: DecthingsClientSync,
) -> None:
    params = [
        {"name": kind, "data": [tensor([1, 2, 3], kind), tensor([[4], [5]], kind)]}
        for kind in FIXED
    ]
    params.append({"name": "text", "data": [tensor(["hé", "", "long" * 100], "string")]})
    params.append({"name": "bytes", "data": [tensor([b"\x00\xff", b""], "binary")]})
    result, error = create(client, "echo", params)
    assert error is None, error
    success = result["success"]
    assert_durations(success["durations"])
    stored = state(client, "echo", success["stateId"])
    assert stored["ok"] == b"yes"
    for param in params:
        assert stored[param["name"]] == b"".join(t.serialize() for t in param["data"])


def test_create_state_without_params_and_with_an_empty_inline_param(
    client: DecthingsClientSync,
) -> None:
    result, error = create(client, "hello", [])
    assert error is None and "success" in result
    result, error = create(client, "echo", [{"name": "nothing", "data": []}])
    assert error is None, error
    assert state(client, "echo", result["success"]["stateId"])["nothing"] == b""


def test_the_async_client_creates_and_waits(base: str) -> None:
    async def run() -> None:
        client = DecthingsClient(http_server_address=base)
        result, error = await client.model.create_state(
            {"modelId": "hello", "name": "a", "params": [], "executionLocation": TEMPORARY}
        )
        assert error is None, error
        state_id = result["success"]["stateId"]
        again, error = await client.model.wait_for_state_to_be_created(
            {"modelId": "hello", "stateId": state_id}
        )
        assert error is None and again == result

    asyncio.run(run())


def test_refusals_are_in_band_with_the_platform_codes(client: DecthingsClientSync) -> None:
    result, error = create(client, "no-such-model", [])
    assert result is None and error["code"] == "model_not_found"
    result, error = create(client, "typed", [{"name": "x", "data": [tensor([1, 2], "f32")]}])
    assert error["code"] == "invalid_parameter"
    assert error["parameterName"].startswith("params[0]") and error["reason"]
    _, error = create(client, "hello", [], executionLocation={"type": "elsewhere"})
    assert error["code"] == "invalid_parameter"
    dataset = {"type": "dataset", "datasetId": "nope", "datasetKey": "k"}
    _, error = create(client, "echo", [{"name": "x", "data": dataset}])
    assert error["code"] == "dataset_not_found"
    _, error = create(client, "hello", [], mountModels=[{"modelId": "nope"}])
    assert error["code"] == "model_to_mount_not_found"
    location = {"type": "persistentLauncher", "persistentLauncherId": "pl-nope"}
    _, error = create(client, "hello", [], executionLocation=location)
    assert error["code"] == "persistent_launcher_not_found"


@pytest.mark.parametrize(
    ("model_id", "code", "at"),
    [
        ("raise_create", "exception", "createState"),
        ("raise_startup", "exception", "codeStartup"),
        ("exit_code", "code_terminated", None),
        ("no_main", "invalid_executable_file", None),
    ],
)
def test_failed_outcomes_carry_their_error(
    client: DecthingsClientSync, model_id: str, code: str, at: str | None
) -> None:
    result, error = create(client, model_id, [])
    assert error is None, error
    failed = result["failed"]
    assert_durations(failed["durations"])
    assert failed["error"]["code"] == code
    if at is not None:
        assert failed["error"]["at"] == at


def test_a_creating_state_is_listed_and_cancelled_by_the_raw_call(
    client: DecthingsClientSync,
) -> None:
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(create(client, "sleeper", [])))
    thread.start()
    try:
        states: list[Any] = []
        for _ in range(600):
            result, error = client.model.get_creating_states({"modelId": "sleeper"})
            assert error is None, error
            states = result["states"]
            if states:
                break
            time.sleep(0.05)
        assert states and isinstance(states[0]["startedAt"], int)
        state_id = states[0]["id"]
        _ok, result, error, _blobs = client._raw_method_call(
            "Model", "cancelCreateState", {"modelId": "sleeper", "stateId": state_id}, []
        )
        assert (result, error) == ({}, None)
    finally:
        thread.join(120)
    result, error = answers[0]
    assert result["failed"]["error"]["code"] == "cancelled"
    waited, _ = client.model.wait_for_state_to_be_created(
        {"modelId": "sleeper", "stateId": state_id}
    )
    assert waited == result


def test_state_api_with_both_set_active_names(client: DecthingsClientSync, base: str) -> None:
    data = [{"key": "weights", "data": b"\x01" * 70_000}, {"key": "empty", "data": b""}]
    first, error = client.model.upload_state({"modelId": "counter", "name": "one", "data": data})
    assert error is None, error
    second, _ = client.model.upload_state(
        {"modelId": "counter", "name": "two", "data": [{"key": "k", "data": b"v"}]}
    )
    assert state(client, "counter", first["stateId"]) == {d["key"]: d["data"] for d in data}
    ok, error = client.model.set_current_model_state(
        {"modelId": "counter", "stateId": second["stateId"]}
    )
    assert (ok, error) == ({}, None)
    active, _ = client.model.get_model_state({"modelId": "counter"})
    assert active["data"] == [{"key": "k", "data": b"v"}]
    _ok, result, error, _ = client._raw_method_call(
        "Model", "setActiveModelState", {"modelId": "counter", "stateId": first["stateId"]}, []
    )
    assert (result, error) == ({}, None)
    _, error = client.model.delete_model_state({"modelId": "counter", "stateId": first["stateId"]})
    assert error["code"] == "state_is_active"
    ok, error = client.model.update_model_state(
        {"modelId": "counter", "stateId": second["stateId"], "properties": {"name": "renamed"}}
    )
    assert error is None
    ok, error = client.model.delete_model_state(
        {"modelId": "counter", "stateId": second["stateId"]}
    )
    assert (ok, error) == ({}, None)
    models, _ = client.model.get_models({"filter": {"ids": ["counter"]}})
    (model,) = models["models"]
    assert model["activeState"] == first["stateId"]
    assert [s["id"] for s in model["states"]] == [first["stateId"]]
    assert model["states"][0]["state"] == [
        {"key": "weights", "byteSize": 70_000},
        {"key": "empty", "byteSize": 0},
    ]
    _, error = client.model.get_model_state({"modelId": "counter", "stateId": "s-nope"})
    assert error["code"] == "state_not_found"
    _, error = client.model.get_model_state(
        {"modelId": "counter", "stateId": first["stateId"], "keys": ["nope"]}
    )
    assert error["code"] == "state_key_not_found"


def test_get_models_answers_every_field_of_the_platform_model(client: DecthingsClientSync) -> None:
    result, error = client.model.get_models({"filter": {"ids": ["linear"]}})
    assert error is None
    (model,) = result["models"]
    for field in (
        "id name description publicAccess createdAt tags owner access beingCreated language "
        "wasm image parameterDefinitions defaultLauncherSpecs maxDurationsSeconds "
        "filesystemSizeMebibytes ongoingTrainingSessions trainingSessions states activeState "
        "snapshots"
    ).split():
        assert field in model, field
    assert isinstance(model["createdAt"], int)
    names = [d["name"] for d in model["parameterDefinitions"]["createState"]]
    assert names[:2] == ["input_size", "output_size"]
    assert set(model["maxDurationsSeconds"]) == {
        "codeStartup",
        "instantiateModel",
        "createState",
        "train",
        "evaluate",
    }


def test_snapshots(client: DecthingsClientSync) -> None:
    client.model.upload_state({"modelId": "hello", "name": "x", "data": []})
    result, error = client.model.snapshot_model({"modelId": "hello", "name": "snap"})
    assert error is None, error
    ok, error = client.model.delete_snapshot(
        {"modelId": "hello", "snapshotId": result["snapshotId"]}
    )
    assert (ok, error) == ({}, None)
    _, error = client.model.delete_snapshot({"modelId": "hello", "snapshotId": "nope"})
    assert error is not None


def test_datasets_with_two_keys_and_dataset_params(client: DecthingsClientSync, base: str) -> None:
    keys = [
        {"name": "b", "required": True, "rules": {"allowedTypes": ["f32"]}},
        {"name": "a", "required": True, "rules": {"shape": [2]}},
    ]
    created, error = client.dataset.create_dataset(
        {"name": "pairs", "description": "two keys", "keys": keys}
    )
    assert error is None, error
    dataset_id = created["datasetId"]
    added, error = client.dataset.add_entries(
        {
            "datasetId": dataset_id,
            "keys": [
                {"key": "b", "data": [tensor([i], "f32") for i in range(3)]},
                {"key": "a", "data": [tensor([i, -i], "i64") for i in range(3)]},
            ],
        }
    )
    assert error is None, error
    version = added["newDatasetVersionId"]
    listed, _ = client.dataset.get_datasets({"filter": {"ids": [dataset_id]}})
    (info,) = listed["datasets"]
    assert info["versionId"] == version and info["entries"]["count"] == 3
    assert info["owner"]["type"] == "user" and "needsReviewEntries" in info

    async def entries() -> Any:
        return await DecthingsClient(http_server_address=base).dataset.get_entries(
            {"datasetId": dataset_id, "entries": [2, 0]}
        )

    result, error = asyncio.run(entries())
    assert error is None, error
    by_key = {k["key"]: k["data"] for k in result["keys"]}
    assert [e["index"] for e in by_key["a"]] == [0, 2]
    assert [list(e["data"].numpy()) for e in by_key["a"]] == [[0, 0], [2, -2]]
    assert [list(e["data"].numpy()) for e in by_key["b"]] == [[0.0], [2.0]]

    param = {"type": "dataset", "datasetId": dataset_id, "datasetKey": "b"}
    inline = {"name": "y", "data": [tensor([7], "i8")]}
    result, error = create(client, "echo", [{"name": "x", "data": param}, inline])
    assert error is None, error
    stored = state(client, "echo", result["success"]["stateId"])
    assert stored["x"] == b"".join(tensor([i], "f32").serialize() for i in range(3))
    assert stored["y"] == tensor([7], "i8").serialize()

    removed, error = client.dataset.remove_entries({"datasetId": dataset_id, "entries": [1]})
    assert error is None, error
    assert removed["removedBytes"] > 0 and removed["newDatasetVersionId"] != version
    _, error = client.dataset.add_entries(
        {
            "datasetId": dataset_id,
            "datasetVersionId": version,
            "keys": [
                {"key": "a", "data": [tensor([1, 1], "i64")]},
                {"key": "b", "data": [tensor([1], "f32")]},
            ],
        }
    )
    assert error["code"] == "incorrect_version_id"
    ok, error = client.dataset.delete_dataset({"datasetId": dataset_id})
    assert (ok, error) == ({}, None)
    _, error = client.dataset.get_entries({"datasetId": dataset_id, "entries": [0]})
    assert error["code"] == "dataset_not_found"


def test_one_key_dataset_with_the_sync_get_entries(client: DecthingsClientSync) -> None:
    created, _ = client.dataset.create_dataset(
        {"name": "one", "description": "", "keys": [{"name": "x", "required": True, "rules": {}}]}
    )
    dataset_id = created["datasetId"]
    client.dataset.add_entries(
        {"datasetId": dataset_id, "keys": [{"key": "x", "data": [tensor([1.5], "f64")] * 2}]}
    )
    result, error = client.dataset.get_entries(
        {"datasetId": dataset_id, "entries": {"start": 0, "end": 2}}
    )
    assert error is None, error
    assert [e["index"] for e in result["keys"][0]["data"]] == [0, 1]


def test_persistent_launchers_and_sysinfo(client: DecthingsClientSync) -> None:
    created, error = client.persistent_launcher.create_persistent_launcher(
        {"name": "warm", "spec": {"cpus": 1, "memoryMebibytes": 512}}
    )
    assert error is None, error
    launcher_id = created["persistentLauncherId"]
    location = {"type": "persistentLauncher", "persistentLauncherId": launcher_id}
    result, error = create(client, "hello", [], executionLocation=location)
    assert error is None and "success" in result, (result, error)
    assert "createLauncher" not in result["success"]["durations"]
    inline = [{"name": "x", "data": [tensor([1.5, 2.5], "f64")]}]
    result, error = create(client, "echo", inline, executionLocation=location)
    assert error is None, error
    stored = state(client, "echo", result["success"]["stateId"])
    assert stored["x"] == tensor([1.5, 2.5], "f64").serialize()
    listed, _ = client.persistent_launcher.get_persistent_launchers(
        {"filter": {"ids": [launcher_id]}}
    )
    (launcher,) = listed["persistentLaunchers"]
    assert launcher["state"] == {"type": "active"} and isinstance(launcher["createdAt"], int)
    sysinfo, error = client.persistent_launcher.get_sysinfo({"persistentLauncherId": launcher_id})
    assert error is None, error
    for sample in sysinfo["sysinfo"]:
        assert isinstance(sample["timestamp"], int) and isinstance(sample["memory"], int)
    ok, error = client.persistent_launcher.delete_persistent_launcher(
        {"persistentLauncherId": launcher_id}
    )
    assert (ok, error) == ({}, None)
    _, error = client.persistent_launcher.get_sysinfo({"persistentLauncherId": launcher_id})
    assert error["code"] == "persistent_launcher_not_found"


def test_the_readme_example_prints_a_success_with_integer_durations(base: str) -> None:
    example = Path(__file__).parents[2] / "examples" / "platform_client.py"
    done = subprocess.run(
        [sys.executable, str(example), base], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed = ast.literal_eval(done.stdout.strip())
    durations = printed["success"]["durations"]
    assert all(isinstance(v, int) for v in durations.values()) and "total" in durations


def test_more_failed_outcomes_time_limit_and_oom(client: DecthingsClientSync) -> None:
    result, error = create(client, "slow_create", [])
    assert error is None, error
    assert result["failed"]["error"] == {"code": "max_duration_exceeded", "at": "createState"}
    small = {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 128}}
    result, error = create(client, "memory_hog", [], executionLocation=small)
    assert error is None, error
    failed = result["failed"]["error"]
    assert failed["code"] == "code_terminated" and failed["oom"] is True


def test_refusals_naming_what_does_not_exist(client: DecthingsClientSync) -> None:
    created, _ = client.dataset.create_dataset(
        {"name": "k", "description": "", "keys": [{"name": "x", "required": True, "rules": {}}]}
    )
    param = {"type": "dataset", "datasetId": created["datasetId"], "datasetKey": "nope"}
    _, error = create(client, "echo", [{"name": "x", "data": param}])
    assert error["code"] == "dataset_key_not_found"
    assert error["datasetId"] == created["datasetId"] and error["datasetKey"] == "nope"
    _, error = create(client, "echo", [], mountModels=[{"modelId": "mount_probe"}])
    assert error["code"] == "state_for_model_to_mount_not_found"
    mount = [{"modelId": "hello", "snapshotId": "snap-nope"}]
    _, error = create(client, "echo", [], mountModels=mount)
    assert error["code"] == "snapshot_for_model_to_mount_not_found"
    _, error = client.model.wait_for_state_to_be_created({"modelId": "hello", "stateId": "s-x"})
    assert error["code"] == "state_not_found"


def test_a_running_job_shows_on_its_persistent_launcher(client: DecthingsClientSync) -> None:
    created, _ = client.persistent_launcher.create_persistent_launcher(
        {"name": "busy", "spec": {"cpus": 1, "memoryMebibytes": 256}}
    )
    launcher_id = created["persistentLauncherId"]
    location = {"type": "persistentLauncher", "persistentLauncherId": launcher_id}
    answers: list[Any] = []
    thread = threading.Thread(
        target=lambda: answers.append(create(client, "sleeper", [], executionLocation=location))
    )
    thread.start()
    try:
        running: list[Any] = []
        for _ in range(600):
            listed, _ = client.persistent_launcher.get_persistent_launchers(
                {"filter": {"ids": [launcher_id]}}
            )
            running = listed["persistentLaunchers"][0]["running"]
            if running:
                break
            time.sleep(0.05)
        (operation,) = running
        assert operation["type"] == "createModelState"
        # Deleting the launcher ends its job as launcher_terminated.
        client.persistent_launcher.delete_persistent_launcher({"persistentLauncherId": launcher_id})
    finally:
        thread.join(120)
    result, error = answers[0]
    assert error is None and result["failed"]["error"]["code"] == "launcher_terminated"


def test_one_domain_behind_both_front_doors(served: tuple[LauncherProcess, str]) -> None:
    proc, base = served
    http = DecthingsClientSync(http_server_address=base)
    with LauncherClient(proc.address) as grpc_client:
        result, error = create(http, "echo", [{"name": "x", "data": [tensor([3], "u8")]}])
        assert error is None, error
        state_id = result["success"]["stateId"]
        over_grpc = grpc_client.model.wait_for_state_to_be_created(
            model_id="echo", state_id=state_id
        )
        assert over_grpc["result"]["success"]["durations"] == result["success"]["durations"]
        got = grpc_client.model.get_model_state(model_id="echo", state_id=state_id, keys=["x"])
        assert got["result"]["data"][0]["data"] == tensor([3], "u8").serialize()
        uploaded = grpc_client.model.upload_state(
            model_id="echo", name="from-grpc", data=[{"key": "k", "data": b"grpc"}]
        )
        grpc_state = uploaded["result"]["stateId"]
    assert state(http, "echo", grpc_state) == {"k": b"grpc"}
