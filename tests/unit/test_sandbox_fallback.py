"""Layers turned off by configuration: the fallbacks still contain the worker, and say so."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from launcher.sandbox.layered import LayeredSandbox
from launcher.spec import LauncherSpec
from tests.support.hostile.harness import (
    ALL_OFF,
    Place,
    config_for,
    in_sandbox,
    kill_after,
    plan_for,
    run_to_end,
    tagged,
    wait_until_gone,
)

# Plain: nothing but a child process. Entry: no zygote, no namespaces, no cgroup, so the
# exec'd helper with its keeper, uid drop, seccomp and the memory watchdog.
PLAIN = ALL_OFF
ENTRY = frozenset({"zygote", "namespaces", "cgroup"})


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path).make()


def test_disabled_layers_are_reported_off_with_the_reason(place: Place) -> None:
    async def body(sandbox: LayeredSandbox) -> dict[str, str]:
        return sandbox.layers()

    layers = in_sandbox(config_for(place, PLAIN), body)
    assert layers["memory_watchdog"] == "on"
    for name in ("zygote", "pidns", "netns", "mountns", "uid", "seccomp", "cgroup", "rlimits"):
        assert layers[name] == "off: disabled by configuration"
    assert layers["no_new_privs"].startswith("off: plain fallback")


@pytest.mark.parametrize("disable", [PLAIN, ENTRY], ids=["plain", "entry"])
def test_exit_code_and_signal_are_decoded_without_layers(
    place: Place, disable: frozenset[str]
) -> None:
    async def body(sandbox: LayeredSandbox) -> list[tuple[int | None, str | None]]:
        out = []
        for arg in ("4", "SIGABRT"):
            termination, log = await run_to_end(sandbox, plan_for(place, "exit_with.py", arg))
            assert f"about to end with {arg}" in log
            out.append((termination.exit_code, termination.signal))
        return out

    assert in_sandbox(config_for(place, disable), body) == [(4, None), (None, "SIGABRT")]


@pytest.mark.parametrize("disable", [PLAIN, ENTRY], ids=["plain", "entry"])
def test_memory_watchdog_kills_a_hog_and_reports_oom(place: Place, disable: frozenset[str]) -> None:
    plan = plan_for(place, "memory_hog.py", spec=LauncherSpec(memory_mebibytes=96))
    termination, _ = in_sandbox(config_for(place, disable), lambda s: run_to_end(s, plan))
    assert termination.signal == "SIGKILL"
    assert termination.oom is True


@pytest.mark.parametrize("disable", [PLAIN, ENTRY], ids=["plain", "entry"])
def test_infinite_loop_is_killed_without_layers(place: Place, disable: frozenset[str]) -> None:
    async def body(sandbox: LayeredSandbox) -> tuple[str | None, bool]:
        worker = await sandbox.start(plan_for(place, "spin.py"))
        termination = await kill_after(worker, 0.3)
        await worker.close()
        return termination.signal, termination.oom

    assert in_sandbox(config_for(place, disable), body) == ("SIGKILL", False)


@pytest.mark.parametrize("disable", [PLAIN, ENTRY], ids=["plain", "entry"])
def test_child_left_behind_is_killed_at_the_end(place: Place, disable: frozenset[str]) -> None:
    tag = f"leave-{uuid.uuid4()}"
    plan = plan_for(place, "escape.py", tag, "leave")
    termination, _ = in_sandbox(config_for(place, disable), lambda s: run_to_end(s, plan))
    assert termination.exit_code == 0
    left = wait_until_gone(tag, 1 if disable == PLAIN else 5)
    if disable == PLAIN:
        # Known limit of the plain fallback: a setsid grandchild leaves the process group.
        assert len(left) <= 1
        for proc in left:
            proc.kill()
    else:
        assert left == []


def test_entry_keeper_kills_a_setsid_escape_on_kill(place: Place) -> None:
    tag = f"escape-{uuid.uuid4()}"

    async def body(sandbox: LayeredSandbox) -> str | None:
        worker = await sandbox.start(plan_for(place, "escape.py", tag, "stay"))
        for _ in range(100):
            if "escaped" in worker.log_tail():
                break
            await asyncio.sleep(0.05)
        assert len(tagged(tag)) == 3
        termination = await kill_after(worker, 0)
        await worker.close()
        return termination.signal

    assert in_sandbox(config_for(place, ENTRY), body) == "SIGKILL"
    assert wait_until_gone(tag) == []
