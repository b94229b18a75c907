"""Graceful shutdown of a real launcher subprocess: SIGTERM drains.

While draining, health checking answers NOT_SERVING and a new createState fails with
``server_overloaded`` (the job queue takes no more work); a job still running at the
``--drain-seconds`` deadline ends as ``launcher_terminated``, and after a restart
``wait_for_state_to_be_created`` keeps answering ``launcher_terminated`` for it.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.cli import main
from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess, running_launcher
from tests.support.specs import TEMPORARY

DRAIN = 4.0


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ls-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def create(client: LauncherClient, model_id: str) -> dict[str, Any]:
    return client.model.create_state(
        model_id=model_id, name="t", params=[], execution_location=TEMPORARY
    )


def failure_code(response: dict[str, Any]) -> str:
    assert "failed" in response.get("result", {}), response
    return str(response["result"]["failed"]["error"]["code"])


def health_status(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status)


def wait_running(client: LauncherClient, model_id: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        states = client.model.get_creating_states(model_id=model_id)["result"]["states"]
        if states:
            return str(states[0]["id"])
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)


def test_sigterm_drains_then_ends_running_jobs_as_launcher_terminated(root: Path) -> None:
    launcher = LauncherProcess(root, ["--drain-seconds", str(DRAIN)])
    launcher.start()
    try:
        with LauncherClient(launcher.address) as client:
            results: list[dict[str, Any]] = []
            job = threading.Thread(target=lambda: results.append(create(client, "sleeper")))
            job.start()
            state_id = wait_running(client, "sleeper")
            signalled = time.monotonic()
            launcher.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            while health_status(launcher.address) != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() - signalled < DRAIN, "health never said NOT_SERVING"
                time.sleep(0.05)
            assert failure_code(create(client, "hello")) == "server_overloaded"
            job.join(DRAIN + 30)
            assert failure_code(results[0]) == "launcher_terminated"
            assert time.monotonic() - signalled >= DRAIN - 0.5
        assert launcher.proc.wait(30) == 0  # type: ignore[union-attr]
    finally:
        launcher.stop()
    with running_launcher(root) as restarted, LauncherClient(restarted.address) as client:
        answer = client.model.wait_for_state_to_be_created(model_id="sleeper", state_id=state_id)
        assert failure_code(answer) == "launcher_terminated"


def test_sigterm_with_no_jobs_exits_promptly(root: Path) -> None:
    launcher = LauncherProcess(root)
    launcher.start()
    started = time.monotonic()
    assert launcher.stop(signal.SIGTERM, timeout=20) == 0
    assert time.monotonic() - started < 10


def test_bad_drain_seconds_are_refused(root: Path) -> None:
    for value in ("-1", "soon", "inf", "nan"):
        assert main(["serve", "--root", str(root), "--drain-seconds", value]) == 2
