"""The ``run-job`` a Ray worker process starts ahead for its next job (``task.Spare``): a real
``run-job --ahead`` process each time (no Ray cluster needed: what it does before its job
is local to the node)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from launcher.executors.ray import task
from launcher.executors.ray.task import Spare


def _job(node_dir: Path, disable: list[str] | None = None) -> dict[str, Any]:
    return {"nodeDir": str(node_dir), "sandboxDisable": disable or []}


def _wait(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _zygote_under(pid: int) -> bool:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        try:
            if "launcher.sandbox.zygote" in " ".join(child.cmdline()):
                return True
        except psutil.Error:  # a probe that just exited, not reaped yet
            continue
    return False


@pytest.fixture
def spare() -> Iterator[Spare]:
    made = Spare()
    yield made
    current = made._spare
    if current is not None:
        current[1].kill()
        current[1].wait()


def test_spare_prepares_ahead_then_takes_its_job(tmp_path: Path, spare: Spare) -> None:
    node = tmp_path / "node"
    spare.refill(_job(node))
    assert spare._spare is not None
    proc = spare._spare[1]
    spare.refill(_job(node))  # one is there already: no second
    assert spare._spare[1] is proc
    _wait(lambda: _zygote_under(proc.pid), "the spare never started its zygote")
    assert psutil.Process(proc.pid).name() == "run-job-spare"
    assert (node / "run" / f"j{proc.pid}").is_dir()
    assert spare.take(_job(node)) is proc
    assert spare._spare is None
    proc.communicate(b"{not a job")
    assert proc.returncode == 2  # refused as a fresh run-job refuses it
    assert list((node / "run").iterdir()) == []  # its folder and zygote gone with it


def test_spare_for_other_settings_is_dismissed_and_tidies_up(tmp_path: Path, spare: Spare) -> None:
    spare.refill(_job(tmp_path / "node"))
    assert spare._spare is not None
    first = spare._spare[1]
    other = spare.take(_job(tmp_path / "node", ["seccomp"]))  # another sandbox setting
    assert other is not first and other.args[-1] == "launcher.executors.ray.node"
    other.communicate(b"")
    assert other.returncode == 2
    assert first.wait(30) == 0  # EOF instead of a job: nothing to do
    run = tmp_path / "node" / "run"
    assert not run.exists() or list(run.iterdir()) == []


def test_dead_spare_is_not_used(tmp_path: Path, spare: Spare) -> None:
    spare.refill(_job(tmp_path / "node"))
    assert spare._spare is not None
    dead = spare._spare[1]
    dead.kill()
    dead.wait()
    fresh = spare.take(_job(tmp_path / "node"))
    assert fresh is not dead and fresh.poll() is None
    fresh.communicate(b"")
    spare.refill(_job(tmp_path / "node"))  # a dead one is replaced
    assert spare._spare is not None and spare._spare[1] is not dead


def test_spare_removes_what_killed_run_jobs_left(tmp_path: Path, spare: Spare) -> None:
    run = tmp_path / "node" / "run"
    gone = psutil.Popen(["true"])
    gone.wait()
    (run / f"j{gone.pid}" / "sandbox").mkdir(parents=True)
    (run / f"j{os.getpid()}").mkdir()  # a live process's: kept
    (run / "notes").mkdir()  # not a run folder: kept
    # With its lock file: gone once no one holds the lock, whatever its pid (another pid
    # namespace sharing the node folder sees other pids).
    (run / "j999999991").mkdir()
    (run / "j999999991" / ".alive").touch()
    (run / "j999999992").mkdir()
    held = os.open(run / "j999999992" / ".alive", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    spare.refill(_job(tmp_path / "node"))
    assert spare._spare is not None
    proc = spare._spare[1]
    _wait(lambda: (run / f"j{proc.pid}").is_dir(), "the spare made no run folder")
    assert not (run / f"j{gone.pid}").exists() and not (run / "j999999991").exists()
    assert (run / f"j{os.getpid()}").is_dir() and (run / "notes").is_dir()
    assert (run / "j999999992").is_dir()
    assert (run / f"j{proc.pid}" / ".alive").is_file()  # its own, locked while it lives
    os.close(held)


def test_spare_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """The Ray worker process gone (killed), its spare goes too (parent-death signal)."""
    code = (
        "import sys, time; from launcher.executors.ray.task import Spare; "
        f"s = Spare(); s.refill({{'nodeDir': {str(tmp_path / 'node')!r}}}); "
        "print(s._spare[1].pid, flush=True); time.sleep(60)"
    )
    parent = psutil.Popen(
        [task.sys.executable, "-c", code], stdout=-1, cwd=Path(__file__).parents[2]
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    _wait(lambda: _zygote_under(pid), "the spare never started its zygote")
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    parent.kill()
    parent.wait()
    _, alive = psutil.wait_procs(tree, timeout=15)
    assert alive == []  # its zygote too


@pytest.mark.skipif(os.geteuid() != 0, reason="a spare is niced only where it can be raised again")
def test_spare_prepares_niced_and_its_job_gets_full_priority(tmp_path: Path, spare: Spare) -> None:
    from launcher.executors.ray.node import _full_priority

    spare.refill(_job(tmp_path / "node"))
    assert spare._spare is not None
    proc = spare._spare[1]
    _wait(lambda: _zygote_under(proc.pid), "the spare never started its zygote")
    spare_proc = psutil.Process(proc.pid)
    zygote = next(
        c for c in spare_proc.children() if "launcher.sandbox.zygote" in " ".join(c.cmdline())
    )
    assert spare_proc.nice() == zygote.nice() == task.SPARE_NICE  # both yield to jobs
    niced = psutil.Popen(["sleep", "30"], preexec_fn=lambda: os.nice(task.SPARE_NICE))
    try:
        _full_priority(0, [niced.pid])
        assert niced.nice() == 0
    finally:
        niced.kill()
        niced.wait()
