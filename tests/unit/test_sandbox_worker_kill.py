"""Killing a worker sweeps its cgroup once on the spot; the sweeps that make sure nothing is
left come after its top process is reaped and until the cgroup is gone, not on every kill
(``close`` after the teardown's kill read every controller's list twice more on the loop)."""

from __future__ import annotations

import asyncio
import os
import signal

from launcher.sandbox.worker import SandboxedWorker


class _Cgroup:
    """Counts sweeps; the worker's cgroup as far as ``SandboxedWorker`` uses it."""

    def __init__(self) -> None:
        self.sweeps = 0
        self.removed = False

    def kill_all(self) -> None:
        self.sweeps += 1

    def oom_killed(self) -> bool:
        return False

    async def remove(self) -> None:
        self.kill_all()
        self.removed = True


class _Worker(SandboxedWorker):
    """A worker whose top process is a future: killed sets its wait status."""

    def __init__(self, cgroup: _Cgroup) -> None:
        self.read_fd, self.write_fd = os.pipe()
        super().__init__(0, self.read_fd, cgroup, None)  # type: ignore[arg-type]
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.top_kills = 0

    async def _wait_status(self) -> int:
        return await self.status

    def _kill_top(self) -> None:
        self.top_kills += 1
        if not self.status.done():
            self.status.set_result(signal.SIGKILL)  # as os.waitpid reports a SIGKILL death
            os.close(self.write_fd)  # its output ends with it


def test_a_kill_sweeps_once_and_the_teardown_sweeps_after_the_reap() -> None:
    async def main() -> None:
        cgroup = _Cgroup()
        worker = _Worker(cgroup)
        worker.kill()
        worker.kill()  # the teardown's own kill, after the one at the answer
        assert (worker.top_kills, cgroup.sweeps) == (2, 1)
        await worker.close()  # tells the top again (a message), reaps, sweeps, removes
        assert worker.top_kills == 3
        assert cgroup.sweeps == 3  # the kill, after the reap (_finish), and remove
        assert cgroup.removed
        assert (await worker.wait()).signal == "SIGKILL"

    asyncio.run(main())


def test_a_worker_closed_without_a_kill_first_is_killed_and_swept() -> None:
    async def main() -> None:
        cgroup = _Cgroup()
        worker = _Worker(cgroup)
        await worker.close()
        assert worker.top_kills == 1
        assert cgroup.sweeps == 3
        assert cgroup.removed

    asyncio.run(main())
