"""One unit everywhere (CONTRACT.md "Durations"): every duration the launcher reports is an
integer number of milliseconds and every timestamp an integer Unix millisecond, through the
Python client and through raw gRPC."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import numpy as np

from launcher.client import LauncherClient
from launcher.v1 import model_pb2, model_pb2_grpc
from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY


def _is_ms_int(value: Any) -> bool:
    return type(value) is int and value >= 0


def _recent(timestamp: Any, started: float) -> bool:
    """An integer Unix millisecond between ``started`` (seconds) and now, with slack."""
    return type(timestamp) is int and started * 1000 - 5_000 <= timestamp <= time.time() * 1000


def test_phase_events_and_the_response_carry_integer_milliseconds(client: LauncherClient) -> None:
    events = list(
        client.model.create_state_stream(
            model_id="hello", name="units", params=[], execution_location=TEMPORARY
        )
    )
    finished = [e for e in events if e.get("event") == "phaseFinished"]
    assert [e["phase"] for e in finished] == ["createLauncher", "codeStartup", "createState"]
    assert all(_is_ms_int(e["duration"]) for e in finished), finished
    durations = events[-1]["result"]["success"]["durations"]
    assert all(_is_ms_int(v) for v in durations.values()), durations
    # The phase events and the response report the same measurement.
    for event in finished:
        assert durations[event["phase"]] == event["duration"]


def test_every_timestamp_is_an_integer_unix_millisecond(client: LauncherClient) -> None:
    started = time.time()
    made = client.model.create_state(
        model_id="counter", name="when", params=[], execution_location=TEMPORARY
    )
    assert "success" in made["result"], made
    snapshot = client.model.snapshot_model(model_id="counter", name="units")
    assert "result" in snapshot, snapshot
    [model] = client.model.get_models(filter={"ids": ["counter"]})["result"]["models"]
    assert type(model["createdAt"]) is int
    mine = next(s for s in model["states"] if s["id"] == made["result"]["success"]["stateId"])
    assert _recent(mine["createdAt"], started)
    [snap] = [s for s in model["snapshots"] if s["id"] == snapshot["result"]["snapshotId"]]
    assert _recent(snap["createdAt"], started)

    dataset = client.dataset.create_dataset(
        name="units", description="", keys=[{"name": "x", "required": True, "rules": {}}]
    )["result"]["datasetId"]
    client.dataset.add_entries(
        dataset_id=dataset, keys=[{"key": "x", "data": [np.array([1], dtype=np.int8)]}]
    )
    [info] = client.dataset.get_datasets(filter={"ids": [dataset]})["result"]["datasets"]
    assert _recent(info["createdAt"], started)

    made_launcher = client.persistent_launcher.create_persistent_launcher(
        name="units", spec={"cpus": 1, "memoryMebibytes": 256}
    )
    launcher_id = made_launcher["result"]["persistentLauncherId"]
    try:
        listed = client.persistent_launcher.get_persistent_launchers(filter={"ids": [launcher_id]})
        assert _recent(listed["result"]["persistentLaunchers"][0]["createdAt"], started)
        samples = client.persistent_launcher.get_sysinfo(persistent_launcher_id=launcher_id)
        timestamps = [s["timestamp"] for s in samples["result"]["sysinfo"]]
        assert timestamps and all(_recent(t, started) for t in timestamps), timestamps
        later = client.persistent_launcher.get_sysinfo(
            persistent_launcher_id=launcher_id, from_timestamp=max(timestamps) + 1
        )
        assert all(s["timestamp"] > max(timestamps) for s in later["result"]["sysinfo"])
        earlier = client.persistent_launcher.get_sysinfo(
            persistent_launcher_id=launcher_id, from_timestamp=min(timestamps)
        )
        assert min(timestamps) in [s["timestamp"] for s in earlier["result"]["sysinfo"]]
    finally:
        client.persistent_launcher.delete_persistent_launcher(persistent_launcher_id=launcher_id)


def test_a_running_jobs_started_at_is_an_integer_unix_millisecond(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    started = time.time()
    done: dict[str, Any] = {}

    def run() -> None:
        done["response"] = client.model.create_state(
            model_id="sleeper", name="waiting", params=[], execution_location=TEMPORARY
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while True:
        states = client.model.get_creating_states(model_id="sleeper")["result"]["states"]
        mine = [s for s in states if s["name"] == "waiting"]
        if mine:
            break
        assert time.monotonic() < deadline and "response" not in done, done
        time.sleep(0.05)
    assert _recent(mine[0]["startedAt"], started)
    # The same over raw gRPC: uint64 milliseconds on the wire.
    with grpc.insecure_channel(launcher.address) as channel:
        raw = model_pb2_grpc.ModelStub(channel).GetCreatingStates(
            model_pb2.ModelRef(model_id="sleeper"), timeout=10
        )
    [wire] = [s for s in raw.result.states if s.id == mine[0]["id"]]
    assert wire.started_at == mine[0]["startedAt"]
    client.model.cancel_create_state(model_id="sleeper", state_id=mine[0]["id"])
    thread.join(60)
    failed = done["response"]["result"]["failed"]
    assert failed["error"] == {"code": "cancelled"}
    assert all(_is_ms_int(v) for v in failed["durations"].values())
