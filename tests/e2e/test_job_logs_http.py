"""``Model/getStateLogs`` on the platform HTTP API (this project's method) and ``GET /metrics``
on the same listener."""

from __future__ import annotations

import tempfile
from pathlib import Path

from launcher.client import LauncherClient
from tests.support.platform_http import Raw, http_launcher
from tests.support.specs import TEMPORARY


def test_get_state_logs_and_metrics_share_the_http_listener() -> None:
    with tempfile.TemporaryDirectory(prefix="lt-") as root:
        with http_launcher(Path(root)) as (proc, base):
            with LauncherClient(proc.address) as client:
                res = client.model.create_state(
                    model_id="chatty", name="h", params=[], execution_location=TEMPORARY
                )
            state_id = res["result"]["success"]["stateId"]
            raw = Raw(base)
            answer, _ = raw.call(
                "Model", "getStateLogs", {"modelId": "chatty", "stateId": state_id}
            )
            lines = answer["result"]["lines"]
            assert answer["result"]["truncated"] is False
            assert [x["text"] for x in lines if x["stream"] == "stdout"] == [
                "chatty: imported",
                "out 0",
            ]
            assert lines[-1]["stream"] == "launcher" and lines[-1]["text"].startswith("outcome")
            missing, _ = raw.call(
                "Model", "getStateLogs", {"modelId": "chatty", "stateId": "s-" + "c" * 20}
            )
            assert missing == {"error": {"code": "state_not_found"}}
            bad, _ = raw.call("Model", "getStateLogs", {"modelId": "chatty"})
            assert bad["error"]["code"] == "invalid_parameter"
            follow, _ = raw.call(
                "Model", "getStateLogs", {"modelId": "chatty", "stateId": state_id, "follow": True}
            )
            assert follow["error"]["code"] == "invalid_parameter"
            status, headers, body = raw.request("GET", "/metrics")
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            assert b'launcher_jobs_total{launcher="temporary",outcome="success"} 1.0' in body
