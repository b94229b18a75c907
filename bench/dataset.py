"""Measurement 9: dataset upload (``create_dataset`` + ``add_entries``) throughput.

1 GiB of f32 tensors of 4 MiB each (the same array sent over and over, so the client holds
only 4 MiB), against a raw gRPC client-streaming upload of the same bytes in 1 MiB chunks to
a bare server process (``bench.rawgrpc``). The launcher's RSS growth is recorded beside.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import RssPeak, Settings, median, running_launcher
from bench.rawgrpc import raw_upload_times
from bench.report import Figure, Target
from launcher.client import LauncherClient

GB = 1e9
MIB = 1 << 20
TENSOR_MIB = 4
KEY = {"name": "x", "required": True, "rules": {"shape": [-1], "allowedTypes": ["f32"]}}


def _upload(client: LauncherClient, tensor: np.ndarray, count: int) -> float:
    created = client.dataset.create_dataset(name="bench", description="bench", keys=[KEY])
    if "result" not in created:
        raise RuntimeError(f"create_dataset failed: {created}")
    dataset_id = created["result"]["datasetId"]
    start = time.perf_counter()
    added = client.dataset.add_entries(
        dataset_id=dataset_id, keys=[{"key": "x", "data": [tensor] * count}]
    )
    elapsed = time.perf_counter() - start
    if "result" not in added:
        raise RuntimeError(f"add_entries failed: {added}")
    client.dataset.delete_dataset(dataset_id=dataset_id)
    return elapsed


def measure(settings: Settings) -> list[Figure]:
    total_mib = settings.count(1024, 64)
    rounds = settings.count(2, 1)
    tensor = np.ones(TENSOR_MIB * MIB // 4, dtype=np.float32)
    count = total_mib // TENSOR_MIB
    raw = raw_upload_times(tensor.data.cast("B"), count, rounds)
    with running_launcher() as launcher, LauncherClient(launcher.address, timeout=600) as client:
        _upload(client, tensor[:16], 1)
        with RssPeak(launcher.pid) as rss:
            times = [_upload(client, tensor, count) for _ in range(rounds)]
    total = total_mib * MIB
    return [
        Figure(
            f"9. dataset upload, {total_mib} MiB in {TENSOR_MIB} MiB tensors",
            total / median(times) / GB,
            "GB/s",
            "raw gRPC upload",
            total / median(raw) / GB,
            Target("ratio", ">=", 0.5),
            {"seconds": times, "raw_seconds": raw, "launcher_rss_growth_mib": rss.growth / MIB},
        )
    ]
