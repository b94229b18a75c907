"""``GET /metrics`` moves by exactly the jobs run; the operator log has one INFO line per job
outcome, as text and as JSON; libraries stay quiet at debug unless asked."""

from __future__ import annotations

import json
import re
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess, running_launcher
from tests.support.specs import TEMPORARY


def param(name: str, value: int) -> dict[str, Any]:
    return {"name": name, "data": [np.array(value, dtype=np.int32)]}


def metrics_url(proc: LauncherProcess) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = re.search(r"launcher metrics on (http://\S+/metrics)", proc.log())
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no metrics address in the launcher's output:\n{proc.log()}")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run(client: LauncherClient, model_id: str, *params: dict[str, Any]) -> dict[str, Any]:
    return client.model.create_state(
        model_id=model_id, name="m", params=list(params), execution_location=TEMPORARY
    )


def test_metrics_move_by_exactly_the_jobs_run_and_one_json_line_per_job() -> None:
    with tempfile.TemporaryDirectory(prefix="lt-") as root:
        args = ["--metrics", "127.0.0.1:0", "--log-format", "json"]
        with running_launcher(Path(root), args) as proc:
            url = metrics_url(proc)
            with LauncherClient(proc.address) as client:
                before = scrape(url)
                ok = run(client, "chatty", param("tag", 1))
                bad = run(client, "chatty", param("tag", 2), param("mode", 3))
                invalid = run(client, "bad_toml")
                refused = run(client, "no-such-model")
                after = scrape(url)
            assert "success" in ok["result"] and "failed" in bad["result"], (ok, bad)
            assert invalid["result"]["failed"]["error"]["code"] == "invalid_executable_file"
            assert refused == {"error": {"code": "model_not_found"}}

            def moved(name: str, **labels: str) -> float:
                return value(after, name, **labels) - value(before, name, **labels)

            temporary = {"launcher": "temporary"}
            assert moved("launcher_jobs_total", outcome="success", **temporary) == 1
            assert moved("launcher_jobs_total", outcome="exception", **temporary) == 1
            assert moved("launcher_jobs_total", outcome="invalid_executable_file", **temporary) == 1
            assert moved("launcher_job_duration_seconds_count", **temporary) == 3
            for phase in ("createLauncher", "codeStartup", "createState"):
                # the invalid model ran no phase
                assert moved("launcher_phase_duration_seconds_count", phase=phase, **temporary) == 2
            assert moved("launcher_refused_requests_total", code="model_not_found") == 1
            assert moved("launcher_ingested_bytes_total") > 0
            assert value(after, "launcher_jobs_running") == 0
            assert value(after, "launcher_jobs_queued") == 0
            assert value(after, "launcher_sandbox_layer", layer="seccomp") in (0.0, 1.0)
            assert any(name == "launcher_build_info" for name, _ in after)
            assert ("launcher_stored_bytes", (("tenant", "default"),)) in after
            # no unbounded labels: no state or model id anywhere
            ids = {ok["result"]["success"]["stateId"], "chatty"}
            assert not any(v in ids for _, labels in after for _, v in labels)
            # the persisted counter follows the committed state (written just after)
            deadline = time.monotonic() + 10
            while value(scrape(url), "launcher_persisted_bytes_total") < 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            # the operator log: one JSON object per line, one job_ended line per job
            objects = [json.loads(line) for line in proc.log().splitlines() if line[:1] == "{"]
            assert all({"time", "level", "logger", "message"} <= o.keys() for o in objects)
            ended = [o for o in objects if o.get("event") == "job_ended"]
            assert len(ended) == 3
            mine = next(o for o in ended if o["stateId"] == ok["result"]["success"]["stateId"])
            assert mine["level"] == "info" and mine["model"] == "chatty"
            assert mine["outcome"] == "success" and mine["launcher"] == "temporary"
            assert mine["tenant"] == "default"
            assert set(mine["durationsMs"]) == {
                "total",
                "createLauncher",
                "codeStartup",
                "createState",
            }
            refusals = [o for o in objects if o.get("event") == "request_refused"]
            assert [(o["method"], o["code"], o["level"]) for o in refusals] == [
                ("createState", "model_not_found", "info")
            ]
            assert sorted(o["outcome"] for o in ended) == [
                "exception",
                "invalid_executable_file",
                "success",
            ]


def test_one_text_info_line_per_job_and_no_library_noise_at_debug() -> None:
    with tempfile.TemporaryDirectory(prefix="lt-") as root:
        with running_launcher(Path(root), ["--log-level", "debug"]) as proc:
            with LauncherClient(proc.address) as client:
                res = run(client, "chatty", param("tag", 3))
            state_id = res["result"]["success"]["stateId"]
            deadline = time.monotonic() + 5  # written just after the answer
            while not (lines := [x for x in proc.log().splitlines() if f"job {state_id} " in x]):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.2)  # and only once
            lines = [x for x in proc.log().splitlines() if f"job {state_id} " in x]
            assert len(lines) == 1, lines
            assert " INFO launcher.jobs: " in lines[0]
            for part in ("model=chatty", "launcher=temporary", "outcome=success", "total="):
                assert part in lines[0], lines[0]
            noisy = [x for x in proc.log().splitlines() if " DEBUG " in x or " INFO " in x]
            assert not [x for x in noisy if not re.search(r" (DEBUG|INFO) (launcher|runtime)", x)]


def test_a_public_or_malformed_metrics_address_is_refused_clearly(tmp_path: Path) -> None:
    import subprocess
    import sys

    base = [sys.executable, "-m", "launcher.cli", "serve", "--root", str(tmp_path / "r")]
    base += ["--listen", f"unix://{tmp_path}/s.sock"]
    public = subprocess.run(
        [*base, "--metrics", "0.0.0.0:9"], capture_output=True, text=True, timeout=60
    )
    assert public.returncode != 0
    assert "refusing to serve metrics on 0.0.0.0:9: not a loopback address" in public.stderr
    malformed = subprocess.run(
        [*base, "--metrics", "nonsense"], capture_output=True, text=True, timeout=60
    )
    assert malformed.returncode == 2
    assert "--metrics: expected HOST:PORT" in malformed.stderr
