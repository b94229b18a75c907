"""The init joins the worker's cgroups (itself through ``tasks`` on v1; on v2 the keeper
writes its pid) while it builds its view: the worker still runs only inside its own cgroups,
and a join that fails runs no model code."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from launcher.sandbox import WorkerPlan
from launcher.sandbox.cgroups import WorkerCgroup
from launcher.sandbox.layered import LayeredSandbox
from launcher.sandbox.plain import start_entered
from launcher.sandbox.recipe import SETUP_FAILED
from launcher.sandbox.tree import open_joins
from launcher.sandbox.zygote_host import ZygoteHost
from launcher.spec import LauncherSpec
from tests.support.hostile.harness import Place, config_for, in_sandbox, plan_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the full stack needs root")

_SHOW_CGROUPS = "print(open('/proc/self/cgroup').read(), flush=True)"


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path).make()


def _python(place: Place, code: str) -> WorkerPlan:
    plan = plan_for(place, "exit_with.py", "0", spec=LauncherSpec(memory_mebibytes=256))
    return replace(plan, argv=[sys.executable, "-c", code])


@pytest.mark.parametrize("zygote", [True, False])
def test_the_worker_runs_in_its_own_cgroup_of_every_controller(place: Place, zygote: bool) -> None:
    disable = frozenset() if zygote else frozenset({"zygote"})

    async def body(sandbox: LayeredSandbox) -> tuple[int | None, str, list[str]]:
        if sandbox.layers().get("cgroup") != "on":
            raise AssertionError(f"this test needs the cgroup layer: {sandbox.layers()}")
        worker = await sandbox.start(_python(place, _SHOW_CGROUPS))
        try:
            ended = await asyncio.wait_for(worker.wait(), 20)
            cgroup = worker._cgroup  # type: ignore[attr-defined]
            assert isinstance(cgroup, WorkerCgroup)
            names = sorted({path.name for path in cgroup.dirs.values()})
            return ended.exit_code, worker.log_tail(), names
        finally:
            await worker.close()

    code, log, names = in_sandbox(config_for(place, disable), body)
    assert code == 0, log
    assert len(names) == 1
    lines = [line for line in log.splitlines() if line.count(":") >= 2]
    for controller in ("memory", "pids"):
        own = [line for line in lines if controller in line.split(":")[1].split(",")]
        assert own and own[0].endswith("/" + names[0]), log


def _failed_join_runs_no_model_code(place: Place, zygote: bool, cgroup_procs: list[str]) -> None:
    """A worker whose cgroup files take no write (ENOSPC) ends SETUP_FAILED, no model code run."""
    marker = place.job / "ran"
    code = f"open({str(marker)!r}, 'w').write('model code ran')"

    async def body(sandbox: LayeredSandbox) -> tuple[int | None, str]:
        recipe = sandbox.recipe(_python(place, code), None, forked=zygote)
        recipe.cgroup_procs = cgroup_procs
        host = ZygoteHost(place.root / "zygote-state") if zygote else None
        try:
            if host is not None:
                worker = await host.start(recipe, None, None)
            else:
                worker = await start_entered(recipe, None, None)
            try:
                ended = await asyncio.wait_for(worker.wait(), 20)
                return ended.exit_code, worker.log_tail()
            finally:
                await worker.close()
        finally:
            if host is not None:
                await host.close()

    exit_code, log = in_sandbox(config_for(place), body)
    assert exit_code == SETUP_FAILED, log
    assert "sandbox: setting up the worker failed" in log
    assert "No space left on device" in log
    assert not marker.exists()


@pytest.mark.parametrize("zygote", [True, False])
def test_a_cgroup_join_that_fails_runs_no_model_code(place: Place, zygote: bool) -> None:
    _failed_join_runs_no_model_code(place, zygote, ["/dev/full"])  # opens; writes fail


@pytest.mark.parametrize("zygote", [True, False])
def test_a_self_join_through_tasks_that_fails_runs_no_model_code(
    place: Place, zygote: bool
) -> None:
    """On cgroup v1 the init joins itself through ``tasks``: a write there that fails stops it
    before any model code, as a failed join by the keeper does."""
    fake = place.root / "fake-cgroup"
    fake.mkdir()
    (fake / "cgroup.procs").write_text("")
    (fake / "tasks").symlink_to("/dev/full")
    _failed_join_runs_no_model_code(place, zygote, [str(fake / "cgroup.procs")])


def test_v1_groups_are_joined_through_tasks_and_v2_through_cgroup_procs(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    for folder in (v1, v2):
        folder.mkdir()
        (folder / "cgroup.procs").write_text("")
    (v1 / "tasks").write_text("")
    procs, tasks = open_joins([str(v1 / "cgroup.procs"), str(v2 / "cgroup.procs")])
    try:
        assert [os.readlink(f"/proc/self/fd/{fd}") for fd in tasks] == [str(v1 / "tasks")]
        assert [os.readlink(f"/proc/self/fd/{fd}") for fd in procs] == [str(v2 / "cgroup.procs")]
    finally:
        for fd in procs + tasks:
            os.close(fd)
