"""kill -9 of the launcher leaves no worker process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.support.hostile.harness import HOSTILE, tagged, wait_until_gone

REPO = HOSTILE.parent.parent.parent  # tests/support/hostile -> the repository


@pytest.mark.skipif(os.geteuid() != 0, reason="the full stack needs root")
def test_sigkill_of_the_launcher_leaves_no_worker_behind(tmp_path: Path) -> None:
    tag = f"owner-{uuid.uuid4()}"
    owner = subprocess.Popen(
        [sys.executable, "-m", "tests.support.hostile.owner", str(tmp_path), tag],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "started"
        workers = [proc for proc in tagged(tag) if proc.pid != owner.pid]
        assert len(workers) == 3  # the program, its setsid grandchild, its child
        helpers = psutil.Process(owner.pid).children(recursive=True)
        assert helpers  # the zygote and the worker's keeper
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        assert wait_until_gone(tag) == []
        # The helpers die of their owner's death too; on a busy machine it may take a moment.
        deadline = time.monotonic() + 5
        while _alive(helpers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(helpers) == []
    finally:
        owner.kill()
        owner.wait()


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != "zombie":
                alive.append(proc)
        except psutil.Error:
            continue
    return alive
