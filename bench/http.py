"""Measurements 11-12: the platform's HTTP API beside gRPC, on one launcher.

11. Warm createState p50 of a trivial model on a persistent launcher through the platform's
    own Python client (PyPI ``decthings-api``, HTTP), against the same through this project's
    gRPC client, interleaved on the same launcher.
12. A 256 MiB f32 tensor sent inline over HTTP (the body built once, posted with a plain HTTP
    client, so the figure is the launcher's, not the client's serialisation), against a raw
    gRPC client-streaming upload of the same bytes to a bare server (``bench.rawgrpc``), the
    two taking turns round by round as in 6; 12b is the upload alone (the client's seconds
    less the launcher's job total), which should reach raw gRPC streaming.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import numpy as np
from decthings_api import DecthingsClientSync

from bench.common import INGEST_MODEL, TRIVIAL_MODEL, Settings, median, running_launcher
from bench.create_state import Series, persistent_location
from bench.rawgrpc import raw_server, timed_upload
from bench.report import Figure, Target
from launcher.client import LauncherClient
from runtime.tensor import serialize
from tests.support.platform_http import free_port, parse_response, varint

GB = 1e9
MIB = 1 << 20


def _http_job(client: DecthingsClientSync, location: dict[str, Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result, error = client.model.create_state(
        {"modelId": TRIVIAL_MODEL, "name": "bench", "params": [], "executionLocation": location}
    )
    elapsed = time.perf_counter() - start
    if error is not None or "success" not in result:
        raise RuntimeError(f"createState over HTTP did not succeed: {result or error}")
    return elapsed, result["success"]["durations"]


def _ingest_body(array: np.ndarray, location: dict[str, Any]) -> bytes:
    blob = serialize(array)
    params = {
        "modelId": INGEST_MODEL,
        "name": "bench-ingest",
        "params": [{"name": "x"}],
        "executionLocation": location,
    }
    raw = json.dumps(params).encode()
    return b"\x01" + varint(len(raw)) + varint(len(blob)) + raw + blob


def _post(port: int, body: bytes) -> tuple[float, dict[str, int]]:
    """(client-observed seconds, the launcher's durations) of one ingest request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        start = time.perf_counter()
        conn.request(
            "POST",
            "/v0/Model/createState",
            body,
            {"Content-Type": "application/octet-stream"},
        )
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    answer, _ = parse_response(data)
    if response.status != 200 or "success" not in answer.get("result", {}):
        raise RuntimeError(f"ingest over HTTP did not succeed: {response.status} {answer}")
    return elapsed, answer["result"]["success"]["durations"]


def _launcher(client: LauncherClient, spec: dict[str, Any]) -> dict[str, Any]:
    created = client.persistent_launcher.create_persistent_launcher(name="bench-http", spec=spec)
    if "result" not in created:
        raise RuntimeError(f"create_persistent_launcher failed: {created}")
    return {
        "type": "persistentLauncher",
        "persistentLauncherId": created["result"]["persistentLauncherId"],
    }


def measure(settings: Settings) -> list[Figure]:
    calls = settings.count(100, 5)
    ingest_mib = settings.count(256, 32)
    rounds = settings.count(5, 1)
    port = free_port()
    array = np.ones(ingest_mib * MIB // 4, dtype=np.float32)
    buffer = array.data.cast("B")
    raw: list[float] = []
    with (
        raw_server() as raw_address,
        running_launcher(["--http", f"127.0.0.1:{port}"]) as launcher,
        LauncherClient(launcher.address, timeout=60) as grpc_client,
    ):
        platform = DecthingsClientSync(http_server_address=f"http://127.0.0.1:{port}/v0")
        location = persistent_location(grpc_client)
        for _ in range(3):  # the zygote and the warm session
            _http_job(platform, location)
        grpc = Series()
        http_times: list[float] = []
        http_durations: list[Any] = []
        for _ in range(calls):  # interleaved: both see the same machine load
            elapsed, durations = _http_job(platform, location)
            http_times.append(elapsed)
            http_durations.append(durations)
            grpc.call(grpc_client, location)
        if not grpc.times:
            raise RuntimeError(f"every gRPC job failed; the first: {grpc.failures[0]}")
        # Its own launcher: the trivial model's warm sessions share the first one's memory.
        ingest_at = _launcher(grpc_client, {"cpus": 1, "memoryMebibytes": 1536})
        body = _ingest_body(array, ingest_at)
        # One full-size request to each first: the first 256 MiB a fresh launcher (and
        # worker) receive land in memory the machine has not touched yet, which on a VM costs
        # several times a warm page (reported as first_seconds). Then by turns, as in 6.
        timed_upload(raw_address, buffer)
        first = _post(port, body)
        runs = []
        for _ in range(rounds):
            raw.append(timed_upload(raw_address, buffer))
            runs.append(_post(port, body))
    ingest = [seconds for seconds, _ in runs]
    uploads = [seconds - d["total"] / 1000 for seconds, d in runs]
    return [
        Figure(
            "11. warm createState p50 over HTTP (platform client)",
            median(http_times) * 1000,
            "ms",
            "same over gRPC",
            median(grpc.times) * 1000,
            Target("ratio", "<=", 2),
            {"calls": calls, "http_seconds": http_times, "grpc": grpc.detail()},
            len(grpc.failures),
        ),
        Figure(
            f"12. inline param ingest over HTTP, {ingest_mib} MiB",
            array.nbytes / median(ingest) / GB,
            "GB/s",
            "raw gRPC upload",
            array.nbytes / median(raw) / GB,
            Target("ratio", ">=", 0.5),
            {
                "seconds": ingest,
                "first_seconds": first[0],
                "raw_seconds": raw,
                "location": "persistent",
                # As in 6: client seconds - total/1000 = the upload into the launcher.
                "launcher_durations": [d for _, d in runs],
            },
        ),
        Figure(
            f"12b. inline param upload alone over HTTP, {ingest_mib} MiB",
            array.nbytes / median(uploads) / GB,
            "GB/s",
            "raw gRPC upload",
            array.nbytes / median(raw) / GB,
            Target("ratio", ">=", 1.0),
            {"seconds": uploads, "raw_seconds": raw},
        ),
    ]
