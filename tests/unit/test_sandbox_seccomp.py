"""The seccomp filter as a worker meets it: a foreign ABI call kills the process, and the
filter is the same whether or not namespaces are on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from tests.support.hostile.harness import Place, config_for, in_sandbox, plan_for, run_to_end

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the full stack needs root"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="x32 exists on x86_64 only"),
]


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path).make()


@pytest.mark.parametrize(
    "disable", [frozenset(), frozenset({"namespaces"})], ids=["all-layers", "no-namespaces"]
)
def test_an_x32_system_call_kills_the_worker(place: Place, disable: frozenset[str]) -> None:
    plan = plan_for(place, "foreign_abi.py")
    termination, log = in_sandbox(config_for(place, disable), lambda s: run_to_end(s, plan))
    assert "calling" in log
    assert "survived" not in log
    assert termination.signal == "SIGSYS", (termination, log)
