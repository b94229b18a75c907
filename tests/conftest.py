"""Shared fixtures: a real launcher daemon (subprocess, Unix socket) and a client for it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess, running_launcher

settings.register_profile("long", max_examples=20_000, deadline=None)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


@pytest.fixture(scope="session")
def launcher() -> Iterator[LauncherProcess]:
    """One launcher for the session (short root path: Unix socket paths are limited)."""
    with tempfile.TemporaryDirectory(prefix="lt-") as root:
        with running_launcher(Path(root), ["--max-concurrent-jobs", "4"]) as proc:
            yield proc


@pytest.fixture
def client(launcher: LauncherProcess) -> Iterator[LauncherClient]:
    with LauncherClient(launcher.address) as c:
        yield c
