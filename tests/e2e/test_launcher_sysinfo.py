"""get_sysinfo of a persistent launcher: its own workers' usage (their shared cgroup), sampled
from its creation, not the machine's."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from launcher.client import LauncherClient


def param(name: str, value: float) -> dict[str, Any]:
    return {"name": name, "data": [np.array(value, dtype=np.float64)]}


def new_launcher(client: LauncherClient, name: str) -> str:
    res = client.persistent_launcher.create_persistent_launcher(
        name=name, spec={"cpus": 1, "memoryMebibytes": 1024}
    )
    return res["result"]["persistentLauncherId"]


def samples(client: LauncherClient, launcher_id: str) -> list[dict[str, Any]]:
    res = client.persistent_launcher.get_sysinfo(persistent_launcher_id=launcher_id)
    assert "result" in res, res
    return res["result"]["sysinfo"]


def test_each_launcher_reports_its_own_workers_from_its_creation(client: LauncherClient) -> None:
    before = int(time.time() * 1000)
    busy, idle = new_launcher(client, "busy"), new_launcher(client, "idle")
    first = samples(client, busy)[0]
    assert before - 1000 <= first["timestamp"] <= int(time.time() * 1000)  # from its creation
    done: list[dict[str, Any]] = []
    job = threading.Thread(
        target=lambda: done.append(
            client.model.create_state(
                model_id="hold_memory",
                name="held",
                params=[param("mib", 200), param("seconds", 4)],
                execution_location={"type": "persistentLauncher", "persistentLauncherId": busy},
            )
        )
    )
    job.start()
    peak = 0
    deadline = time.monotonic() + 30
    while job.is_alive() and time.monotonic() < deadline:  # bounded in time
        peak = max(peak, samples(client, busy)[-1]["memory"])
        if peak >= 200 << 20:
            break
        time.sleep(0.2)
    quiet = samples(client, idle)[-1]
    job.join(60)
    assert "success" in done[0]["result"], done
    assert peak >= 200 << 20, peak  # the busy launcher's worker holds 200 MiB
    assert quiet["memory"] < 16 << 20, quiet  # the idle one has no worker: not the machine's
    assert quiet["cpus"] == 0
    # bounded: one sample per call or interval, never more than the window
    assert len(samples(client, busy)) <= 720
