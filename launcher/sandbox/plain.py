"""Workers started as asyncio child processes: the plain fallback and the exec'd entry helper.

The plain fallback runs ``plan.argv`` directly in its own session with no isolation at all;
it works everywhere. The entry path runs ``python -m launcher.sandbox.enter``, which applies
the layers (no fork needed in the multi-threaded launcher) and becomes the worker's keeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys

from launcher.sandbox.cgroups import WorkerCgroup
from launcher.sandbox.cleanenv import helper_env
from launcher.sandbox.recipe import Recipe
from launcher.sandbox.types import WorkerPlan
from launcher.sandbox.worker import SandboxedWorker


class SubprocessWorker(SandboxedWorker):
    """A worker whose top process is the launcher's own asyncio child."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        log_fd: int,
        cgroup: WorkerCgroup | None,
        watchdog_bytes: int | None,
        kill_group: bool,
        err_fd: int | None = None,
    ) -> None:
        super().__init__(proc.pid, log_fd, cgroup, watchdog_bytes, err_fd)
        self._proc = proc
        # Plain: the group is the whole tree we can reach. Entry: the keeper kills its tree
        # on SIGTERM (it is root; a worker that dropped its uid cannot send it that).
        self._kill_group = kill_group

    async def _wait_status(self) -> int:
        code = await self._proc.wait()
        if self._kill_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        return -code if code < 0 else code << 8

    def _kill_top(self) -> None:
        if self._proc.returncode is not None:
            return
        if self._kill_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)


async def start_plain(plan: WorkerPlan, watchdog_bytes: int | None) -> SubprocessWorker:
    """``plan.argv`` with exactly ``plan.env``, in ``plan.job_dir``, in a session of its own."""
    read_fd, write_fd = os.pipe()
    err_read, err_write = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *plan.argv,
            env=plan.env,
            cwd=plan.job_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=err_write,
            start_new_session=True,
        )
    except BaseException:
        os.close(read_fd)
        os.close(err_read)
        raise
    finally:
        os.close(write_fd)
        os.close(err_write)
    return SubprocessWorker(proc, read_fd, None, watchdog_bytes, kill_group=True, err_fd=err_read)


async def start_entered(
    recipe: Recipe, cgroup: WorkerCgroup | None, watchdog_bytes: int | None
) -> SubprocessWorker:
    """The recipe run by a freshly exec'd ``launcher.sandbox.enter`` helper."""
    read_fd, write_fd = os.pipe()
    err_read, err_write = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "launcher.sandbox.enter",
            str(os.getpid()),
            env=helper_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=write_fd,
            stderr=err_write,
        )
    except BaseException:
        os.close(read_fd)
        os.close(err_read)
        raise
    finally:
        os.close(write_fd)
        os.close(err_write)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(recipe.to_json()).encode())
    await proc.stdin.drain()
    proc.stdin.close()
    return SubprocessWorker(
        proc, read_fd, cgroup, watchdog_bytes, kill_group=False, err_fd=err_read
    )
