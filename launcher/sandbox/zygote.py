"""The warm zygote: a single-threaded, pre-imported interpreter that forks workers.

``python -m launcher.sandbox.zygote FD LAUNCHER_PID [spare|no-spare]``: FD is a
SOCK_SEQPACKET Unix socket to the launcher carrying the messages of ``zygote_messages`` (one
per packet); ``spare`` (the default): after each spawn (once a job is over, or
``REFILL_SECONDS`` after it), a spare sandbox is made for the next (``spare``). The
launcher starts it with a minimal fixed environment (never its own), so nothing of the
daemon's environment is in the memory its forked workers inherit.
It dies with the launcher (PR_SET_PDEATHSIG) and exits when the socket closes; its keepers
die with it, and their pid namespaces with them.
"""

from __future__ import annotations

import array
import gc
import os
import select
import signal
import socket
import sys
import time

# Pre-imported so that forked workers start with it loaded (the point of the zygote).
import numpy  # noqa: F401

from launcher.sandbox import confine, libc, seccomp, spare, tree
from launcher.sandbox.recipe import Recipe
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

try:
    # The worker and what its first createModelState call needs (asyncio, the model-author
    # API, the tensor codec): imported once here instead of in every worker.
    import asyncio  # noqa: F401

    import runtime._call
    import runtime._loader
    import runtime._options
    import runtime.api
    import runtime.tensor
    import runtime.worker  # noqa: F401

    confine.preload_main("runtime")
except ImportError:  # the worker runtime may be absent; workers then import it themselves
    pass


def _send(sock: socket.socket, message: Message) -> None:
    sock.sendall(message.encode())


def _receive(sock: socket.socket) -> tuple[Message | None, bool, list[int]]:
    """(message or None, end of the channel, fds received)."""
    fds = array.array("i")
    data, ancillary, _flags, _addr = sock.recvmsg(MAX_PACKET, socket.CMSG_SPACE(4 * 4))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data:
        return None, True, list(fds)
    try:
        return decode(data), False, list(fds)
    except ZygoteProtocolError as exc:
        os.write(2, f"zygote: dropped a bad packet: {exc}\n".encode())
        return None, False, list(fds)


