"""GPU accounting with a stand-in inventory (this machine has no GPU): exclusive assignment
per job through CUDA_VISIBLE_DEVICES, waiting for busy GPUs, refusing impossible requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher.client import LauncherClient
from tests.support.launcher_proc import running_launcher


@pytest.fixture(scope="module")
def gpu_client(tmp_path_factory) -> Iterator[LauncherClient]:
    root = Path(tmp_path_factory.mktemp("gpu", numbered=True))
    with running_launcher(root, ["--fake-gpus", "0:NVIDIA H100,1:NVIDIA H100"]) as proc:
        with LauncherClient(proc.address) as client:
            yield client


def location(count: int, model: str = "H100") -> dict:
    spec = {"cpus": 1, "memoryMebibytes": 512, "gpus": {"model": model, "count": count}}
    return {"type": "temporaryLauncher", "spec": spec}


def gpus_of(client: LauncherClient, res: dict) -> str:
    state_id = res["result"]["success"]["stateId"]
    data = client.model.get_model_state(model_id="gpu_env", state_id=state_id)
    return data["result"]["data"][0]["data"].decode()


def run(client: LauncherClient, count: int, hold: float) -> dict:
    return client.model.create_state(
        model_id="gpu_env",
        name="g",
        params=[{"name": "hold", "data": [np.array(hold)]}],
        execution_location=location(count),
    )


def test_concurrent_jobs_get_different_gpus_and_a_third_waits(gpu_client: LauncherClient) -> None:
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda: results.append(run(gpu_client, 1, 1.5))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assigned = sorted(gpus_of(gpu_client, r) for r in results)
    assert assigned in (["0", "0", "1"], ["0", "1", "1"])
    totals = sorted(r["result"]["success"]["durations"]["total"] for r in results)
    assert totals[-1] >= 2 * 1500 * 0.9, "the third job waited for a GPU to be free"  # ms


def test_a_job_may_take_every_gpu(gpu_client: LauncherClient) -> None:
    assert gpus_of(gpu_client, run(gpu_client, 2, 0)) == "0,1"


def test_no_gpus_asked_means_none_visible(gpu_client: LauncherClient) -> None:
    res = gpu_client.model.create_state(
        model_id="gpu_env",
        name="g",
        params=[],
        execution_location={
            "type": "temporaryLauncher",
            "spec": {"cpus": 1, "memoryMebibytes": 512},
        },
    )
    assert gpus_of(gpu_client, res) == ""


@pytest.mark.parametrize(("count", "model"), [(3, "H100"), (1, "A100")])
def test_more_gpus_than_the_machine_has_is_invalid_parameter(
    gpu_client: LauncherClient, count: int, model: str
) -> None:
    res = gpu_client.model.create_state(
        model_id="gpu_env", name="g", params=[], execution_location=location(count, model)
    )
    err = res["error"]
    assert err["code"] == "invalid_parameter"
    assert err["parameterName"] == "executionLocation.spec.gpus"
    assert "this machine has" in err["reason"]
    launcher = gpu_client.persistent_launcher.create_persistent_launcher(
        name="p", spec=location(count, model)["spec"]
    )
    assert launcher["error"]["parameterName"] == "spec.gpus"
