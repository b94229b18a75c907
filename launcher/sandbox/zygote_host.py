"""The launcher's side of the zygote: starting it, asking it to spawn and kill, restarting it.

If the zygote dies, the workers it owned die with it (their keepers have PDEATHSIG set) and
are reported as killed by SIGKILL; the next start launches a fresh zygote.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from launcher.sandbox.cgroups import WorkerCgroup
from launcher.sandbox.cleanenv import helper_env
from launcher.sandbox.recipe import Recipe
from launcher.sandbox.worker import SandboxedWorker
from launcher.sandbox.zygote_messages import (
    MAX_PACKET,
    Exited,
    Kill,
    Message,
    Ready,
    Spawn,
    Started,
    ZygoteProtocolError,
    decode,
)

log = logging.getLogger("launcher.sandbox")

_START_TIMEOUT = 60.0


class ZygoteLost(RuntimeError):
    """The zygote died or stopped answering."""


class ZygoteWorker(SandboxedWorker):
    """A worker whose keeper is a child of the zygote."""

    def __init__(
        self,
        zygote: _Zygote,
        worker_id: str,
        pid: int,
        log_fd: int,
        cgroup: WorkerCgroup | None,
        watchdog_bytes: int | None,
        err_fd: int | None = None,
    ) -> None:
        super().__init__(pid, log_fd, cgroup, watchdog_bytes, err_fd)
        self._zygote = zygote
        self._id = worker_id

    async def _wait_status(self) -> int:
        status = await self._zygote.exits[self._id]
        del self._zygote.exits[self._id]
        return status

    def _kill_top(self) -> None:
        # A lost zygote took its keepers, and so this worker, with it.
        with contextlib.suppress(ZygoteLost):
            self._zygote.send(Kill(self._id))


class _Zygote:
    """One running zygote process and its socket."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.exits: dict[str, asyncio.Future[int]] = {}
        self._started: dict[str, asyncio.Future[int]] = {}
        self._ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.alive = True
        self._reader = asyncio.create_task(self._read())

    async def ready(self) -> int:
        return await asyncio.wait_for(asyncio.shield(self._ready), _START_TIMEOUT)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self.sock, MAX_PACKET)
                if not data:
                    break
                self._dispatch(decode(data))
        except (OSError, ZygoteProtocolError) as exc:
            log.error("zygote connection failed: %s", exc)
        finally:
            self._lost()

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, Ready):
            if not self._ready.done():
                self._ready.set_result(message.pid)
        elif isinstance(message, Started):
            future = self._started.pop(message.id, None)
            if future is not None and not future.done():
                future.set_result(message.pid)
        elif isinstance(message, Exited):
            exit_future = self.exits.get(message.id)
            if exit_future is not None and not exit_future.done():
                exit_future.set_result(message.status)
        else:
            raise ZygoteProtocolError(f"the zygote sent a {message.OP!r} message")

    def _lost(self) -> None:
        self.alive = False
        error = ZygoteLost("the sandbox zygote exited")
        for future in (self._ready, *self._started.values()):
            if not future.done():
                future.set_exception(error)
        # Its keepers die with it (PDEATHSIG): report that as the kill it is.
        for future in self.exits.values():
            if not future.done():
                future.set_result(signal.SIGKILL)

    def send(self, message: Message, fds: tuple[int, ...] = ()) -> None:
        """Send one packet; raises ZygoteLost when the zygote is gone or stuck."""
        if not self.alive:
            raise ZygoteLost("the sandbox zygote exited")
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            # Packets are small and the zygote always reads: a full buffer means it is stuck.
            self.sock.sendmsg([message.encode()], ancillary)
        except OSError as exc:
            self.alive = False
            raise ZygoteLost(f"cannot talk to the sandbox zygote: {exc}") from exc

    async def spawn(self, worker_id: str, recipe: Recipe, log_fds: tuple[int, ...]) -> int:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[int] = loop.create_future()
        self._started[worker_id] = started
        self.exits[worker_id] = loop.create_future()
        try:
            self.send(Spawn(worker_id, recipe), log_fds)
            return await started
        except BaseException:
            self._started.pop(worker_id, None)
            self.exits.pop(worker_id, None)
            raise

    async def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self.sock.close()


class ZygoteHost:
    """Starts the zygote on first use and again whenever it has died."""

    def __init__(self, state_dir: Path, spare: bool = True) -> None:
        self._state_dir = state_dir
        self._spare = spare  # whether the zygote keeps a spare sandbox for the next job
        self._zygote: _Zygote | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count()

    async def _get(self) -> _Zygote:
        async with self._lock:
            if self._zygote is not None and self._zygote.alive:
                return self._zygote
            if self._zygote is not None:
                log.warning("sandbox zygote died; restarting it")
                await self._zygote.stop()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "launcher.sandbox.zygote",
                    str(theirs.fileno()),
                    str(os.getpid()),
                    "spare" if self._spare else "no-spare",
                    pass_fds=(theirs.fileno(),),
                    # Never the daemon's environment: the forks inherit the zygote's memory.
                    env=helper_env(single_threaded=True),
                    stdin=asyncio.subprocess.DEVNULL,
                )
            finally:
                theirs.close()
            ours.setblocking(False)
            zygote = _Zygote(proc, ours)
            try:
                pid = await zygote.ready()
            except BaseException:
                await zygote.stop()
                raise
            log.info("sandbox zygote started (pid %d)", pid)
            self._zygote = zygote
            return zygote

    async def warm_up(self) -> None:
        """Start the zygote now, so that the first job does not pay for it."""
        await self._get()

    @property
    def pid(self) -> int | None:
        """The running zygote's pid, if one runs."""
        zygote = self._zygote
        return zygote.proc.pid if zygote is not None and zygote.alive else None

    async def start(
        self, recipe: Recipe, cgroup: WorkerCgroup | None, watchdog_bytes: int | None
    ) -> ZygoteWorker:
        retried = False
        while True:
            zygote = await self._get()
            read_fd, write_fd = os.pipe()
            err_read, err_write = os.pipe()
            worker_id = str(next(self._ids))
            try:
                pid = await zygote.spawn(worker_id, recipe, (write_fd, err_write))
            except ZygoteLost:
                os.close(read_fd)
                os.close(err_read)
                if retried:
                    raise
                retried = True  # it died between uses: once more with a fresh one
                continue
            except BaseException:
                os.close(read_fd)
                os.close(err_read)
                raise
            finally:
                os.close(write_fd)
                os.close(err_write)
            return ZygoteWorker(
                zygote, worker_id, pid, read_fd, cgroup, watchdog_bytes, err_fd=err_read
            )

    async def close(self) -> None:
        async with self._lock:
            if self._zygote is not None:
                await self._zygote.stop()
                self._zygote = None
