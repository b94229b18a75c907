"""The seccomp filter as a worker meets it: a foreign ABI call kills the process, and the
filter is the same whether or not namespaces are on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hostile.harness import (
    HOSTILE,
    Place,
    config_for,
    in_sandbox,
    plan_for,
    run_to_end,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the full stack needs root"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="x32 exists on x86_64 only"),
]


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path).make()


@pytest.mark.parametrize("abi", ["x32", "i386"])
@pytest.mark.parametrize(
    "disable", [frozenset(), frozenset({"namespaces"})], ids=["all-layers", "no-namespaces"]
)
def test_a_foreign_abi_system_call_kills_the_worker(
    place: Place, disable: frozenset[str], abi: str
) -> None:
    plan = plan_for(place, "foreign_abi.py", abi)
    termination, log = in_sandbox(config_for(place, disable), lambda s: run_to_end(s, plan))
    assert "calling" in log
    assert "survived" not in log
    assert termination.signal == "SIGSYS", (termination, log)


@pytest.mark.parametrize("abi", ["x32", "i386"])
def test_the_foreign_calls_are_harmless_outside_the_filter(abi: str) -> None:
    """The control: unconfined, the same program survives its call (so SIGSYS is the filter)."""
    done = subprocess.run(
        [sys.executable, str(HOSTILE / "foreign_abi.py"), abi],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and "survived" in done.stdout, done
