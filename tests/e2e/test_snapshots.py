"""Snapshots over a real socket: frozen code and state, listing, deletion, mounting by
``snapshotId``, and ``snapshot_no_longer_exists``."""

from __future__ import annotations

import json
import threading
import time

import numpy as np

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.mounting import new_model, probe, refused, upload
from tests.support.specs import TEMPORARY


def snapshot(client: LauncherClient, model_id: str, name: str = "snap") -> str:
    res = client.model.snapshot_model(model_id=model_id, name=name)
    return str(res["result"]["snapshotId"])


def model_info(client: LauncherClient, model_id: str) -> dict:
    return dict(client.model.get_models(filter={"ids": [model_id]})["result"]["models"][0])


def test_snapshot_is_listed_with_its_state(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    other = new_model(launcher)
    state_id = upload(client, other, k=b"v")
    before = time.time()
    snapshot_id = snapshot(client, other, "v1")
    [listed] = model_info(client, other)["snapshots"]
    assert listed == {
        "id": snapshot_id,
        "name": "v1",
        "createdAt": listed["createdAt"],
        "stateId": state_id,
    }
    assert before * 1000 - 1000 <= listed["createdAt"] <= time.time() * 1000 + 1000


def test_mounting_a_snapshot_sees_the_code_and_state_of_that_moment(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    other = new_model(launcher, "version = 1\n")
    first = upload(client, other, k=b"old", big=np.arange(50_000, dtype="<f8").tobytes())
    snapshot_id = snapshot(client, other)
    folder = launcher.root / "models" / other
    (folder / "main.py").write_text("version = 2\n")
    (folder / "added.txt").write_text("new")
    second = upload(client, other, k=b"new")
    client.model.set_active_model_state(model_id=other, state_id=second)
    assert client.model.delete_model_state(model_id=other, state_id=first) == {"result": {}}

    seen = probe(client, [{"modelId": other, "snapshotId": snapshot_id}])
    assert seen[f"{other}/main.py"] == b"version = 1\n"
    assert json.loads(seen[f"{other}/files"]) == ["main.py", "weights.bin"]
    assert seen[f"{other}/state/k"] == b"old"
    assert seen[f"{other}/state/big"] == np.arange(50_000, dtype="<f8").tobytes()
    assert seen[f"{other}/write"].startswith(b"refused")
    assert b"snapshots" in seen[f"{other}/path"]
    live = probe(client, [{"modelId": other}])
    assert live[f"{other}/main.py"] == b"version = 2\n" and live[f"{other}/state/k"] == b"new"


def test_a_state_made_with_a_snapshot_lists_it(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    other = new_model(launcher)
    upload(client, other, k=b"v")
    snapshot_id = snapshot(client, other)
    res = client.model.create_state(
        model_id="mount_probe",
        name="with-snapshot",
        params=[],
        execution_location=TEMPORARY,
        mount_models=[{"modelId": other, "snapshotId": snapshot_id}],
    )
    state_id = res["result"]["success"]["stateId"]
    state = next(s for s in model_info(client, "mount_probe")["states"] if s["id"] == state_id)
    assert state["mountedModels"] == [{"modelId": other, "snapshotId": snapshot_id}]


def test_deleted_snapshot_is_gone(launcher: LauncherProcess, client: LauncherClient) -> None:
    other = new_model(launcher)
    upload(client, other, k=b"v")
    snapshot_id = snapshot(client, other)
    assert (launcher.root / "snapshots" / snapshot_id / "code" / "main.py").is_file()
    assert client.model.delete_snapshot(model_id=other, snapshot_id=snapshot_id) == {"result": {}}
    assert model_info(client, other)["snapshots"] == []
    assert not (launcher.root / "snapshots" / snapshot_id).exists()
    error = refused(client, [{"modelId": other, "snapshotId": snapshot_id}])
    assert error == {"code": "snapshot_for_model_to_mount_not_found"}
    again = client.model.delete_snapshot(model_id=other, snapshot_id=snapshot_id)
    assert again == {"error": {"code": "snapshot_not_found"}}


def test_snapshot_outlives_its_model_folder(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    other = new_model(launcher)
    upload(client, other, k=b"kept")
    snapshot_id = snapshot(client, other)
    folder = launcher.root / "models" / other
    folder.rename(folder.with_name(other + ".gone"))
    seen = probe(client, [{"modelId": other, "snapshotId": snapshot_id}])
    assert seen[f"{other}/state/k"] == b"kept"
    assert refused(client, [{"modelId": other}]) == {"code": "model_to_mount_not_found"}
    assert client.model.delete_snapshot(model_id=other, snapshot_id=snapshot_id) == {"result": {}}


def test_deleting_a_snapshot_a_job_mounts_keeps_the_jobs_view(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    other = new_model(launcher)
    upload(client, other, k=b"pinned")
    snapshot_id = snapshot(client, other)
    events: list[dict] = []
    started = threading.Event()

    def run() -> None:
        for event in client.model.create_state_stream(
            model_id="mount_probe",
            name="slow",
            params=[{"name": "wait", "data": [np.array([1], dtype=np.int8)]}],
            execution_location=TEMPORARY,
            mount_models=[{"modelId": other, "snapshotId": snapshot_id}],
        ):
            events.append(event)
            if event.get("phase") == "createState":
                started.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(30)
    assert client.model.delete_snapshot(model_id=other, snapshot_id=snapshot_id) == {"result": {}}
    assert (launcher.root / "snapshots" / snapshot_id).exists()  # the job still holds it
    thread.join(60)
    state_id = events[-1]["result"]["success"]["stateId"]
    got = client.model.get_model_state(model_id="mount_probe", state_id=state_id)
    seen = {i["key"]: i["data"] for i in got["result"]["data"]}
    assert seen[f"{other}/state/k"] == b"pinned"
    assert seen[f"{other}/main.py"] == b"model = {}\n"
    deadline = time.monotonic() + 10
    while (launcher.root / "snapshots" / snapshot_id).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (launcher.root / "snapshots" / snapshot_id).exists()


def test_mounting_a_state_made_from_a_deleted_snapshot(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    base, derived = new_model(launcher), new_model(launcher)
    upload(client, base, k=b"v")
    snapshot_id = snapshot(client, base)
    made = client.model.upload_state(
        model_id=derived,
        name="made-from",
        data=[{"key": "k", "data": b"d"}],
        mount_models=[{"modelId": base, "snapshotId": snapshot_id}],
    )["result"]["stateId"]
    [state] = model_info(client, derived)["states"]
    assert state["id"] == made
    assert state["mountedModels"] == [{"modelId": base, "snapshotId": snapshot_id}]
    assert probe(client, [{"modelId": derived}])[f"{derived}/state/k"] == b"d"
    client.model.delete_snapshot(model_id=base, snapshot_id=snapshot_id)
    assert refused(client, [{"modelId": derived}]) == {"code": "snapshot_no_longer_exists"}


def test_snapshot_refusals(launcher: LauncherProcess, client: LauncherClient) -> None:
    no_state = new_model(launcher)
    model = client.model
    assert model.snapshot_model(model_id=no_state, name="s") == {
        "error": {"code": "state_not_found"}
    }
    assert model.snapshot_model(model_id="no-such-model", name="s") == {
        "error": {"code": "model_not_found"}
    }
    bad_name = model.snapshot_model(model_id=no_state, name="")
    assert bad_name["error"]["code"] == "invalid_parameter"
    assert bad_name["error"]["parameterName"] == "name"
    bad_id = model.snapshot_model(model_id="../x", name="s")
    assert bad_id["error"]["parameterName"] == "modelId"
    assert model.delete_snapshot(model_id=no_state, snapshot_id="sn-none") == {
        "error": {"code": "snapshot_not_found"}
    }
    assert model.delete_snapshot(model_id="no-such-model", snapshot_id="sn-none") == {
        "error": {"code": "model_not_found"}
    }
    bad = model.delete_snapshot(model_id=no_state, snapshot_id="a/b")
    assert bad["error"]["parameterName"] == "snapshotId"


def test_snapshot_of_another_model_is_not_found(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    a, b = new_model(launcher), new_model(launcher)
    upload(client, a, k=b"v")
    snapshot_id = snapshot(client, a)
    assert refused(client, [{"modelId": b, "snapshotId": snapshot_id}]) == {
        "code": "snapshot_for_model_to_mount_not_found"
    }
    assert client.model.delete_snapshot(model_id=b, snapshot_id=snapshot_id) == {
        "error": {"code": "snapshot_not_found"}
    }
    upload_ref = client.model.upload_state(
        model_id=b, name="x", data=[], mount_models=[{"modelId": b, "snapshotId": snapshot_id}]
    )
    assert upload_ref == {"error": {"code": "snapshot_for_model_to_mount_not_found"}}
