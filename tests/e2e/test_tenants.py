"""Tenants over a real launcher: what one tenant's key makes (datasets, persistent launchers,
states, snapshots) is invisible to another's (absent from lists, ``access_denied`` by id,
also inside createState), shared by keys of the same tenant, and seen by admin keys; the
refused calls change nothing, and the owner keeps being served while another tenant tries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY
from tests.support.tenants import LatencyProbe, client, launcher_with_keys

DENIED = "access_denied"
SPEC = {"cpus": 1, "memoryMebibytes": 512}


@pytest.fixture(scope="module")
def tenants() -> Iterator[tuple[LauncherProcess, dict[str, str]]]:
    specs: dict[str, dict[str, Any]] = {
        "alice": {},
        "alice-ci": {"tenant": "alice"},
        "bob": {},
        "ops": {"admin": True},
    }
    with launcher_with_keys(specs) as running:
        yield running


def clients(tenants: Any, *names: str) -> list[LauncherClient]:
    proc, keys = tenants
    return [client(proc, keys[n]) for n in names]


def code(res: dict[str, Any]) -> str | None:
    return res.get("error", {}).get("code")


def make_dataset(c: LauncherClient) -> str:
    res = c.dataset.create_dataset(
        name="private",
        description="",
        keys=[{"name": "x", "required": True, "rules": {"shape": [2], "allowedTypes": ["f32"]}}],
    )
    dataset_id = str(res["result"]["datasetId"])
    rows = [np.array([i, i], dtype=np.float32) for i in range(3)]
    assert "result" in c.dataset.add_entries(
        dataset_id=dataset_id, keys=[{"key": "x", "data": rows}]
    )
    return dataset_id


def dataset_ids(c: LauncherClient) -> set[str]:
    return {d["id"] for d in c.dataset.get_datasets(limit=1000)["result"]["datasets"]}


def test_a_dataset_is_private_to_its_tenant(tenants: Any) -> None:
    alice, alice_ci, bob, ops = clients(tenants, "alice", "alice-ci", "bob", "ops")
    with alice, alice_ci, bob, ops:
        dataset_id = make_dataset(alice)
        assert dataset_id in dataset_ids(alice) and dataset_id in dataset_ids(alice_ci)
        assert dataset_id in dataset_ids(ops)
        assert dataset_id not in dataset_ids(bob)
        listed = bob.dataset.get_datasets(filter={"ids": [dataset_id]})["result"]
        assert listed["datasets"] == [] and listed["total"] == 0
        with LatencyProbe(lambda: alice.dataset.get_datasets()) as probe:
            everything = {"start": 0, "end": 3}
            assert (
                code(bob.dataset.get_entries(dataset_id=dataset_id, entries=everything)) == DENIED
            )
            row = [{"key": "x", "data": [np.zeros(2, dtype=np.float32)]}]
            assert code(bob.dataset.add_entries(dataset_id=dataset_id, keys=row)) == DENIED
            assert code(bob.dataset.remove_entries(dataset_id=dataset_id, entries=[0])) == DENIED
            # the seed's error: the code alone
            assert bob.dataset.delete_dataset(dataset_id=dataset_id) == {"error": {"code": DENIED}}
            param = {
                "name": "x",
                "data": {"type": "dataset", "datasetId": dataset_id, "datasetKey": "x"},
            }
            res = bob.model.create_state(
                model_id="echo", name="steal", params=[param], execution_location=TEMPORARY
            )
            assert code(res) == DENIED, res
        probe.check()
        # nothing was lost: the owner still reads all three entries
        entries = alice.dataset.get_entries(dataset_id=dataset_id, entries={"start": 0, "end": 3})
        assert [e["index"] for e in entries["result"]["keys"][0]["data"]] == [0, 1, 2]
        # an unknown id is still not found, for every tenant
        missing = "00000000-0000-4000-8000-000000000000"
        assert code(bob.dataset.delete_dataset(dataset_id=missing)) == "dataset_not_found"
        assert alice_ci.dataset.remove_entries(dataset_id=dataset_id, entries=[0]) == {"result": {}}
        assert ops.dataset.delete_dataset(dataset_id=dataset_id) == {"result": {}}


def test_a_persistent_launcher_is_private_to_its_tenant(tenants: Any) -> None:
    alice, bob, ops = clients(tenants, "alice", "bob", "ops")
    with alice, bob, ops:
        res = alice.persistent_launcher.create_persistent_launcher(name="mine", spec=SPEC)
        launcher_id = res["result"]["persistentLauncherId"]

        def ids(c: LauncherClient) -> set[str]:
            listed = c.persistent_launcher.get_persistent_launchers(limit=1000)["result"]
            return {p["id"] for p in listed["persistentLaunchers"]}

        assert launcher_id in ids(alice) and launcher_id in ids(ops)
        assert launcher_id not in ids(bob)
        pl = bob.persistent_launcher
        with LatencyProbe(lambda: alice.persistent_launcher.get_persistent_launchers()) as probe:
            assert code(pl.get_sysinfo(persistent_launcher_id=launcher_id)) == DENIED
            for _ in range(20):  # a bounded loop of attempts to delete it
                assert (
                    code(pl.delete_persistent_launcher(persistent_launcher_id=launcher_id))
                    == DENIED
                )
        probe.check()
        location = {"type": "persistentLauncher", "persistentLauncherId": launcher_id}
        res = bob.model.create_state(
            model_id="hello", name="x", params=[], execution_location=location
        )
        assert code(res) == DENIED, res
        # still there, and the owner runs on it
        assert launcher_id in ids(alice)
        res = alice.model.create_state(
            model_id="hello", name="x", params=[], execution_location=location
        )
        assert "success" in res["result"], res
        assert alice.persistent_launcher.delete_persistent_launcher(
            persistent_launcher_id=launcher_id
        ) == {"result": {}}


def model_states(c: LauncherClient, model_id: str) -> tuple[set[str], str | None]:
    model = c.model.get_models(filter={"ids": [model_id]})["result"]["models"][0]
    return {s["id"] for s in model["states"]}, model.get("activeState")


def test_states_and_snapshots_are_private_to_their_tenant(tenants: Any) -> None:
    alice, alice_ci, bob, ops = clients(tenants, "alice", "alice-ci", "bob", "ops")
    with alice, alice_ci, bob, ops:
        up = alice.model.upload_state(
            model_id="counter", name="a", data=[{"key": "k", "data": b"secret"}]
        )
        state_id = up["result"]["stateId"]
        assert state_id in model_states(alice, "counter")[0]
        assert state_id in model_states(alice_ci, "counter")[0]
        assert state_id in model_states(ops, "counter")[0]
        bob_states, bob_active = model_states(bob, "counter")
        assert state_id not in bob_states and bob_active != state_id
        m = bob.model
        assert code(m.get_model_state(model_id="counter", state_id=state_id)) == DENIED
        assert code(m.get_model_state(model_id="counter")) == DENIED  # the active one is alice's
        assert (
            code(
                m.update_model_state(
                    model_id="counter", state_id=state_id, properties={"name": "z"}
                )
            )
            == DENIED
        )
        assert code(m.set_active_model_state(model_id="counter", state_id=state_id)) == DENIED
        assert code(m.delete_model_state(model_id="counter", state_id=state_id)) == DENIED
        assert code(m.wait_for_state_to_be_created(model_id="counter", state_id=state_id)) == DENIED
        assert code(m.snapshot_model(model_id="counter", name="steal")) == DENIED
        mount = [{"modelId": "counter", "stateId": state_id}]
        res = m.create_state(
            model_id="hello", name="x", params=[], execution_location=TEMPORARY, mount_models=mount
        )
        assert code(res) == DENIED, res
        res = m.create_state(
            model_id="hello",
            name="x",
            params=[],
            execution_location=TEMPORARY,
            mount_models=[{"modelId": "counter"}],
        )
        assert code(res) == DENIED, res
        res = m.upload_state(model_id="counter", name="x", data=[], delete_states=[state_id])
        assert code(res) == DENIED, res
        # the owner's state is intact and readable
        data = alice.model.get_model_state(model_id="counter", state_id=state_id)
        assert data["result"]["data"] == [{"key": "k", "data": b"secret"}]
        snap = alice_ci.model.snapshot_model(model_id="counter", name="s")
        snapshot_id = snap["result"]["snapshotId"]

        def snapshots(c: LauncherClient) -> set[str]:
            model = c.model.get_models(filter={"ids": ["counter"]})["result"]["models"][0]
            return {s["id"] for s in model["snapshots"]}

        assert snapshot_id in snapshots(alice) and snapshot_id not in snapshots(bob)
        assert code(m.delete_snapshot(model_id="counter", snapshot_id=snapshot_id)) == DENIED
        res = m.create_state(
            model_id="hello",
            name="x",
            params=[],
            execution_location=TEMPORARY,
            mount_models=[{"modelId": "counter", "snapshotId": snapshot_id}],
        )
        assert code(res) == DENIED, res
        assert snapshot_id in snapshots(ops)
        assert alice.model.delete_snapshot(model_id="counter", snapshot_id=snapshot_id) == {
            "result": {}
        }


def test_a_job_is_seen_only_by_its_tenant(tenants: Any) -> None:
    alice, bob = clients(tenants, "alice", "bob")
    with alice, bob:
        res = alice.model.create_state(
            model_id="hello", name="mine", params=[], execution_location=TEMPORARY
        )
        state_id = res["result"]["success"]["stateId"]
        assert (
            "success"
            in alice.model.wait_for_state_to_be_created(model_id="hello", state_id=state_id)[
                "result"
            ]
        )
        assert (
            code(bob.model.wait_for_state_to_be_created(model_id="hello", state_id=state_id))
            == DENIED
        )
        assert code(bob.model.cancel_create_state(model_id="hello", state_id=state_id)) == DENIED
        # bob's own first state of the same model: his tenant has no active state to see
        res = bob.model.create_state(
            model_id="hello", name="his", params=[], execution_location=TEMPORARY
        )
        assert "success" in res["result"], res
        his = res["result"]["success"]["stateId"]
        states, _ = model_states(bob, "hello")
        assert his in states and state_id not in states
        # the model's one active state is alice's: bob may not take it over
        assert code(bob.model.set_active_model_state(model_id="hello", state_id=his)) == DENIED
        assert model_states(alice, "hello")[1] is not None


def test_a_warm_session_is_never_handed_to_another_tenant(tenants: Any) -> None:
    alice, ops = clients(tenants, "alice", "ops")
    with alice, ops:
        made = alice.persistent_launcher.create_persistent_launcher(name="warm", spec=SPEC)
        location = {
            "type": "persistentLauncher",
            "persistentLauncherId": made["result"]["persistentLauncherId"],
        }

        def durations(c: LauncherClient) -> dict[str, Any]:
            res = c.model.create_state(
                model_id="hello", name="w", params=[], execution_location=location
            )
            return dict(res["result"]["success"]["durations"])

        assert "codeStartup" in durations(alice)  # a fresh worker, kept warm after
        assert "codeStartup" not in durations(alice)  # the same tenant reuses it
        assert "codeStartup" in durations(ops)  # an admin of another tenant gets its own
        assert "codeStartup" not in durations(alice)  # and alice's session is still there
