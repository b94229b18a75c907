"""The platform HTTP API runs the same tenant check as gRPC: another tenant's dataset is
absent from its lists and ``access_denied`` by id, over HTTP as over gRPC."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.support.platform_http import Raw, http_launcher
from tests.support.tenants import client, make_keys


def test_http_callers_see_only_their_tenants_datasets() -> None:
    with tempfile.TemporaryDirectory(prefix="lth-") as root:
        keys = make_keys(Path(root), {"alice": {}, "bob": {}, "ops": {"admin": True}})
        with http_launcher(Path(root)) as (proc, base):
            with client(proc, keys["alice"]) as alice:
                x = {"name": "x", "required": True, "rules": {"allowedTypes": ["u8"]}}
                made = alice.dataset.create_dataset(name="a", description="", keys=[x])
                dataset_id = made["result"]["datasetId"]
            bob, mine, ops = (Raw(base, keys[n]) for n in ("bob", "alice", "ops"))
            for caller, sees in ((bob, False), (mine, True), (ops, True)):
                listed, _ = caller.call("Dataset", "getDatasets", {})
                ids = {d["id"] for d in listed["result"]["datasets"]}
                assert (dataset_id in ids) is sees
            answer, _ = bob.call("Dataset", "deleteDataset", {"datasetId": dataset_id})
            assert answer == {"error": {"code": "access_denied"}}
            listed, _ = mine.call("Dataset", "getDatasets", {})  # still there
            assert dataset_id in {d["id"] for d in listed["result"]["datasets"]}
