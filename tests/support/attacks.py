"""Helpers of the sandbox attack suite: run one attack of the ``attacker`` model, and time
another client's cheap call while (and after) it runs."""

from __future__ import annotations

import json
import threading
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


class Meanwhile:
    """Another client's GetModels calls, one after another, while the attack runs; ``worst``
    is the slowest (at most ``limit`` calls, each answered)."""

    def __init__(self, address: str, limit: int = 500) -> None:
        self.address = address
        self.limit = limit
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Meanwhile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        with LauncherClient(self.address) as other:
            other.model.get_models()  # connection set-up is not what is measured
            while not self._stop.is_set() and len(self.samples) < self.limit:
                start = time.monotonic()
                res = other.model.get_models()
                self.samples.append(time.monotonic() - start)
                assert "result" in res, res
                self._stop.wait(0.05)

    @property
    def worst(self) -> float:
        return max(self.samples, default=0.0)
