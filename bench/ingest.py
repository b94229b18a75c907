"""Measurements 6-8: inline param ingest, state persistence, and the launcher's RSS growth.

6. A 256 MiB f32 tensor sent inline to a model that takes it as a numpy array, on a warm
   persistent launcher, against a raw gRPC client-streaming upload of the same bytes in
   1 MiB chunks to a bare server process (``bench.rawgrpc``), the two taking turns round by
   round; 6b is the upload alone (the client's seconds less the launcher's job total, which
   starts once the upload ended).
7. Three 96 MiB state keys (the test model ``big_state``) committed, against write + fsync of
   the same bytes to files in the same data root.
8. The launcher process's peak RSS growth over 6 and 7, sampled every 10 ms.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import INGEST_MODEL, RssPeak, Settings, median, running_launcher
from bench.create_state import persistent_location
from bench.rawgrpc import raw_server, timed_upload
from bench.report import Figure, Target
from launcher.client import LauncherClient

GB = 1e9
MIB = 1 << 20
STATE_KEYS = 3
BIG_STATE_MODEL = "big_state"  # from tests/models/e2e: three keys of `mib` MiB each


def _success(response: dict[str, Any]) -> dict[str, Any]:
    success = response.get("result", {}).get("success")
    if success is None:
        raise RuntimeError(f"createState did not succeed: {response}")
    return success


def _ingest(
    client: LauncherClient, location: dict[str, Any], array: np.ndarray
) -> tuple[float, dict[str, float]]:
    """(client-observed seconds, the launcher's durations) of one ingest job."""
    start = time.perf_counter()
    response = client.model.create_state(
        model_id=INGEST_MODEL,
        name="bench-ingest",
        params=[{"name": "x", "data": [array]}],
        execution_location=location,
    )
    elapsed = time.perf_counter() - start
    _success(response)
    got = client.model.get_model_state(
        model_id=INGEST_MODEL, state_id=_success(response)["stateId"], keys=["bytes"]
    )
    if got["result"]["data"][0]["data"] != str(array.nbytes).encode():
        raise RuntimeError(f"the model saw other than {array.nbytes} bytes: {got}")
    return elapsed, _success(response)["durations"]


def _persist(
    client: LauncherClient, location: dict[str, Any], mib: int
) -> tuple[float, dict[str, float]]:
    """(client-observed seconds, the launcher's durations) of one big_state job."""
    start = time.perf_counter()
    response = client.model.create_state(
        model_id=BIG_STATE_MODEL,
        name="bench-state",
        params=[{"name": "mib", "data": [np.array([mib], dtype=np.int64)]}],
        execution_location=location,
    )
    elapsed = time.perf_counter() - start
    return elapsed, _success(response)["durations"]


def _write_fsync(folder: Path, block: bytes) -> float:
    """Seconds to write ``block`` to STATE_KEYS new files, each fsynced, and the folder too."""
    start = time.perf_counter()
    for key in range(STATE_KEYS):
        fd = os.open(folder / f"ref-{key}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return time.perf_counter() - start


def _reference_persist(root: Path, mib: int, rounds: int) -> list[float]:
    block = b"\x07" * (mib * MIB)
    times = []
    for i in range(rounds):
        folder = root / f"bench-ref-{i}"
        folder.mkdir()
        times.append(_write_fsync(folder, block))
        for key in range(STATE_KEYS):
            (folder / f"ref-{key}").unlink()
        folder.rmdir()
    return times


def measure(settings: Settings) -> list[Figure]:
    ingest_mib = settings.count(256, 32)
    state_mib = settings.count(96, 8)
    rounds = settings.count(5, 1)  # persistence rounds (its reference varies a lot by turn)
    ingest_rounds = settings.count(5, 1)
    array = np.ones(ingest_mib * MIB // 4, dtype=np.float32)
    buffer = array.data.cast("B")
    raw: list[float] = []
    with (
        raw_server() as raw_address,
        running_launcher() as launcher,
        LauncherClient(launcher.address, timeout=300) as client,
    ):
        location = persistent_location(client)
        _ingest(client, location, array[:1024])  # starts the zygote and a session
        _persist(client, location, 1)
        # One untimed full-size upload to each, then each timed round of the raw upload right
        # before one of the launcher's, so that both meet the machine in the same state (with
        # the raw side timed alone before the launcher started, its figure was up to twice as
        # good as when it runs beside an idle launcher: memory the machine had to find again).
        timed_upload(raw_address, buffer)
        _ingest(client, location, array)
        with RssPeak(launcher.pid) as ingest_rss:
            ingest_runs = []
            for _ in range(ingest_rounds):
                raw.append(timed_upload(raw_address, buffer))
                ingest_runs.append(_ingest(client, location, array))
        # One untimed full-size round of each, then each timed round of the reference (write +
        # fsync) right before one of the launcher's: the page cache and the machine's memory
        # are in the same state for both (on a fresh virtual machine, the first writes into
        # memory never used before cost several times the later ones, whoever makes them).
        _reference_persist(launcher.root, state_mib, 1)
        _persist(client, location, state_mib)
        persist_runs, reference_persist = [], []
        with RssPeak(launcher.pid) as state_rss:
            for _ in range(rounds):
                reference_persist += _reference_persist(launcher.root, state_mib, 1)
                persist_runs.append(_persist(client, location, state_mib))
    ingest = [seconds for seconds, _ in ingest_runs]
    # The launcher's total starts once the request is accepted (after the upload): the rest of
    # the client's seconds is the upload into the launcher (to the durations' millisecond).
    uploads = [seconds - d["total"] / 1000 for seconds, d in ingest_runs]
    persist = [seconds for seconds, _ in persist_runs]
    ingest_bytes = array.nbytes
    state_bytes = STATE_KEYS * state_mib * MIB
    growth = max(ingest_rss.growth, state_rss.growth) / MIB
    return [
        Figure(
            f"6. inline param ingest, {ingest_mib} MiB",
            ingest_bytes / median(ingest) / GB,
            "GB/s",
            "raw gRPC upload",
            ingest_bytes / median(raw) / GB,
            Target("ratio", ">=", 0.5),
            {
                "seconds": ingest,
                "raw_seconds": raw,
                "location": "persistent",
                # The launcher's total starts once the request is accepted, i.e. after the
                # upload: client seconds - total/1000 = the upload into the launcher (durations
                # are integer milliseconds).
                "launcher_durations": [d for _, d in ingest_runs],
            },
        ),
        Figure(
            f"6b. inline param upload alone, {ingest_mib} MiB",
            ingest_bytes / median(uploads) / GB,
            "GB/s",
            "raw gRPC upload",
            ingest_bytes / median(raw) / GB,
            Target("ratio", ">=", 0.8),
            {"seconds": uploads, "raw_seconds": raw},
        ),
        Figure(
            f"7. state persistence, {STATE_KEYS} x {state_mib} MiB",
            state_bytes / median(persist) / GB,
            "GB/s",
            "write+fsync",
            state_bytes / median(reference_persist) / GB,
            Target("ratio", ">=", 0.7),
            {
                "seconds": persist,
                "reference_seconds": reference_persist,
                "launcher_durations": [d for _, d in persist_runs],
            },
        ),
        Figure(
            "8. launcher peak RSS growth during 6 and 7",
            growth,
            "MiB",
            "largest payload",
            max(ingest_bytes, state_bytes) / MIB,
            Target("value", "<=", 64),
            {
                "ingest_growth_mib": ingest_rss.growth / MIB,
                "state_growth_mib": state_rss.growth / MIB,
                "baseline_mib": ingest_rss.baseline / MIB,
                "samples": ingest_rss.samples + state_rss.samples,
            },
        ),
    ]
