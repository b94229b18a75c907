"""Operator caps and fairness over a real launcher: one tenant's backlog of endless jobs
does not keep another tenant's job waiting (per-tenant running cap, round-robin queue), and
``--max-phase-seconds`` caps the limits a ``model.toml`` asks for."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY
from tests.support.tenants import LatencyProbe, client, launcher_with_keys

#: A whole createState of a small model (sandbox start included) on a loaded machine.
JOB_BOUND = 20.0


@pytest.fixture(scope="module")
def capped() -> Iterator[tuple[LauncherProcess, dict[str, str]]]:
    specs: dict[str, dict[str, Any]] = {"hog": {}, "polite": {}}
    args = ["--max-concurrent-jobs", "2", "--max-queued-jobs", "8"]  # 1 job per tenant
    args += ["--max-phase-seconds", "code_startup=20,create_state=1"]
    with launcher_with_keys(specs, args) as running:
        yield running


def creating(c: Any, model_id: str) -> list[dict[str, Any]]:
    return list(c.model.get_creating_states(model_id=model_id)["result"]["states"])


def test_a_tenants_backlog_of_endless_jobs_does_not_starve_another(capped: Any) -> None:
    proc, keys = capped
    results: list[dict[str, Any]] = []
    with client(proc, keys["hog"]) as hog, client(proc, keys["polite"]) as polite:

        def endless() -> None:
            results.append(
                hog.model.create_state(
                    model_id="sleeper", name="hog", params=[], execution_location=TEMPORARY
                )
            )

        threads = [threading.Thread(target=endless) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(creating(hog, "sleeper")) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with LatencyProbe(lambda: polite.model.get_models()) as probe:
            start = time.monotonic()
            res = polite.model.create_state(
                model_id="hello", name="served", params=[], execution_location=TEMPORARY
            )
            took = time.monotonic() - start
        probe.check()
        assert "success" in res["result"], res
        assert took < JOB_BOUND, took
        # the hog's jobs are all still there (one running, three queued): nothing was lost
        hogs = creating(hog, "sleeper")
        assert len(hogs) == 4
        assert creating(polite, "sleeper") == []  # and they are its own
        for state in hogs:
            cancel = hog.model.cancel_create_state(model_id="sleeper", state_id=state["id"])
            assert cancel == {"result": {}}
        for t in threads:
            t.join(60)
    assert [r["result"]["failed"]["error"]["code"] for r in results] == ["cancelled"] * 4


def test_max_phase_seconds_caps_what_model_toml_asks_for(capped: Any) -> None:
    proc, keys = capped
    with client(proc, keys["polite"]) as c:
        model = c.model.get_models(filter={"ids": ["greedy_limits"]})["result"]["models"][0]
        assert model["maxDurationsSeconds"] == {"codeStartup": 20, "createState": 1}
        res = c.model.create_state(
            model_id="greedy_limits", name="capped", params=[], execution_location=TEMPORARY
        )
        failed = res["result"]["failed"]
        assert failed["error"] == {"code": "max_duration_exceeded", "at": "createState"}, res
        assert failed["durations"]["createState"] < 10_000
    assert "capped to 1 s by --max-phase-seconds" in proc.log()


@pytest.mark.parametrize(
    "flag",
    ["create_state=0", "create_state=abc", "runtime=5", "create_state=1,create_state=2", "x"],
)
def test_a_bad_phase_cap_is_refused_at_start(flag: str, tmp_path: Any) -> None:
    cmd = [sys.executable, "-m", "launcher", "serve", "--root", str(tmp_path / "r")]
    done = subprocess.run(
        [*cmd, "--max-phase-seconds", flag], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done
    assert "--max-phase-seconds" in done.stderr
    assert not (tmp_path / "r").exists()  # nothing was made
