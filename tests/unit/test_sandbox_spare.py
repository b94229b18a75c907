"""The zygote's spare sandbox: made after each spawn, claimed by the next, fully confined
with the job's own disk budget, named while idle, replaced when it is gone or does not fit,
off when disabled, and never outliving its zygote."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from launcher.sandbox import WorkerPlan
from launcher.sandbox.layered import LayeredSandbox
from launcher.spec import LauncherSpec
from tests.support.hostile.harness import Place, config_for, in_sandbox, plan_for, run_to_end

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the full stack needs root")


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path).make()


def _zygote_pid(sandbox: LayeredSandbox) -> int:
    host = sandbox._zygote
    assert host is not None and host._zygote is not None
    return host._zygote.proc.pid


def _idle_children(zygote_pid: int, seconds: float = 5.0, spare: bool = True) -> list[int]:
    """The zygote's children once its last worker's keeper is gone: the spare (made as the
    job ends), once it has forked its init (unless ``spare`` is False: none is expected)."""
    deadline = time.monotonic() + seconds
    while True:
        children = psutil.Process(zygote_pid).children()
        settled = len(children) == 1 and bool(children[0].children()) if spare else not children
        if settled or time.monotonic() > deadline:
            return [c.pid for c in children]
        time.sleep(0.02)


def test_the_next_worker_runs_in_the_spare_and_is_fully_confined(place: Place) -> None:
    async def body(sandbox: LayeredSandbox) -> tuple[list[int], int, int | None, str]:
        first, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "0"))
        assert first.exit_code == 0
        spares = _idle_children(_zygote_pid(sandbox))
        plan = plan_for(place, "privileges.py", spec=LauncherSpec(disk_mebibytes=16))
        worker = await sandbox.start(plan)
        try:
            termination = await asyncio.wait_for(worker.wait(), 20)
            return spares, worker.pid, termination.exit_code, worker.log_tail()
        finally:
            await worker.close()

    spares, keeper, code, log = in_sandbox(config_for(place), body)
    assert spares == [keeper]  # made before the spawn, claimed by it
    assert code == 0
    report = json.loads(log.strip().splitlines()[-1])
    assert report["uid"] == 65534
    assert report["CapEff"] == report["CapBnd"] == "0000000000000000"
    assert report["NoNewPrivs"] == "1" and report["Seccomp"] == "2"
    for call in ("unshare", "mount", "ptrace", "AF_INET", "AF_NETLINK"):
        assert report[call] == "Operation not permitted", call
    assert report["tmp_64MiB"] in ("No space left on device", "File too large")


def test_the_spare_gets_its_jobs_disk_budget_and_is_named_while_idle(place: Place) -> None:
    async def body(sandbox: LayeredSandbox) -> tuple[list[str], list[str], list[int]]:
        first, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "0"))
        assert first.exit_code == 0
        [spare] = _idle_children(_zygote_pid(sandbox))
        tree = [psutil.Process(spare), *psutil.Process(spare).children()]
        names = [p.name() for p in tree]  # the keeper and its init
        outputs, keepers = [], []
        for mebibytes in (12, 20):
            plan = plan_for(
                place, "fill_tmp.py", str(mebibytes), spec=LauncherSpec(disk_mebibytes=16)
            )
            worker = await sandbox.start(plan)
            try:
                await asyncio.wait_for(worker.wait(), 20)
                outputs.append(worker.log_tail().strip().splitlines()[-1])
                keepers.append(worker.pid)
            finally:
                await worker.close()
        return names, outputs, [spare, *keepers]

    names, outputs, pids = in_sandbox(config_for(place), body)
    assert names == ["sandbox-spare", "sandbox-spare"]
    assert pids[0] == pids[1]  # the first fill ran in the spare
    assert outputs[0] == "ok"  # 12 MiB of the job's 16, not the spare's placeholder size
    assert outputs[1] in ("No space left on device", "File too large")


def test_a_spare_serves_another_jobs_folders_and_none_of_the_first(place: Place) -> None:
    other = Place(place.root / "other").make()

    async def body(sandbox: LayeredSandbox) -> tuple[int, int, str]:
        first, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "0"))
        assert first.exit_code == 0
        [spare] = _idle_children(_zygote_pid(sandbox))
        probe = [
            f"read:{other.model}/main.py",
            f"read:{place.model}/main.py",
            f"write:{other.model}/x",
        ]
        worker = await sandbox.start(plan_for(other, "touch_files.py", *probe))
        try:
            await asyncio.wait_for(worker.wait(), 20)
        finally:
            await worker.close()
        return spare, worker.pid, worker.log_tail()

    spare, keeper, log = in_sandbox(config_for(place), body)
    assert keeper == spare
    report = json.loads(log.strip().splitlines()[-1])
    assert report[f"read:{other.model}/main.py"] == "ok"
    assert report[f"read:{place.model}/main.py"].startswith("error")  # the first job's folder
    assert report[f"write:{other.model}/x"].startswith("error")  # read-only


def test_disabled_means_no_spare(place: Place) -> None:
    async def disabled(sandbox: LayeredSandbox) -> tuple[str, list[int]]:
        first, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "0"))
        assert first.exit_code == 0
        return sandbox.layers()["spare"], _idle_children(_zygote_pid(sandbox), 1.0, spare=False)

    state, children = in_sandbox(config_for(place, frozenset({"spare"})), disabled)
    assert state == "off: disabled by configuration" and children == []


def test_a_killed_spare_is_replaced_and_the_next_spawn_still_works(place: Place) -> None:
    async def body(sandbox: LayeredSandbox) -> list[int | None]:
        codes = []
        for _ in range(3):
            termination, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "4"))
            codes.append(termination.exit_code)
            for pid in _idle_children(_zygote_pid(sandbox)):
                os.kill(pid, signal.SIGKILL)  # the spare, gone before it is claimed
            await asyncio.sleep(0.1)
        return codes

    assert in_sandbox(config_for(place), body) == [4, 4, 4]


def test_the_spare_goes_with_its_zygote(place: Place) -> None:
    seen: list[int] = []

    async def body(sandbox: LayeredSandbox) -> None:
        await run_to_end(sandbox, plan_for(place, "exit_with.py", "0"))
        seen.extend(_idle_children(_zygote_pid(sandbox)))

    in_sandbox(config_for(place), body)  # closes the sandbox, and so the zygote
    assert len(seen) == 1
    deadline = time.monotonic() + 5
    while psutil.pid_exists(seen[0]) and time.monotonic() < deadline:
        try:
            if psutil.Process(seen[0]).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    assert not psutil.pid_exists(seen[0]) or (
        psutil.Process(seen[0]).status() == psutil.STATUS_ZOMBIE
    )


FRAMES_PROBE = """
import sys
marker = sys.argv[1] if len(sys.argv) > 1 else ""
found = []
frame = sys._getframe()
while frame is not None:
    for name, value in list(frame.f_locals.items()):
        if MARKER in repr(value):
            found.append(f"{frame.f_code.co_name}:{name}")
    frame = frame.f_back
