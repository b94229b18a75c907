"""``launcher serve`` start-up and drain, as an operator sees them: the hint it prints names a
model the root has (or none), and a job submitted while draining is refused at once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.client import LauncherClient, LauncherConnectionError
from tests.support.launcher_proc import HERE, PROJECT, wait_serving
from tests.support.specs import TEMPORARY


def _serve(root: Path, *extra: str) -> subprocess.Popen[bytes]:
    log = open(root / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher.cli", "serve", "--root", str(root)]
        + ["--listen", f"unix://{root}/s.sock", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=PROJECT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log.close()
    wait_serving(f"unix://{root}/s.sock", proc=proc)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@pytest.fixture
def root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ls-") as folder:  # short: a Unix socket inside
        yield Path(folder)


def _hint_lines(root: Path) -> list[str]:
    proc = _serve(root)
    assert _stop(proc) == 0
    output = (root / "serve.log").read_text()
    assert "listening on" in output
    return [line for line in output.splitlines() if line.startswith("try, in another terminal")]


def test_the_start_up_hint_names_a_model_the_root_has(root: Path) -> None:
    shutil.copytree(PROJECT / "examples" / "models" / "linear", root / "models" / "linear")
    [hint] = _hint_lines(root)
    assert "create-state linear --name first" in hint
    assert "hello" not in hint


def test_the_start_up_hint_prefers_hello(root: Path) -> None:
    for name in ("linear", "hello"):
        shutil.copytree(PROJECT / "examples" / "models" / name, root / "models" / name)
    [hint] = _hint_lines(root)
    assert "create-state hello --name first" in hint


def test_no_start_up_hint_on_a_root_without_models(root: Path) -> None:
    assert _hint_lines(root) == []


def _not_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
    return bool(status == health_pb2.HealthCheckResponse.NOT_SERVING)


def test_a_job_submitted_while_draining_is_refused_at_once_without_a_state_id(root: Path) -> None:
    shutil.copytree(HERE / "models" / "e2e" / "sleeper", root / "models" / "sleeper")
    shutil.copytree(PROJECT / "examples" / "models" / "hello", root / "models" / "hello")
    proc = _serve(root, "--drain-seconds", "30")
    address = f"unix://{root}/s.sock"
    running: dict = {}
    try:
        with LauncherClient(address) as client:

            def hold() -> None:
                try:
                    running["response"] = client.model.create_state(
                        model_id="sleeper", name="held", params=[], execution_location=TEMPORARY
                    )
                except LauncherConnectionError as e:  # the launcher is killed at the end
                    running["error"] = e

            holder = threading.Thread(target=hold, daemon=True)
            holder.start()
            deadline = time.monotonic() + 60
            while not client.model.get_creating_states(model_id="sleeper")["result"]["states"]:
                assert time.monotonic() < deadline, f"the held job never started: {running}"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)  # drains: the held job keeps the launcher up
            while not _not_serving(address):
                assert time.monotonic() < deadline, "the launcher never started draining"
                time.sleep(0.05)
            events = list(
                client.model.create_state_stream(
                    model_id="hello", name="late", params=[], execution_location=TEMPORARY
                )
            )
            # Nothing was accepted: no state id, no phase, only the refusal.
            assert len(events) == 1, events
            [answer] = events
            failed = answer["result"]["failed"]
            assert failed["error"] == {"code": "server_overloaded"}
            assert isinstance(failed["durations"]["total"], int)
            assert "stateId" not in str(answer)
            assert client.model.get_creating_states(model_id="hello")["result"]["states"] == []
    finally:
        proc.kill()
        proc.wait()
