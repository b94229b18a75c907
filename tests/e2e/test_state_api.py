"""The state API over a real socket with the client: upload, download, rename, activate,
delete (also under a reader), creating states, cancel, wait, and getModels' shapes."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import numpy as np
import psutil
import pytest

from launcher.client import LauncherClient
from launcher.v1 import model_pb2, model_pb2_grpc
from tests.support.launcher_proc import LauncherProcess
from tests.support.mounting import new_model, upload
from tests.support.specs import TEMPORARY

SLOW = [{"name": "wait", "data": [np.array([1], dtype=np.int8)]}]


def keys_of(res: dict[str, Any]) -> dict[str, bytes]:
    return {item["key"]: item["data"] for item in res["result"]["data"]}


def test_upload_then_download_every_key_and_a_subset(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    model_id = new_model(launcher)
    big = np.random.default_rng(1).bytes(3 << 20)
    state_id = upload(client, model_id, a=b"alpha", empty=b"", big=big)
    got = client.model.get_model_state(model_id=model_id, state_id=state_id)
    assert [i["key"] for i in got["result"]["data"]] == ["a", "empty", "big"]
    assert keys_of(got) == {"a": b"alpha", "empty": b"", "big": big}
    subset = client.model.get_model_state(model_id=model_id, keys=["big", "a"])
    assert [i["key"] for i in subset["result"]["data"]] == ["big", "a"]
    assert keys_of(subset) == {"a": b"alpha", "big": big}


def test_download_refusals(launcher: LauncherProcess, client: LauncherClient) -> None:
    model_id = new_model(launcher)
    get = client.model.get_model_state
    assert get(model_id=model_id) == {"error": {"code": "state_not_found"}}  # no active state
    state_id = upload(client, model_id, a=b"1")
    assert get(model_id=model_id, state_id="s-none") == {"error": {"code": "state_not_found"}}
    assert get(model_id=model_id, keys=["a", "b"]) == {"error": {"code": "state_key_not_found"}}
    assert get(model_id="no-such-model") == {"error": {"code": "model_not_found"}}
    twice = get(model_id=model_id, state_id=state_id, keys=["a", "a"])
    assert twice["error"]["code"] == "invalid_parameter"
    assert twice["error"]["parameterName"] == "keys[1]"
    other = new_model(launcher)
    assert get(model_id=other, state_id=state_id) == {"error": {"code": "state_not_found"}}


def test_upload_refusals(launcher: LauncherProcess, client: LauncherClient) -> None:
    model_id = new_model(launcher)
    up = client.model.upload_state
    assert up(model_id="no-such-model", name="n", data=[]) == {"error": {"code": "model_not_found"}}
    dup = up(model_id=model_id, name="n", data=[{"key": "a", "data": b""}] * 2)
    assert dup["error"]["code"] == "invalid_parameter"
    assert dup["error"]["parameterName"] == "data[1].key"
    assert up(model_id=model_id, name="", data=[])["error"]["parameterName"] == "name"
    too_many = up(
        model_id=model_id, name="n", data=[{"key": f"k{i}", "data": b""} for i in range(101)]
    )
    assert too_many["error"]["parameterName"] == "data"
    gone = up(model_id=model_id, name="n", data=[], delete_states=["s-none"])
    assert gone == {"error": {"code": "state_not_found"}}
    mount = up(model_id=model_id, name="n", data=[], mount_models=[{"modelId": "no-such"}])
    assert mount == {"error": {"code": "model_to_mount_not_found"}}
    assert (
        client.model.get_models(filter={"ids": [model_id]})["result"]["models"][0]["states"] == []
    )


def test_upload_with_delete_states_replaces_them(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    model_id = new_model(launcher)
    active = upload(client, model_id, a=b"1")
    old = upload(client, model_id, a=b"2")
    res = client.model.upload_state(
        model_id=model_id, name="new", data=[{"key": "a", "data": b"3"}], delete_states=[old]
    )
    new = res["result"]["stateId"]
    states = client.model.get_models(filter={"ids": [model_id]})["result"]["models"][0]["states"]
    assert [s["id"] for s in states] == [active, new]


def test_rename_activate_delete(launcher: LauncherProcess, client: LauncherClient) -> None:
    model_id = new_model(launcher)
    model = client.model
    first = upload(client, model_id, a=b"1")
    second = upload(client, model_id, a=b"2")
    assert model.update_model_state(
        model_id=model_id, state_id=second, properties={"name": "renamed"}
    ) == {"result": {}}
    assert model.delete_model_state(model_id=model_id, state_id=first) == {
        "error": {"code": "state_is_active"}
    }
    assert model.set_active_model_state(model_id=model_id, state_id=second) == {"result": {}}
    assert keys_of(model.get_model_state(model_id=model_id)) == {"a": b"2"}
    assert model.delete_model_state(model_id=model_id, state_id=first) == {"result": {}}
    info = model.get_models(filter={"ids": [model_id]})["result"]["models"][0]
    assert info["activeState"] == second
    assert [(s["id"], s["name"]) for s in info["states"]] == [(second, "renamed")]
    assert model.get_model_state(model_id=model_id, state_id=first) == {
        "error": {"code": "state_not_found"}
    }
    for call in (model.set_active_model_state, model.delete_model_state):
        assert call(model_id=model_id, state_id=first) == {"error": {"code": "state_not_found"}}
    assert model.update_model_state(
        model_id=model_id, state_id=first, properties={"name": "x"}
    ) == {"error": {"code": "state_not_found"}}
    bad = model.update_model_state(model_id=model_id, state_id=second, properties={"name": ""})
    assert bad["error"]["parameterName"] == "properties.name"


def test_deleting_a_state_a_job_mounts_is_safe(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    other = new_model(launcher)
    upload(client, other, k=b"active")
    mounted = upload(client, other, k=b"mounted")
    events = run_in_thread(
        client,
        "mount_probe",
        params=SLOW,
        mount_models=[{"modelId": other, "stateId": mounted}],
    )
    state_id = events.started()
    assert client.model.delete_model_state(model_id=other, state_id=mounted) == {"result": {}}
    final = events.final()
    assert final["result"]["success"]["stateId"] == state_id
    got = keys_of(client.model.get_model_state(model_id="mount_probe", state_id=state_id))
    assert got[f"{other}/state/k"] == b"mounted"


def test_deleting_a_state_during_its_download_is_safe(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    model_id = new_model(launcher)
    upload(client, model_id, a=b"1")
    data = np.random.default_rng(2).bytes(8 << 20)
    state_id = upload(client, model_id, big=data)
    with grpc.insecure_channel(launcher.address) as channel:
        stream = model_pb2_grpc.ModelStub(channel).GetModelState(
            model_pb2.GetModelStateRequest(model_id=model_id, state_id=state_id), timeout=30
        )
        first = next(stream)
        assert first.key == "big" and first.byte_size == len(data)
        assert client.model.delete_model_state(model_id=model_id, state_id=state_id) == {
            "result": {}
        }
        received = first.data + b"".join(chunk.data for chunk in stream)
    assert received == data
    assert client.model.get_model_state(model_id=model_id, state_id=state_id) == {
        "error": {"code": "state_not_found"}
    }


class JobThread:
    """A create_state_stream consumed in a thread, with its events kept."""

    def __init__(self, client: LauncherClient, model_id: str, **kw: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(client, model_id, kw))
        self._thread.start()

    def _run(self, client: LauncherClient, model_id: str, kw: dict[str, Any]) -> None:
        kw.setdefault("params", [])
        for event in client.model.create_state_stream(
            model_id=model_id, name="threaded", execution_location=TEMPORARY, **kw
        ):
            self.events.append(event)
            if event.get("phase") == "createState":
                self._started.set()
        self._started.set()

    def started(self) -> str:
        """The state id once the createState phase has begun."""
        assert self._started.wait(30)
        return str(self.events[-1]["stateId"])

    def final(self) -> dict[str, Any]:
        self._thread.join(60)
        assert not self._thread.is_alive()
        return self.events[-1]


def run_in_thread(client: LauncherClient, model_id: str, **kw: Any) -> JobThread:
    return JobThread(client, model_id, **kw)


def descendants(pid: int) -> set[int]:
    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


def alive(pid: int) -> bool:
    """Alive and not an idle spare sandbox (made meanwhile, for the next job)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.name() != "sandbox-spare"
    except psutil.NoSuchProcess:
        return False


