"""A 1 GiB dataset param: added in one streamed add_entries, read by a job in batches, with
the launcher's memory bounded throughout and every entry's bytes checked by the model."""

from __future__ import annotations

import time
import zlib

import numpy as np

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.memwatch import peak_rss

ENTRIES = 256
ELEMENTS = 1 << 20  # 4 MiB of f32 per entry: 1 GiB in all
MAX_GROWTH_MIB = 64
JOB = {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 1024}}


def test_one_gib_dataset_param_is_added_and_read_with_bounded_launcher_memory(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    # Entry i is base[i : i + ELEMENTS]: distinct entries, all views of one 4 MiB buffer, so
    # the test itself never holds the 1 GiB either.
    base = np.arange(ELEMENTS + ENTRIES, dtype=np.float32)
    rows = [base[i : i + ELEMENTS] for i in range(ENTRIES)]
    res = client.dataset.create_dataset(
        name="big",
        description="256 x 4 MiB",
        keys=[{"name": "x", "required": True, "rules": {"shape": [ELEMENTS]}}],
    )
    dataset_id = res["result"]["datasetId"]
    try:
        started = time.monotonic()
        with peak_rss(launcher.pid) as add_rss:
            added = client.dataset.add_entries(
                dataset_id=dataset_id, keys=[{"key": "x", "data": rows}]
            )
        add_seconds = time.monotonic() - started
        assert "result" in added, added
        info = client.dataset.get_datasets(filter={"ids": [dataset_id]})["result"]["datasets"][0]
        assert info["entries"] == ENTRIES and info["byteSize"] > ENTRIES * ELEMENTS * 4

        started = time.monotonic()
        with peak_rss(launcher.pid) as job_rss:
            res = client.model.create_state(
                model_id="dataset_checksum",
                name="big",
                params=[
                    {
                        "name": "x",
                        "data": {"type": "dataset", "datasetId": dataset_id, "datasetKey": "x"},
                    }
                ],
                execution_location=JOB,
            )
        job_seconds = time.monotonic() - started
        assert "success" in res.get("result", {}), res
        state = client.model.get_model_state(
            model_id="dataset_checksum", state_id=res["result"]["success"]["stateId"]
        )
        keys = {d["key"]: d["data"] for d in state["result"]["data"]}
    finally:
        client.dataset.delete_dataset(dataset_id=dataset_id)

    assert np.frombuffer(keys["count"], np.int64).tolist() == [ENTRIES]
    assert np.frombuffer(keys["crc"], np.uint32).tolist() == [zlib.crc32(r) for r in rows]
    assert np.frombuffer(keys["sum"], np.float64).tolist() == [
        float(r.sum(dtype=np.float64)) for r in rows
    ]
    print(
        f"1 GiB dataset: add {add_seconds:.1f} s (+{add_rss.growth_mib:.0f} MiB), "
        f"job {job_seconds:.1f} s (+{job_rss.growth_mib:.0f} MiB)"
    )
    assert add_rss.growth_mib < MAX_GROWTH_MIB, f"add grew {add_rss.growth_mib:.0f} MiB"
    assert job_rss.growth_mib < MAX_GROWTH_MIB, f"job grew {job_rss.growth_mib:.0f} MiB"
