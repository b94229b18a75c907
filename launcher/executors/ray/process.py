"""``RelayedProcess``: a worker on a node, as the runner sees a local worker process.

Its ending comes from the control channel (``terminated``: exit code / signal / oom) or is a
lost launcher: the control channel closing without it, heartbeats missed, the node dead in
Ray's node table, or the Ray task failing. A lost launcher makes ``wait`` raise
``PhaseFailed(LauncherTerminated)`` and closes the data channel, so a call in flight ends.
``kill`` asks the node over the control channel, then cancels the Ray task by force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from launcher import outcomes as oc
from launcher.executors.base import PhaseFailed
from launcher.executors.ray import control
from launcher.sandbox.types import Termination

log = logging.getLogger("launcher.executors.ray")

#: After asking the node to kill its worker, how long before the Ray task is cancelled.
KILL_GRACE = 2.0


class RelayedProcess:
    def __init__(
        self,
        hello: control.Hello,
        ctl_r: asyncio.StreamReader,
        ctl_w: asyncio.StreamWriter,
        ref_done: asyncio.Future[Any],
        cancel: Callable[[], None],
    ) -> None:
        self.pid = hello.pid
        #: Where the worker's output goes as the node relays it (the running job's log).
        self.sink: Callable[[str, bytes], None] | None = None
        self.hello = hello
        self._ctl_r = ctl_r
        self._ctl_w = ctl_w
        self._ref_done = ref_done
        self._cancel = cancel
        self._ended: asyncio.Future[Termination] = asyncio.get_running_loop().create_future()
        self._log_tail = ""
        self._data_w: asyncio.StreamWriter | None = None
        self._killing: asyncio.Task[None] | None = None
        self._watch = asyncio.create_task(self._watch_control())
        self._beat = asyncio.create_task(self._heartbeat())
        ref_done.add_done_callback(self._on_ref_done)

    def attach_data(self, writer: asyncio.StreamWriter) -> None:
        self._data_w = writer

    # How it ends ---------------------------------------------------------------------------

    def _end(self, termination: Termination | None, why: str = "") -> None:
        if termination is None:
            log.warning("worker on node %s lost: %s", self.hello.node_id[:12], why)
            self._fail(oc.LauncherTerminated(), why)
            return
        if not self._ended.done():
            self._ended.set_result(termination)
        self._abort_data()

    def _fail(self, outcome: oc.Failure, why: str) -> None:
        if not self._ended.done():
            self._ended.set_exception(PhaseFailed(outcome))
            self._ended.exception()  # retrieved: nobody may be waiting yet
        self._abort_data()

    def _abort_data(self) -> None:
        if self._data_w is not None:
            self._data_w.transport.abort()

    def lost(self, why: str) -> None:
        """The node went away (e.g. dead in Ray's node table)."""
        self._end(None, why)
        self._cancel()

    async def _watch_control(self) -> None:
        limit = control.HEARTBEAT * control.MISSED_HEARTBEATS
        try:
            while True:
                try:
                    async with asyncio.timeout(limit):
                        line = await control.read_line(self._ctl_r)
                except TimeoutError:
                    self.lost(f"no heartbeat for {limit:.1f} s")
                    return
                if not line:
                    self._end(None, "the control channel closed")
                    return
                msg = control.decode(line)
                if isinstance(msg, control.Output):
                    if self.sink is not None:
                        self.sink(msg.stream, msg.data)
                    continue
                if msg == "startTimeout":  # the worker did not connect in time on the node
                    self._fail(oc.MaxDurationExceeded(oc.Phase.CODE_STARTUP), "start timeout")
                    return
                if isinstance(msg, control.Terminated):
                    self._log_tail = msg.log_tail
                    self._end(Termination(msg.exit_code, msg.signal, msg.oom))
                    return
        except (control.ControlError, OSError) as e:
            self.lost(f"bad control channel: {e}")

    async def _heartbeat(self) -> None:
        """The node kills its worker when the hub falls silent."""
        while not self._ctl_w.is_closing():
            self._ctl_w.write(control.encode("heartbeat"))
            await asyncio.sleep(control.HEARTBEAT)

    def _on_ref_done(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            error = "cancelled" if fut.cancelled() else type(fut.exception()).__name__
            # A terminated message may still be on its way: give it a moment.
            asyncio.get_running_loop().call_later(0.5, self._end, None, f"Ray task: {error}")

    # The WorkerProcess protocol ------------------------------------------------------------

    async def wait(self) -> Termination:
        return await asyncio.shield(self._ended)

    def kill(self) -> None:
        if self._killing is None:
            self._killing = asyncio.create_task(self._kill())

    async def _kill(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            if not self._ctl_w.is_closing():
                self._ctl_w.write(control.encode("kill"))
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self._ref_done), KILL_GRACE)
        if not self._ref_done.done():
            self._cancel()
        if self._data_w is not None:
            self._data_w.transport.abort()

    def drain_output(self) -> None:
        """Output arrives over the control channel as the node reads it; nothing is held here."""

    def log_tail(self) -> str:
        return self._log_tail

    async def close(self) -> None:
        self.kill()
        assert self._killing is not None
        with contextlib.suppress(BaseException):
            await self._killing
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self._ended), KILL_GRACE)
        self._end(None, "closed")
        self._watch.cancel()
        self._beat.cancel()
        self._ctl_w.close()
