"""kill -9 of the launcher leaves no worker process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
        assert [p for p in helpers if p.is_running() and p.status() != "zombie"] == []
    finally:
        owner.kill()
        owner.wait()
