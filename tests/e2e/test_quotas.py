"""Stored-bytes quotas per tenant over a real launcher: bytes are reserved before they are
written and charged while they stream, so a tenant never ends above its quota (also under
concurrent uploads), what went over is refused with ``quota_exceeded`` and kept nowhere,
and other tenants are served meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY
from tests.support.tenants import LatencyProbe, client, launcher_with_keys

QUOTA = "quota_exceeded"
MIB = 1 << 20


@pytest.fixture(scope="module")
def quotas() -> Iterator[tuple[LauncherProcess, dict[str, str]]]:
    specs: dict[str, dict[str, Any]] = {
        "uploader": {"max_stored_bytes": 1_000_000},
        "worker": {"max_stored_bytes": 2 * MIB},
        "fresh": {"max_stored_bytes": 100},
        "datasets": {"max_stored_bytes": 1000},
        "inline": {"max_stored_bytes": 1000},
        "snap": {"max_stored_bytes": 1000},
        "bystander": {},
    }
    with launcher_with_keys(specs) as running:
        yield running


def make(quotas: Any, name: str) -> LauncherClient:
    proc, keys = quotas
    return client(proc, keys[name])


def code(res: dict[str, Any]) -> str | None:
    return res.get("error", {}).get("code")


def stored_state_bytes(c: LauncherClient) -> tuple[int, int]:
    """(bytes, states) of every state the caller's tenant sees, over all models."""
    total = states = 0
    for model in c.model.get_models(limit=1000)["result"]["models"]:
        for state in model["states"]:
            states += 1
            total += sum(k["byteSize"] for k in state["state"])
    return total, states


def test_concurrent_uploads_never_end_above_the_quota(quotas: Any) -> None:
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def upload(i: int) -> None:
        with make(quotas, "uploader") as c:
            res = c.model.upload_state(
                model_id="counter", name=f"u{i}", data=[{"key": "k", "data": bytes(300_000)}]
            )
        with lock:
            results.append(res)

    with make(quotas, "bystander") as other:
        with LatencyProbe(lambda: other.model.get_models()) as probe:
            threads = [threading.Thread(target=upload, args=(i,)) for i in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        probe.check()
    ok = [r for r in results if "result" in r]
    refused = [r for r in results if code(r) == QUOTA]
    assert len(ok) + len(refused) == 6, results
    assert 1 <= len(ok) <= 3, results
    with make(quotas, "uploader") as c:
        total, states = stored_state_bytes(c)
    assert total <= 1_000_000
    assert states == len(ok)  # nothing of a refused upload was kept
    assert total == 300_000 * len(ok)


def test_a_worker_state_over_the_quota_is_stopped_and_not_kept(quotas: Any) -> None:
    mib = [{"name": "mib", "data": [np.array(1, dtype=np.int64)]}]
    with make(quotas, "worker") as c, make(quotas, "bystander") as other:
        before = stored_state_bytes(c)
        with LatencyProbe(lambda: other.dataset.get_datasets()) as probe:
            res = c.model.create_state(
                model_id="big_state", name="3 MiB", params=mib, execution_location=TEMPORARY
            )
            # another tenant's job runs meanwhile, unaffected
            theirs = other.model.create_state(
                model_id="big_state", name="ok", params=mib, execution_location=TEMPORARY
            )
        probe.check()
        failed = res["result"]["failed"]["error"]
        assert failed["code"] == QUOTA, res
        assert stored_state_bytes(c) == before
        assert "success" in theirs["result"], theirs


def test_a_fresh_tenant_may_store_a_small_state_whatever_others_store(quotas: Any) -> None:
    with make(quotas, "bystander") as other:
        big = [{"key": "k", "data": bytes(4096)}]
        assert "result" in other.model.upload_state(model_id="hello", name="big", data=big)
    with make(quotas, "fresh") as c:
        res = c.model.create_state(
            model_id="hello", name="small", params=[], execution_location=TEMPORARY
        )
        assert "success" in res["result"], res
        empty = c.model.upload_state(
            model_id="hello", name="empty", data=[{"key": "k", "data": b""}]
        )
        assert "result" in empty, empty


def test_dataset_entries_count_towards_the_quota(quotas: Any) -> None:
    with make(quotas, "datasets") as c:
        res = c.dataset.create_dataset(
            name="q",
            description="",
            keys=[{"name": "x", "required": True, "rules": {"allowedTypes": ["u8"]}}],
        )
        dataset_id = res["result"]["datasetId"]
        too_many = [{"key": "x", "data": [np.zeros(2000, dtype=np.uint8)]}]
        assert code(c.dataset.add_entries(dataset_id=dataset_id, keys=too_many)) == QUOTA
        info = c.dataset.get_datasets(filter={"ids": [dataset_id]})["result"]["datasets"][0]
        assert info["entries"] == 0 and info["byteSize"] == 0
        fits = [{"key": "x", "data": [np.zeros(100, dtype=np.uint8)]}]
        assert "result" in c.dataset.add_entries(dataset_id=dataset_id, keys=fits)
        # a state that would take the tenant over (datasets count too) is refused
        state = [{"key": "k", "data": bytes(950)}]
        assert code(c.model.upload_state(model_id="counter", name="s", data=state)) == QUOTA


def test_spooled_inline_params_count_towards_the_quota(quotas: Any) -> None:
    with make(quotas, "inline") as c:
        big = [{"name": "x", "data": [np.zeros(4000, dtype=np.uint8)]}]
        res = c.model.create_state(
            model_id="echo", name="big", params=big, execution_location=TEMPORARY
        )
        assert code(res) == QUOTA, res
        assert stored_state_bytes(c) == (0, 0)


def test_snapshots_count_towards_the_quota(quotas: Any) -> None:
    with make(quotas, "snap") as c:
        up = c.model.upload_state(
            model_id="typed", name="s", data=[{"key": "k", "data": bytes(400)}]
        )
        assert "result" in up, up
        assert "result" in c.model.snapshot_model(model_id="typed", name="first")  # 800 stored
        assert code(c.model.snapshot_model(model_id="typed", name="second")) == QUOTA  # 1200
        model = c.model.get_models(filter={"ids": ["typed"]})["result"]["models"][0]
        assert [s["name"] for s in model["snapshots"]] == ["first"]
