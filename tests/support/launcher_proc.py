"""A real launcher daemon for end-to-end tests: ``launcher serve`` in a subprocess.

The data root is a temporary folder whose ``models/`` holds copies of the test models
(``tests/models/e2e``) and the examples (``examples/models``); the launcher listens on
a Unix socket there. ``wait_serving`` polls gRPC health checking, as an operator would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HERE = Path(__file__).parent.parent  # tests/
PROJECT = HERE.parent
MODEL_SOURCES = [HERE / "models" / "e2e", PROJECT / "examples" / "models"]


def populate_models(models_dir: Path) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    for source in MODEL_SOURCES:
        if source.is_dir():
            for model in sorted(source.iterdir()):
                if model.is_dir() and not (models_dir / model.name).exists():
                    shutil.copytree(model, models_dir / model.name)


def wait_serving(address: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the launcher exited with {proc.returncode}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the launcher at {address} did not start serving")
            time.sleep(0.05)


class LauncherProcess:
    def __init__(
        self, root: Path, extra_args: list[str] | None = None, address: str | None = None
    ) -> None:
        self.root = root
        self.address = address or f"unix://{root}/launcher.sock"
        self.log_path = root / "launcher.log"
        self.args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        populate_models(self.root / "models")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "launcher.cli",
                "serve",
                "--root",
                str(self.root),
                "--listen",
                self.address,
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        wait_serving(self.address, proc=self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@contextmanager
def running_launcher(
    root: Path, extra_args: list[str] | None = None, address: str | None = None
) -> Iterator[LauncherProcess]:
    launcher = LauncherProcess(root, extra_args, address)
    launcher.start()
    try:
        yield launcher
    finally:
        launcher.stop()
