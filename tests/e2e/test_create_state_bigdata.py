"""Big data through the launcher with its memory bounded: 1 GiB inline, 3 x 200 MiB of state."""

from __future__ import annotations

import numpy as np

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.memwatch import peak_rss
from tests.support.specs import TEMPORARY

BIG = {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 3072}}


def test_one_gib_inline_param_streams_with_bounded_launcher_memory(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    x = np.ones((1 << 28,), dtype=np.float32)  # 1 GiB in one tensor
    y = np.full((1 << 20,), 2.0, dtype=np.float32)
    with peak_rss(launcher.pid) as rss:
        res = client.model.create_state(
            model_id="sum_param",
            name="big",
            params=[{"name": "x", "data": [x, y]}],
            execution_location=BIG,
        )
    state_id = res["result"]["success"]["stateId"]
    assert rss.growth_mib < 64, f"launcher grew {rss.growth_mib:.0f} MiB"
    data = client.model.get_model_state(model_id="sum_param", state_id=state_id)
    keys = {d["key"]: d["data"] for d in data["result"]["data"]}
    assert np.frombuffer(keys["count"], np.int64)[0] == x.size + y.size
    assert np.frombuffer(keys["sum"], np.float64)[0] == float(x.size) + 2.0 * y.size


def test_big_state_keys_are_streamed_to_disk_with_bounded_memory(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    with peak_rss(launcher.pid) as rss:
        res = client.model.create_state(
            model_id="big_state",
            name="big",
            params=[{"name": "mib", "data": [np.array(200, dtype=np.int64)]}],
            execution_location=BIG,
        )
    state_id = res["result"]["success"]["stateId"]
    assert rss.growth_mib < 64, f"launcher grew {rss.growth_mib:.0f} MiB"
    model = client.model.get_models(filter={"ids": ["big_state"]})["result"]["models"][0]
    state = next(s for s in model["states"] if s["id"] == state_id)
    assert state["state"] == [{"key": k, "byteSize": 200 << 20} for k in ("a", "b", "c")]
    files = sorted((launcher.root / "states" / state_id).iterdir())
    assert [f.stat().st_size for f in files] == [200 << 20] * 3


def test_small_job_after_big_ones_still_fast(client: LauncherClient) -> None:
    res = client.model.create_state(
        model_id="hello", name="after", params=[], execution_location=TEMPORARY
    )
    assert "success" in res["result"]
