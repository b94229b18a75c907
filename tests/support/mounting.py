"""Helpers for tests that mount one model's files and state into another's job."""

from __future__ import annotations

import uuid

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY


def new_model(launcher: LauncherProcess, main_py: str = "model = {}\n") -> str:
    """A fresh model folder of the running launcher (picked up per request)."""
    model_id = f"m-{uuid.uuid4().hex[:10]}"
    folder = launcher.root / "models" / model_id
    folder.mkdir()
    (folder / "main.py").write_text(main_py)
    (folder / "weights.bin").write_bytes(b"\x01\x02\x03")
    return model_id


def upload(client: LauncherClient, model_id: str, **keys: bytes) -> str:
    res = client.model.upload_state(
        model_id=model_id, name="up", data=[{"key": k, "data": v} for k, v in keys.items()]
    )
    return str(res["result"]["stateId"])


def probe(client: LauncherClient, mounts: list[dict[str, str]]) -> dict[str, bytes]:
    """Run mount_probe with ``mounts``; its state as a dict."""
    res = client.model.create_state(
        model_id="mount_probe",
        name="probe",
        params=[],
        execution_location=TEMPORARY,
        mount_models=mounts,
    )
    assert "success" in res.get("result", {}), res
    state_id = res["result"]["success"]["stateId"]
    got = client.model.get_model_state(model_id="mount_probe", state_id=state_id)
    return {item["key"]: item["data"] for item in got["result"]["data"]}


def refused(client: LauncherClient, mounts: list[dict[str, str]]) -> dict:
    res = client.model.create_state(
        model_id="mount_probe",
        name="probe",
        params=[],
        execution_location=TEMPORARY,
        mount_models=mounts,
    )
    assert "error" in res, res
    return dict(res["error"])