def serve(sock: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    keepers: dict[int, str] = {}  # pid → worker id
    by_id: dict[str, int] = {}
    spares = _Spares()
    _send(sock, Ready(os.getpid()))
    while True:
        ready = select.select([sock.fileno(), wake_r], [], [], spares.due_in())[0]
        if not ready:
            spares.expire()  # too old to be claimed: gone until the next spawn
            spares.refill_due()
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
            for pid, status in _reaped():
                worker_id = keepers.pop(pid, None)
                if worker_id is not None:
                    del by_id[worker_id]
                    _send(sock, Exited(worker_id, status))
                    spares.refill_now()  # a job is over: the machine has room for it
                else:
                    spares.ended(pid, status)
        if sock.fileno() not in ready:
            continue
        message, ended, fds = _receive(sock)
        if ended:
            spares.discard(wait=True)  # gone before the launcher tidies its folders
            for pid in keepers:
                os.kill(pid, signal.SIGKILL)
            return
        if isinstance(message, Kill):
            if message.id in by_id:
                os.kill(by_id[message.id], signal.SIGTERM)
            spares.refill_now()  # a job is over: the machine has room for it
            continue
        if not isinstance(message, Spawn) or len(fds) not in (1, 2) or message.id in by_id:
            for fd in fds:
                os.close(fd)
            continue  # only the launcher talks to us; a malformed packet is dropped
        worker_id, recipe = message.id, message.recipe
        pid = spares.claim(recipe, fds)
        if not pid:
            zygote_pid = os.getpid()
            # Everything the zygote holds is left out of the collector's scans in the children:
            # a collection there would touch (and so copy) every inherited page of the heap.
            gc.freeze()
            pid = os.fork()
            if pid == 0:
                sock.detach()
                tree.main_from_zygote(recipe, fds[0], zygote_pid, fds[1] if len(fds) > 1 else None)
        for fd in fds:
            os.close(fd)
        keepers[pid] = worker_id
        by_id[worker_id] = pid
        _send(sock, Started(worker_id, pid))
        # The next job's spare, once this one's is under way (not beside its start, on a
        # small machine): from the base alone, with this job's message and recipe gone from
        # the stack the spare (and its job) inherits.
        base = spare.base_recipe(recipe)
        del message, recipe
        spares.refill_later(base)


def _reaped() -> list[tuple[int, int]]:
    """Every child that has ended: (pid, wait status)."""
    out: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return out
        if pid == 0:
            return out
        out.append((pid, status))


#: Spares of one base that fail to build on their own, in a row, before no more are made.
SPARE_FAILURES = 3
#: How long after a spawn its spare is made at the latest: sooner once a job is over (a Kill,
#: an exit). Building it (two forks, namespaces, mounts) beside the job that just started
#: took CPU from that job's start on a machine of two cores.
REFILL_SECONDS = 0.05
#: How long the zygote, stopping, waits for its spare to be gone.
DISCARD_WAIT = 2.0


class _Spares:
    """The one spare sandbox (``spare``), made after each spawn for the next."""

    def __init__(self) -> None:
        self.spare: spare.Spare | None = None
        self.failures: dict[str, int] = {}  # base → spares of it that failed in a row
        self._next: Recipe | None = None  # the base of the spare to make (``refill_later``)
        self._next_at = 0.0

    def claim(self, recipe: Recipe, fds: list[int]) -> int:
        """The spare's keeper pid, now this job's; 0: none fits (fork one from scratch)."""
        current, self.spare = self.spare, None
        if current is None:
            return 0
        if current.fits(recipe) and current.claim(recipe, fds):
            self.failures.pop(current.base, None)
            return current.pid
        current.discard()
        return 0

    def refill_later(self, base: Recipe) -> None:
        """Make a spare of ``base`` within ``REFILL_SECONDS``, or at the next ``refill_now``."""
        self._next, self._next_at = base, time.monotonic() + REFILL_SECONDS

    def refill_now(self) -> None:
        if self._next is not None:
            base, self._next = self._next, None
            self.refill(base)

    def refill_due(self) -> None:
        if self._next is not None and time.monotonic() >= self._next_at:
            self.refill_now()

    def refill(self, base: Recipe) -> None:
        if not spare.ENABLED or self.failures.get(spare.base_of(base), 0) >= SPARE_FAILURES:
            return
        self.discard()
        gc.freeze()
        self.spare = spare.fork(base)

    def due_in(self) -> float | None:
        """Seconds until the spare is to be made or is too old to be claimed (None: never)."""
        now = time.monotonic()
        if self._next is not None:
            return max(0.0, self._next_at - now)
        if self.spare is None:
            return None
        return max(0.0, self.spare.born + spare.MAX_AGE - now)

    def expire(self) -> None:
        if self.spare is not None and self.due_in() == 0.0:
            self.discard()

    def ended(self, pid: int, status: int) -> None:
        """A child that was no job's keeper ended: the spare, unclaimed."""
        current = self.spare
        if current is None or current.pid != pid:
            return
        self.spare = None
        current.channel.close()
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            # It failed on its own (it said why on stderr); a few in a row: no more.
            self.failures[current.base] = self.failures.get(current.base, 0) + 1

    def discard(self, wait: bool = False) -> None:
        """Kill the spare (reaped by the SIGCHLD loop). ``wait`` (the zygote is stopping):
        no spare is made any more, and this one is reaped here, for up to ``DISCARD_WAIT``
        seconds, since a spare still being built writes in the launcher's run folder."""
        if wait:
            self._next = None
        current, self.spare = self.spare, None
        if current is None:
            return
        current.discard()
        if wait:
            _reap(current.pid, DISCARD_WAIT)


def _reap(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.005)


def main() -> None:
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if seccomp.supported():
        seccomp._program()  # built here once, inherited by every worker
    launcher_pid = int(sys.argv[2])
    spare.ENABLED = sys.argv[3:4] != ["no-spare"]
    if os.getppid() != launcher_pid:
        sys.exit("zygote: the launcher is already gone")
    sock = socket.socket(fileno=int(sys.argv[1]))
    serve(sock)


if __name__ == "__main__":
    main()