print("FOUND", found, flush=True)
"""


def test_the_spares_worker_holds_nothing_of_the_job_before_it(place: Place) -> None:
    """A forked worker runs on the stack it inherits (the zygote's loop, the spare's frames):
    no frame of it may still hold the previous job's message or recipe (its environment,
    its folders)."""
    marker = "first-job-" + "7" * 12
    (place.job / "frames_probe.py").write_text(FRAMES_PROBE.replace("MARKER", repr(marker)))

    def module_plan(env: dict[str, str]) -> WorkerPlan:
        plan = plan_for(place, "exit_with.py", "0")
        return replace(plan, argv=[sys.executable, "-m", "frames_probe"], env={**plan.env, **env})

    async def body(sandbox: LayeredSandbox) -> tuple[str, int, int]:
        first, first_log = await run_to_end(sandbox, module_plan({"FIRST_JOB_SECRET": marker}))
        assert first.exit_code == 0, first_log
        [spare] = _idle_children(_zygote_pid(sandbox))
        worker = await sandbox.start(module_plan({}))
        try:
            await asyncio.wait_for(worker.wait(), 20)
        finally:
            await worker.close()
        return worker.log_tail(), spare, worker.pid

    log, spare, keeper = in_sandbox(config_for(place), body)
    assert keeper == spare  # the second worker ran in the spare
    assert "FOUND []" in log, log


def test_a_spare_whose_init_died_is_not_handed_a_job(place: Place) -> None:
    async def body(sandbox: LayeredSandbox) -> tuple[int | None, int, int]:
        first, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "0"))
        assert first.exit_code == 0
        [spare] = _idle_children(_zygote_pid(sandbox))
        [init] = psutil.Process(spare).children()
        os.kill(init.pid, signal.SIGKILL)  # its view could not be built, say
        psutil.Process(spare).wait(10)  # the spare's keeper ends with it, unclaimed
        termination, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "5"))
        return termination.exit_code, spare, termination.exit_code or 0

    code, _spare, _ = in_sandbox(config_for(place), body)
    assert code == 5  # forked from scratch, ran as usual


def test_the_next_spare_is_made_once_the_job_is_under_way_not_beside_its_start(
    place: Place,
) -> None:
    """Right after a spawn the zygote holds the job alone; its spare follows within
    ``REFILL_SECONDS`` (or as soon as a job ends), so building it never takes CPU from the
    start it would compete with."""
    from launcher.sandbox.zygote import REFILL_SECONDS

    async def body(sandbox: LayeredSandbox) -> tuple[float, list[tuple[int, float, str]], int]:
        first, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "0"))
        assert first.exit_code == 0
        zygote = _zygote_pid(sandbox)
        _idle_children(zygote)
        # A process started now: its start time is on the same clock as the spare's.
        clock = subprocess.Popen(["true"])
        spawned = psutil.Process(clock.pid).create_time()
        clock.wait()
        worker = await sandbox.start(plan_for(place, "spin.py"))
        try:
            await asyncio.sleep(REFILL_SECONDS + 1.0)
            children = psutil.Process(zygote).children()
            later = [(p.pid, p.create_time(), p.status()) for p in children]
        finally:
            worker.kill()
            await worker.wait()
            await worker.close()
        return spawned, later, worker.pid

    spawned, later, keeper = in_sandbox(config_for(place), body)
    [successor] = [created for pid, created, _ in later if pid != keeper]  # and one spare
    # (process start times have a clock tick's grain: 10 ms)
    assert successor - spawned >= REFILL_SECONDS * 0.6


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _waiting_worker(spare: int, seconds: float = 5.0) -> psutil.Process:
    """The spare's worker, forked ahead by its init (the keeper's grandchild)."""
    deadline = time.monotonic() + seconds
    while True:
        inits = psutil.Process(spare).children()
        waiting = inits[0].children() if inits else []
        if waiting or time.monotonic() > deadline:
            assert len(waiting) == 1, "the spare's init forked no worker ahead"
            return waiting[0]
        time.sleep(0.02)


def test_the_spares_worker_is_forked_ahead_and_runs_the_job_in_its_cgroups(
    place: Place,
) -> None:
    async def body(sandbox: LayeredSandbox) -> tuple[str, int, int, str, list[str]]:
        first, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "0"))
        assert first.exit_code == 0
        [spare] = _idle_children(_zygote_pid(sandbox))
        waiting = _waiting_worker(spare)
        idle_name = waiting.name()
        worker = await sandbox.start(plan_for(place, "spin.py"))
        try:
            deadline = time.monotonic() + 10
            while "spinning" not in worker.log_tail() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            [running] = psutil.Process(spare).children()[0].children()
            cgroups = Path(f"/proc/{waiting.pid}/cgroup").read_text()
            dirs = worker._cgroup.dirs  # type: ignore[attr-defined]
            wanted = [f"{ctl}:{path.name}" for ctl, path in dirs.items()]
        finally:
            worker.kill()
            await worker.close()
        return idle_name, waiting.pid, running.pid, cgroups, wanted

    idle_name, waiting, running, cgroups, wanted = in_sandbox(config_for(place), body)
    assert idle_name == "sandbox-spare"
    assert running == waiting  # the job ran in the process that waited for it
    assert wanted
    joined = {}
    for line in cgroups.splitlines():  # v1: "N:controller[,controller]:/path"
        _number, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            joined[controller] = path
    for entry in wanted:  # every controller of the job's cgroup holds it
        controller, name = entry.split(":")
        assert joined.get(controller, "").endswith("/" + name), (controller, cgroups)


def test_a_claim_with_a_join_by_pid_dismisses_the_waiting_worker(place: Place) -> None:
    """A cgroup joined by pid (a ``cgroup.procs`` without ``tasks`` beside it, as on v2) moves
    the init alone: the worker forked ahead is dismissed and one is forked after the joins."""
    joins = place.root / "by-pid"
    joins.mkdir()
    procs = joins / "cgroup.procs"
    procs.write_text("")

    async def body(sandbox: LayeredSandbox) -> tuple[int, int, bool, str]:
        original = sandbox.recipe

        def with_a_join_by_pid(plan: WorkerPlan, cgroup: object, forked: bool) -> object:
            recipe = original(plan, cgroup, forked)  # type: ignore[arg-type]
            recipe.cgroup_procs = [*recipe.cgroup_procs, str(procs)]
            return recipe

        sandbox.recipe = with_a_join_by_pid  # type: ignore[method-assign,assignment]
        first, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "0"))
        assert first.exit_code == 0
        [spare] = _idle_children(_zygote_pid(sandbox))
        waiting = _waiting_worker(spare)
        init = psutil.Process(spare).children()[0].pid
        worker = await sandbox.start(plan_for(place, "spin.py"))
        try:
            deadline = time.monotonic() + 10
            while "spinning" not in worker.log_tail() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            [running] = psutil.Process(init).children()
            return waiting.pid, running.pid, _alive(waiting.pid), str(init)
        finally:
            worker.kill()
            await worker.close()

    waiting, running, waiting_left, init = in_sandbox(config_for(place), body)
    assert running != waiting and not waiting_left
    assert procs.read_text() == init  # the keeper moved the init by pid
