"""Authentication and access control over a real socket: a launcher subprocess whose data
root holds API keys, called through the client (statuses become the seed's error values)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from launcher.auth.keys import KeyStore
from launcher.client import LauncherClient
from launcher.store.db import Database
from tests.support.launcher_proc import LauncherProcess, running_launcher
from tests.support.specs import TEMPORARY


class Keys(dict[str, str]):
    """Secrets of the test keys by name."""


def _make_keys(root: Path) -> Keys:
    db = Database(root / "launcher.db")
    store = KeyStore(db)
    keys = Keys()
    specs: dict[str, dict[str, Any]] = {
        "full": {},
        "hello_only": {"models": frozenset({"hello"})},
        "slow": {"rate_per_second": 0.5},
        "one_job": {"max_concurrent_jobs": 1},
        "no_storage": {"max_stored_bytes": 0},
        "small_storage": {"models": frozenset({"linear"}), "max_stored_bytes": 10},
        "revoked": {},
    }
    for name, spec in specs.items():
        key, keys[name] = store.create(name, **spec)
        if name == "revoked":
            store.revoke(key.id)
    db.close()
    return keys


@pytest.fixture(scope="module")
def secured() -> Iterator[tuple[LauncherProcess, Keys]]:
    root = Path(tempfile.mkdtemp(prefix="la-"))
    try:
        keys = _make_keys(root)
        with running_launcher(root) as proc:
            yield proc, keys
    finally:
        shutil.rmtree(root, ignore_errors=True)


def call(secured: tuple[LauncherProcess, Keys], key: str | None) -> LauncherClient:
    proc, keys = secured
    return LauncherClient(proc.address, api_key=keys[key] if key else None)


def create(client: LauncherClient, model_id: str, **kw: Any) -> dict[str, Any]:
    return client.model.create_state(
        model_id=model_id, name="t", params=[], execution_location=TEMPORARY, **kw
    )


def test_every_service_refuses_a_call_without_a_key(secured: Any) -> None:
    with call(secured, None) as client:
        bad = {"error": {"code": "bad_credentials"}}
        assert client.model.get_models() == bad
        assert create(client, "hello") == bad
        assert client.model.get_model_state(model_id="hello") == bad
        assert client.dataset.get_datasets() == bad
        assert client.persistent_launcher.get_persistent_launchers() == bad


def test_an_unknown_or_revoked_key_is_bad_credentials(secured: Any) -> None:
    proc, _ = secured
    with LauncherClient(proc.address, api_key="lk_not-a-key") as client:
        assert client.model.get_models() == {"error": {"code": "bad_credentials"}}
    with call(secured, "revoked") as client:
        assert client.dataset.get_datasets() == {"error": {"code": "bad_credentials"}}


def test_a_malformed_authorization_header_is_refused(secured: Any) -> None:
    proc, keys = secured
    with grpc.insecure_channel(proc.address) as channel:
        get = channel.unary_unary("/launcher.v1.Model/GetModels")
        for value in ("Basic " + keys["full"], keys["full"], "Bearer"):
            with pytest.raises(grpc.RpcError) as info:
                get(b"", metadata=(("authorization", value),), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection_stay_open_without_a_key(secured: Any) -> None:
    proc, _ = secured
    with grpc.insecure_channel(proc.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="launcher.v1.Model"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        answer = next(reflection.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in answer.list_services_response.service}
        assert "launcher.v1.Model" in names


def test_a_valid_key_calls_every_service(secured: Any) -> None:
    with call(secured, "full") as client:
        assert "result" in client.model.get_models(limit=100)
        assert "result" in client.dataset.get_datasets()
        assert "result" in client.persistent_launcher.get_persistent_launchers()
        assert "success" in create(client, "hello")["result"]


def test_a_key_limited_to_some_models_is_denied_the_others(secured: Any) -> None:
    denied = {"error": {"code": "access_denied"}}
    with call(secured, "hello_only") as client:
        assert create(client, "linear") == denied
        assert create(client, "hello", mount_models=[{"modelId": "linear"}]) == denied
        assert client.model.get_model_state(model_id="linear") == denied
        assert client.model.get_creating_states(model_id="linear") == denied
        assert client.model.wait_for_state_to_be_created(model_id="linear", state_id="x") == denied
        assert client.model.upload_state(model_id="linear", name="u", data=[]) == denied
        assert "success" in create(client, "hello")["result"]


def test_a_limited_key_sees_only_its_models_in_get_models(secured: Any) -> None:
    with call(secured, "hello_only") as client:
        listed = client.model.get_models(limit=100)["result"]
        assert [m["id"] for m in listed["models"]] == ["hello"]
        assert listed["total"] == 1
        asked = client.model.get_models(filter={"ids": ["linear", "echo"]})["result"]
        assert asked["models"] == [] and asked["total"] == 0


def test_a_key_over_its_request_rate_gets_too_many_requests(secured: Any) -> None:
    with call(secured, "slow") as client:
        # One call per two seconds (a burst of one): slow enough not to refill mid-test.
        answers = [client.dataset.get_datasets() for _ in range(2)]
        assert "result" in answers[0]
        assert answers[1] == {"error": {"code": "too_many_requests"}}
        time.sleep(2.1)
        assert "result" in client.dataset.get_datasets()
    with call(secured, "full") as other:  # other keys are not slowed down
        assert all("result" in other.dataset.get_datasets() for _ in range(5))


def test_a_key_at_its_concurrent_jobs_quota_gets_quota_exceeded(secured: Any) -> None:
    results: list[dict[str, Any]] = []
    with call(secured, "one_job") as client:
        first = threading.Thread(target=lambda: results.append(create(client, "sleeper")))
        first.start()
        deadline = time.monotonic() + 20
        while not (running := client.model.get_creating_states(model_id="sleeper"))["result"][
            "states"
        ]:
            assert time.monotonic() < deadline, running
            time.sleep(0.05)
        assert create(client, "hello") == {"error": {"code": "quota_exceeded"}}
        state_id = running["result"]["states"][0]["id"]
        assert client.model.cancel_create_state(model_id="sleeper", state_id=state_id) == {
            "result": {}
        }
        first.join(20)
        assert results[0]["result"]["failed"]["error"]["code"] == "cancelled"
        assert "success" in create(client, "hello")["result"]


def test_a_key_at_its_storage_quota_gets_quota_exceeded(secured: Any) -> None:
    quota = {"error": {"code": "quota_exceeded"}}
    with call(secured, "no_storage") as client:
        assert create(client, "hello") == quota
    with call(secured, "small_storage") as client:
        too_big = [{"key": "k", "data": b"x" * 11}]
        assert client.model.upload_state(model_id="linear", name="b", data=too_big) == quota
        fits = [{"key": "k", "data": b"x" * 6}]
        assert (
            "stateId" in client.model.upload_state(model_id="linear", name="c", data=fits)["result"]
        )
        more = [{"key": "k", "data": b"x" * 5}]
        assert client.model.upload_state(model_id="linear", name="d", data=more) == quota