def test_cancel_kills_the_worker_promptly_and_keeps_nothing(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    hello = client.model.create_state(
        model_id="hello", name="warm", params=[], execution_location=TEMPORARY
    )
    assert "success" in hello["result"]  # the sandbox's helpers are up before counting
    before = descendants(launcher.pid)
    job = run_in_thread(client, "sleeper")
    state_id = job.started()
    creating = client.model.get_creating_states(model_id="sleeper")["result"]["states"]
    [mine] = [s for s in creating if s["id"] == state_id]
    assert mine["name"] == "threaded" and mine["startedAt"] <= time.time() * 1000
    workers = descendants(launcher.pid) - before
    assert workers, "the job's worker should be a descendant of the launcher"
    cancelled_at = time.monotonic()
    assert client.model.cancel_create_state(model_id="sleeper", state_id=state_id) == {"result": {}}
    final = job.final()
    assert time.monotonic() - cancelled_at < 5
    assert final["result"]["failed"]["error"] == {"code": "cancelled"}
    deadline = time.monotonic() + 5
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in workers)
    assert client.model.get_model_state(model_id="sleeper", state_id=state_id) == {
        "error": {"code": "state_not_found"}
    }
    states = client.model.get_models(filter={"ids": ["sleeper"]})["result"]["models"][0]["states"]
    assert state_id not in [s["id"] for s in states]
    creating = client.model.get_creating_states(model_id="sleeper")["result"]["states"]
    assert state_id not in [s["id"] for s in creating]
    assert not list((launcher.root / "tmp" / "states").glob(f"{state_id}*"))


