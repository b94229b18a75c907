"""Helpers of the sandbox attack suite: run one attack of the ``attacker`` model, and time
another client's cheap call while (and after) it runs."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from launcher.client import LauncherClient

#: How long another client's cheap call may take during an attack (generous: shared machine).
SERVED_BOUND = 2.0


def spec(memory: int = 512, disk: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"cpus": 1, "memoryMebibytes": memory}
    if disk is not None:
        body["diskMebibytes"] = disk
    return {"type": "temporaryLauncher", "spec": body}


def attack(client: LauncherClient, what: str, arg: str = "", **spec_kw: Any) -> Any:
    """Run the attack; its JSON report (the job itself must succeed)."""
    params = [{"name": "what", "data": [np.array(what)]}]
    if arg:
        params.append({"name": "arg", "data": [np.array(arg)]})
    res = client.model.create_state(
        model_id="attacker", name=what, params=params, execution_location=spec(**spec_kw)
    )
    assert "success" in res.get("result", {}), res
    state_id = res["result"]["success"]["stateId"]
    data = client.model.get_model_state(model_id="attacker", state_id=state_id)
    return json.loads(data["result"]["data"][0]["data"])


def cheap_call_seconds(address: str) -> float:
    """One GetModels of a fresh client, in seconds (the call must be answered)."""
    with LauncherClient(address) as other:
        start = time.monotonic()
        res = other.model.get_models()
        elapsed = time.monotonic() - start
    assert "result" in res, res
    return elapsed
