"""The host-side handle of one running worker: log, limits bookkeeping, wait and kill.

Subclasses say how the worker's top process is waited for and signalled (an asyncio child,
or a child of the zygote); everything else (bounded log, cgroup, watchdog, oom proof) is
here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable

from launcher.sandbox.cgroups import WorkerCgroup
from launcher.sandbox.logbuf import BoundedLog, pump, read_available
from launcher.sandbox.status import from_wait_status
from launcher.sandbox.types import Termination
from launcher.sandbox.watchdog import watch_memory

# After the worker's top process ended, how long its output pipe may still be drained.
_DRAIN_SECONDS = 0.5


#: Where a worker's output goes as it is read: ``sink(stream, data)``, stream "stdout"/"stderr".
OutputSink = Callable[[str, bytes], None]


class SandboxedWorker(ABC):
    """A started worker. ``pid`` is the host pid of its top process. Its stdout (``log_fd``)
    and stderr (``err_fd``; when None, stderr shares ``log_fd`` and reads as stdout) are read
    continuously: kept bounded for ``log_tail`` and handed to ``sink`` (the running job's
    log) while one is set."""

    def __init__(
        self,
        pid: int,
        log_fd: int,
        cgroup: WorkerCgroup | None,
        watchdog_bytes: int | None,
        err_fd: int | None = None,
    ) -> None:
        self.pid = pid
        self._log = BoundedLog()
        self.sink: OutputSink | None = None
        self._fds = {"stdout": log_fd, "stderr": err_fd}
        self._pumps = {
            stream: asyncio.create_task(pump(fd, self._feeder(stream)))
            for stream, fd in self._fds.items()
            if fd is not None
        }
        self._pump = asyncio.ensure_future(asyncio.gather(*self._pumps.values()))
        self._cgroup = cgroup
        self._watchdog_oom = False
        self._watchdog: asyncio.Task[None] | None = None
        if watchdog_bytes is not None:
            self._watchdog = asyncio.create_task(
                watch_memory(pid, watchdog_bytes, self._kill_for_memory)
            )
        self._termination: Termination | None = None
        self._finishing: asyncio.Future[Termination] | None = None
        self._kill_requested = False
        self._closed = False

    def _feeder(self, stream: str) -> Callable[[bytes], None]:
        def feed(data: bytes) -> None:
            self._log.feed(data)
            if self.sink is not None:
                self.sink(stream, data)

        return feed

    def drain_output(self) -> None:
        """Hand the sink what the pipes hold right now (what the worker wrote before its
        last answer), so that a job's last lines are its own."""
        for stream, task in self._pumps.items():
            fd = self._fds[stream]
            if fd is not None and not task.done():
                read_available(fd, self._feeder(stream))

    @abstractmethod
    async def _wait_status(self) -> int:
        """The raw wait status of the top process."""

    @abstractmethod
    def _kill_top(self) -> None:
        """Kill the top process (which takes its whole tree down)."""

    def _kill_for_memory(self) -> None:
        self._watchdog_oom = True
        self.kill()

    async def wait(self) -> Termination:
        # One waiter for all callers: the status can be collected only once.
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish())
        return await asyncio.shield(self._finishing)

    async def _finish(self) -> Termination:
        status = await self._wait_status()
        if self._cgroup is not None:
            self._cgroup.kill_all()
        oom = self._watchdog_oom or (self._cgroup is not None and self._cgroup.oom_killed())
        if self._kill_requested and os.WIFSIGNALED(status):
            # Our kill may land as the keeper's SIGTERM before it could turn it into SIGKILL.
            status = signal.SIGKILL
        self._termination = from_wait_status(status, oom=oom)
        if self._watchdog is not None:
            self._watchdog.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._pump), _DRAIN_SECONDS)
        return self._termination

    def kill(self) -> None:
        if self._termination is not None:
            return
        again, self._kill_requested = self._kill_requested, True
        self._kill_top()
        if self._cgroup is not None and not again:
            # Once: the cgroup is swept again after the top process is reaped (``_finish``)
            # and until it is empty (``remove``). A second sweep here (``close`` after the
            # teardown's kill) read every controller's list twice more on the loop, just as
            # the next job's request came in.
            self._cgroup.kill_all()

    def log_tail(self) -> str:
        return self._log.text()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.kill()
        await self.wait()
        for task in self._pumps.values():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        if self._cgroup is not None:
            await self._cgroup.remove()
