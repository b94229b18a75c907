"""Starting a sandboxed worker and waiting for it to connect to its IPC socket."""

from __future__ import annotations

import asyncio
from typing import Any

from launcher import outcomes as oc
from launcher.executors.base import PhaseFailed, terminated
from launcher.sandbox.types import Sandbox, WorkerPlan, WorkerProcess
from launcher.worker.listener import WorkerListener


async def start_connected(
    sandbox: Sandbox, plan: WorkerPlan, connect_limit: float
) -> tuple[WorkerProcess, asyncio.StreamReader, asyncio.StreamWriter]:
    """Start ``plan`` in ``sandbox``; its process and connection once it connected.
    ``PhaseFailed``: it exited first (``code_terminated``) or did not connect in time."""
    async with WorkerListener(plan.job_dir / "ipc.sock") as listener:
        process = await sandbox.start(plan)
        accept = asyncio.ensure_future(listener.accept())
        exited = asyncio.shield(process.wait())  # cancelling our wait must not stop theirs
        try:
            waiters: set[asyncio.Future[Any]] = {accept, exited}
            done, _ = await asyncio.wait(
                waiters, timeout=connect_limit, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            accept.cancel()
            process.kill()
            await asyncio.shield(process.close())
            raise
        if accept in done:
            reader, writer = accept.result()
            exited.cancel()
            return process, reader, writer
        accept.cancel()
        process.kill()
        await asyncio.shield(process.close())
        if exited in done:
            raise PhaseFailed(terminated(exited.result()))
        exited.cancel()
        raise PhaseFailed(oc.MaxDurationExceeded(oc.Phase.CODE_STARTUP))