def test_cancel_refusals(client: LauncherClient) -> None:
    cancel = client.model.cancel_create_state
    assert cancel(model_id="no-such-model", state_id="s-x") == {
        "error": {"code": "model_not_found"}
    }
    assert cancel(model_id="hello", state_id="s-none") == {"error": {"code": "state_not_found"}}
    res = client.model.create_state(
        model_id="hello", name="done", params=[], execution_location=TEMPORARY
    )
    done = res["result"]["success"]["stateId"]
    assert cancel(model_id="hello", state_id=done) == {"error": {"code": "state_already_created"}}
    assert client.model.get_creating_states(model_id="no-such-model") == {
        "error": {"code": "model_not_found"}
    }


def test_wait_for_running_finished_and_unknown_states(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    job = run_in_thread(client, "mount_probe", params=SLOW)
    state_id = job.started()
    waited = client.model.wait_for_state_to_be_created(model_id="mount_probe", state_id=state_id)
    final = job.final()
    assert waited == final and waited["result"]["success"]["stateId"] == state_id
    again = client.model.wait_for_state_to_be_created(model_id="mount_probe", state_id=state_id)
    assert again == final
    wait = client.model.wait_for_state_to_be_created
    assert wait(model_id="mount_probe", state_id="s-none") == {"error": {"code": "state_not_found"}}
    assert wait(model_id="hello", state_id=state_id) == {"error": {"code": "state_not_found"}}


STATE_KEYS = {
    "id",
    "name",
    "createdAt",
    "beingDeleted",
    "state",
    "mountedModels",
    "trainingOperations",
}
MODEL_KEYS = {
    "id",
    "name",
    "createdAt",
    "activeState",
    "states",
    "maxDurationsSeconds",
    "snapshots",
}


def test_get_models_shapes(launcher: LauncherProcess, client: LauncherClient) -> None:
    model_id = new_model(launcher)
    (launcher.root / "models" / model_id / "model.toml").write_text(
        "[max_durations_seconds]\ncode_startup = 7\ncreate_state = 9\n"
    )
    state_id = upload(client, model_id, a=b"123", b=b"")
    [model] = client.model.get_models(filter={"ids": [model_id]})["result"]["models"]
    assert set(model) == MODEL_KEYS
    assert model["id"] == model_id and model["name"] == model_id
    assert model["activeState"] == state_id
    assert model["maxDurationsSeconds"] == {"codeStartup": 7.0, "createState": 9.0}
    assert model["snapshots"] == []
    [state] = model["states"]
    assert set(state) == STATE_KEYS
    assert state["id"] == state_id and state["name"] == "up" and state["beingDeleted"] is False
    assert state["state"] == [{"key": "a", "byteSize": 3}, {"key": "b", "byteSize": 0}]
    assert state["mountedModels"] == [] and state["trainingOperations"] == []
    assert abs(state["createdAt"] - time.time() * 1000) < 60_000
    empty = client.model.get_models(filter={"ids": [new_model(launcher)]})["result"]["models"][0]
    assert empty["activeState"] is None and empty["states"] == []


def test_get_models_filters_and_pages(launcher: LauncherProcess, client: LauncherClient) -> None:
    ids = sorted(new_model(launcher) for _ in range(3))
    get = client.model.get_models
    page = get(offset=1, limit=1, filter={"ids": ids})["result"]
    assert [m["id"] for m in page["models"]] == [ids[1]]
    assert (page["total"], page["offset"], page["limit"]) == (3, 1, 1)
    assert get(offset=5, filter={"ids": ids})["result"]["models"] == []
    assert [m["id"] for m in get(filter={"names": [ids[2]]})["result"]["models"]] == [ids[2]]
    found = get(filter={"searchName": ids[0][2:].upper()})["result"]["models"]
    assert [m["id"] for m in found] == [ids[0]]
    everything = get(limit=1000)["result"]
    assert set(ids) <= {m["id"] for m in everything["models"]}
    assert everything["total"] == len(everything["models"])
    assert get(limit=1001)["error"]["parameterName"] == "limit"


@pytest.mark.parametrize("limit", [-1, 0.5, "5"])
def test_get_models_refuses_bad_paging(client: LauncherClient, limit: Any) -> None:
    res = client.model.get_models(limit=limit)
    assert res["error"]["code"] == "invalid_parameter"
