"""Hostile models under the full sandbox: each is contained with the right outcome."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.support.hostile.harness as harness
from launcher.sandbox import Termination, WorkerPlan
from launcher.sandbox.layered import LayeredSandbox
from launcher.spec import LauncherSpec
from tests.support.hostile.harness import (
    HOSTILE,
    Place,
    config_for,
    in_sandbox,
    kill_after,
    plan_for,
    run_to_end,
    tagged,
    wait_until_gone,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the full stack needs root")


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path).make()


@pytest.fixture(autouse=True, params=["fork", "spare"])
def first_worker(request: pytest.FixtureRequest, place: Place) -> Iterator[None]:
    """Each case twice: with the body's first worker forked from scratch, and with it the
    spare sandbox (a worker has run first in the same sandbox, and the spare was made)."""
    harness.PRIME = plan_for(place, "exit_with.py", "0") if request.param == "spare" else None
    yield
    harness.PRIME = None


def _last_json(log: str) -> dict[str, object]:
    return json.loads(log.strip().splitlines()[-1])


def test_every_layer_is_on_on_this_machine(place: Place) -> None:
    async def body(sandbox: LayeredSandbox) -> dict[str, str]:
        return sandbox.layers()

    layers = in_sandbox(config_for(place), body)
    # io: workers write only to tmpfs (charged to memory), so no block-I/O limit is applied.
    assert {name for name, state in layers.items() if state != "on"} == {
        "memory_watchdog",
        "cgroup_io",
    }


@pytest.mark.parametrize("fork_runtime", [True, False])
def test_exit_code_and_signal_are_decoded(place: Place, fork_runtime: bool) -> None:
    async def body(sandbox: LayeredSandbox) -> list[tuple[int | None, str | None]]:
        out = []
        for arg in ("3", "0", "SIGSEGV", "SIGKILL", "SIGTERM"):
            plan = plan_for(place, "exit_with.py", arg, fork_runtime=fork_runtime)
            termination, log = await run_to_end(sandbox, plan)
            assert f"about to end with {arg}" in log
            assert not termination.oom
            out.append((termination.exit_code, termination.signal))
        return out

    assert in_sandbox(config_for(place), body) == [
        (3, None),
        (0, None),
        (None, "SIGSEGV"),
        (None, "SIGKILL"),
        (None, "SIGTERM"),
    ]


def test_module_runs_in_the_forked_zygote_with_exactly_the_plan_env(place: Place) -> None:
    (place.job / "show_env.py").write_text(
        "import json, os, sys, threading\n"
        "import numpy\n"
        "numpy.ones((300, 300)) @ numpy.ones((300, 300))\n"
        "print(json.dumps({'env': dict(os.environ), 'numpy': 'numpy' in sys.modules,"
        " 'name': __name__, 'uid': os.getuid(), 'threads': len(os.listdir('/proc/self/task'))}))\n"
        "sys.exit(7)\n"
    )
    plan = WorkerPlan(
        argv=[sys.executable, "-m", "show_env"],
        env={"IPC_PATH": str(place.job / "ipc.sock"), "ONLY": "this"},
        model_dir=place.model,
        job_dir=place.job,
        spec=LauncherSpec(cpus=2),
        gpu_ids=["1", "3"],
    )
    termination, log = in_sandbox(config_for(place), lambda s: run_to_end(s, plan))
    report = _last_json(log)
    assert termination.exit_code == 7
    assert report["env"] == {**plan.env, "CUDA_VISIBLE_DEVICES": "1,3"}
    assert report["numpy"] is True  # forked from the warm zygote, not exec'd
    assert report["name"] == "__main__"
    assert report["uid"] == 65534
    assert report["threads"] == 2  # OpenBLAS given back the job's CPU share


def test_memory_hog_is_killed_with_oom_proven_by_the_cgroup(place: Place) -> None:
    plan = plan_for(place, "memory_hog.py", spec=LauncherSpec(memory_mebibytes=64))
    termination, _ = in_sandbox(config_for(place), lambda s: run_to_end(s, plan))
    assert termination.signal == "SIGKILL"
    assert termination.oom is True


def test_fork_bomb_is_stopped_by_the_pids_limit_and_the_launcher_keeps_serving(
    place: Place,
) -> None:
    async def body(sandbox: LayeredSandbox) -> tuple[str, int | None]:
        _, log = await run_to_end(sandbox, plan_for(place, "fork_bomb.py", fork_runtime=False))
        after, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "0"))
        return log, after.exit_code

    log, after = in_sandbox(config_for(place, pids_max=32), body)
    assert "fork failed after" in log
    assert int(log.split("fork failed after ")[1].split(":")[0]) < 32
    assert after == 0


def test_network_is_absent_even_loopback_to_the_host(place: Place) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    with listener:
        plan = plan_for(place, "net_probe.py", str(port))
        termination, log = in_sandbox(config_for(place), lambda s: run_to_end(s, plan))
        with pytest.raises(BlockingIOError):
            listener.accept()
    report = _last_json(log)
    assert termination.exit_code == 0
    assert report["interfaces"] == ["lo"]
    assert str(report["connect"]).startswith("refused")


def test_launcher_data_and_other_states_are_invisible_and_the_model_read_only(
    place: Place,
) -> None:
    wanted = [
        f"read:{place.data / 'launcher.db'}",
        f"read:{place.data / 'states' / 'other' / 'key'}",
        f"read:{place.model / 'main.py'}",
        f"write:{place.model / 'main.py'}",
        f"write:{place.model / 'new.py'}",
        f"write:{place.job / 'scratch'}",
        "write:/tmp/scratch",
        "read:/root/.bash_history",
        f"write:{HOSTILE / 'planted.py'}",
    ]
    plan = plan_for(place, "touch_files.py", *wanted)
    _, log = in_sandbox(config_for(place), lambda s: run_to_end(s, plan))
    report = _last_json(log)
    assert report[wanted[0]] == "error: No such file or directory"
    assert report[wanted[1]] == "error: No such file or directory"
    assert report[wanted[2]] == "ok"
    assert report[wanted[3]] == "error: Read-only file system"
    assert report[wanted[4]] == "error: Read-only file system"
    assert report[wanted[5]] == "ok"
    assert report[wanted[6]] == "ok"
    assert str(report[wanted[7]]).startswith("error")
    assert report[wanted[8]] == "error: Read-only file system"
    assert (place.model / "main.py").read_text() == "model = None\n"
    assert not (HOSTILE / "planted.py").exists()


def test_worker_sees_only_its_own_processes_and_cannot_kill_its_parent(place: Place) -> None:
    plan = plan_for(place, "see_and_kill.py")
    termination, log = in_sandbox(config_for(place), lambda s: run_to_end(s, plan))
    report = _last_json(log)
    assert termination.exit_code == 0  # the parent survived to report the worker's end
    assert report["pids"] == [1, 2]
    assert report["ppid"] == 1


@pytest.mark.parametrize("fork_runtime", [True, False])
def test_setsid_double_fork_escape_dies_with_kill(place: Place, fork_runtime: bool) -> None:
    tag = f"escape-{uuid.uuid4()}"

    async def body(sandbox: LayeredSandbox) -> str | None:
        plan = plan_for(place, "escape.py", tag, "stay", fork_runtime=fork_runtime)
        worker = await sandbox.start(plan)
        for _ in range(100):
            if "escaped" in worker.log_tail():
                break
            await asyncio.sleep(0.05)
        assert len(tagged(tag)) == 3  # the program, its session-escaped grandchild, a child
        termination = await kill_after(worker, 0)
        await worker.close()
        return termination.signal

    assert in_sandbox(config_for(place), body) == "SIGKILL"
    assert wait_until_gone(tag) == []


def test_children_sleeping_past_the_end_are_killed(place: Place) -> None:
    tag = f"leave-{uuid.uuid4()}"
    plan = plan_for(place, "escape.py", tag, "leave")
    termination, log = in_sandbox(config_for(place), lambda s: run_to_end(s, plan))
    assert termination.exit_code == 0
    assert "escaped" in log
    assert wait_until_gone(tag) == []


def test_output_flood_keeps_the_log_bounded_and_the_worker_unblocked(place: Place) -> None:
    plan = plan_for(place, "flood.py", "150")
    termination, log = in_sandbox(config_for(place), lambda s: run_to_end(s, plan, 60))
    assert termination.exit_code == 0
    assert len(log) < 140 * 1024
    assert "bytes omitted" in log
    # The last line is kept, after the cut (stdout and stderr are two pipes: what stderr
    # still held when stdout's last line was read may come after it).
    assert "the last line" in log[log.index("bytes omitted") :]


def test_infinite_loop_is_killed(place: Place) -> None:
    async def body(sandbox: LayeredSandbox) -> tuple[str | None, bool]:
        worker = await sandbox.start(plan_for(place, "spin.py"))
        termination = await kill_after(worker, 0.5)
        await worker.close()
        return termination.signal, termination.oom

    assert in_sandbox(config_for(place), body) == ("SIGKILL", False)


def test_a_dead_zygote_is_restarted_and_its_workers_reported_killed(place: Place) -> None:
    async def body(sandbox: LayeredSandbox) -> tuple[str | None, int | None]:
        worker = await sandbox.start(plan_for(place, "spin.py"))
        zygote = sandbox._zygote
        assert zygote is not None and zygote._zygote is not None
        zygote._zygote.proc.kill()
        lost = await asyncio.wait_for(worker.wait(), 10)
        await worker.close()
        after, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "5"))
        return lost.signal, after.exit_code

    assert in_sandbox(config_for(place), body) == ("SIGKILL", 5)


def test_bad_plans_are_refused_with_a_clear_error(place: Place) -> None:
    async def body(sandbox: LayeredSandbox) -> list[str]:
        errors = []
        good = plan_for(place, "exit_with.py", "0")
        for bad in (
            WorkerPlan([], good.env, good.model_dir, good.job_dir, good.spec),
            WorkerPlan(good.argv, good.env, good.model_dir, place.root / "nope", good.spec),
            WorkerPlan(good.argv, good.env, place.root / "nope", good.job_dir, good.spec),
        ):
            with pytest.raises(ValueError) as info:
                await sandbox.start(bad)
            errors.append(str(info.value))
        return errors

    errors = in_sandbox(config_for(place), body)
    assert "empty argv" in errors[0]
    assert "job directory" in errors[1]
    assert "model directory" in errors[2]


def test_unknown_layer_names_are_refused(place: Place) -> None:
    with pytest.raises(ValueError, match="unknown sandbox layer"):
        config_for(place, frozenset({"namespace"}))
    with pytest.raises(ValueError, match="unprivileged"):
        config_for(place, uid=0)


def test_missing_program_is_exit_code_127(place: Place) -> None:
    plan = plan_for(place, "exit_with.py", fork_runtime=False)
    missing = WorkerPlan(
        [str(place.job / "no-such-program")], plan.env, plan.model_dir, plan.job_dir, plan.spec
    )
    termination, log = in_sandbox(config_for(place), lambda s: run_to_end(s, missing))
    assert termination.exit_code == 127
    assert "cannot execute" in log


def test_worker_has_no_privileges_and_forbidden_calls_fail(place: Place) -> None:
    plan = plan_for(place, "privileges.py", spec=LauncherSpec(disk_mebibytes=16))
    termination, log = in_sandbox(config_for(place), lambda s: run_to_end(s, plan))
    report = _last_json(log)
    assert termination.exit_code == 0
    assert report["uid"] == 65534
    assert report["CapEff"] == report["CapBnd"] == "0000000000000000"
    assert report["NoNewPrivs"] == "1"
    assert report["Seccomp"] == "2"
    for call in ("unshare", "mount", "ptrace", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"):
        assert report[call] == "Operation not permitted", call
    assert report["AF_UNIX"] == "ok"
    assert report["tmp_64MiB"] in ("No space left on device", "File too large")


def test_a_zygote_that_died_idle_is_replaced_transparently(place: Place) -> None:
    async def body(sandbox: LayeredSandbox) -> list[int | None]:
        codes = []
        for _ in range(2):
            termination, _ = await run_to_end(sandbox, plan_for(place, "exit_with.py", "6"))
            codes.append(termination.exit_code)
            zygote = sandbox._zygote
            assert zygote is not None and zygote._zygote is not None
            zygote._zygote.proc.kill()
            await zygote._zygote.proc.wait()
        return codes

    assert in_sandbox(config_for(place), body) == [6, 6]


@pytest.mark.parametrize("disable", [frozenset(), frozenset({"zygote"})], ids=["zygote", "entry"])
def test_concurrent_waits_and_close_all_get_the_same_termination(
    place: Place, disable: frozenset[str]
) -> None:
    async def body(sandbox: LayeredSandbox) -> list[Termination]:
        worker = await sandbox.start(plan_for(place, "spin.py"))
        first, second, _ = await asyncio.gather(worker.wait(), worker.wait(), worker.close())
        return [first, second, await worker.wait()]

    terminations = in_sandbox(config_for(place, disable), body)
    assert terminations == [Termination(signal="SIGKILL")] * 3
