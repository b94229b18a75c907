"""The warm zygote: a single-threaded, pre-imported interpreter that forks workers.

``python -m launcher.sandbox.zygote FD LAUNCHER_PID``: FD is a SOCK_SEQPACKET Unix socket to
the launcher carrying the messages of ``zygote_messages`` (one per packet). The launcher starts
it with a minimal fixed environment (never its own), so nothing of the daemon's environment is
in the memory its forked workers inherit.
It dies with the launcher (PR_SET_PDEATHSIG) and exits when the socket closes; its keepers
die with it, and their pid namespaces with them.
"""

from __future__ import annotations

import array
import contextlib
import gc
import os
import select
import signal
import socket
import sys
import time

# Pre-imported so that forked workers start with it loaded (the point of the zygote).
import numpy  # noqa: F401

from launcher.sandbox import libc, seccomp, tree
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
except ImportError:  # the worker runtime may be absent; workers then import it themselves
    pass


#: The one receive buffer (the zygote is single-threaded): no 4 MiB allocation per packet.
_PACKET = bytearray(MAX_PACKET)


def _send(sock: socket.socket, message: Message) -> None:
    sock.sendall(message.encode())


def _receive(sock: socket.socket) -> tuple[Message | None, bool, list[int]]:
    """(message or None, end of the channel, fds received)."""
    fds = array.array("i")
    size, ancillary, _flags, _addr = sock.recvmsg_into([_PACKET], socket.CMSG_SPACE(4 * 4))
    data = bytes(memoryview(_PACKET)[:size])
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


#: A spare keeper older than this is replaced, not used: its mount namespace is a copy of the
#: host's from when it was made, and the host's mounts may have changed since.
SPARE_MAX_AGE = 30.0


class _Spare:
    """A keeper forked ahead of its job (``tree.main_spare``), waiting on ``channel`` for the
    Spawn packet and log fds that make it a job's."""

    def __init__(self, pid: int, channel: socket.socket, namespaces: int) -> None:
        self.pid = pid
        self.channel = channel
        self.namespaces = namespaces
        self.born = time.monotonic()

    def fits(self, recipe_namespaces: int) -> bool:
        return self.namespaces == recipe_namespaces and time.monotonic() - self.born < SPARE_MAX_AGE

    def hand_over(self, message: Spawn, fds: list[int]) -> bool:
        """Give it the job; False if it cannot take it (then it is killed)."""
        try:
            self.channel.sendmsg(
                [message.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            )
            return True
        except OSError:
            self.discard()
            return False
        finally:
            self.channel.close()

    def discard(self) -> None:
        self.channel.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _claim(channel: socket.socket) -> tuple[Recipe, list[int]] | None:
    """In a spare: wait for its Spawn packet (None: the zygote closed the channel)."""
    message, ended, fds = _receive(channel)
    if ended or not isinstance(message, Spawn):
        return None
    return message.recipe, fds


def _fork_spare(launcher_sock: socket.socket, wake: tuple[int, int], namespaces: int) -> _Spare:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote_pid = os.getpid()
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        ours.close()
        os.close(launcher_sock.detach())  # nothing of the zygote's channel in a keeper
        signal.set_wakeup_fd(-1)
        for fd in wake:
            os.close(fd)
        tree.main_spare(lambda: _claim(theirs), namespaces, zygote_pid)
    theirs.close()
    return _Spare(pid, ours, namespaces)


def serve(sock: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    keepers: dict[int, str] = {}  # pid → worker id
    by_id: dict[str, int] = {}
    spare: _Spare | None = None  # made after each spawn, for the next one
    _send(sock, Ready(os.getpid()))
    while True:
        ready = select.select([sock.fileno(), wake_r], [], [])[0]
        if wake_r in ready:
            os.read(wake_r, 4096)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                if spare is not None and pid == spare.pid:  # died waiting (killed)
                    spare.channel.close()
                    spare = None
                worker_id = keepers.pop(pid, None)
                if worker_id is not None:
                    del by_id[worker_id]
                    _send(sock, Exited(worker_id, status))
        if sock.fileno() not in ready:
            continue
        message, ended, fds = _receive(sock)
        if ended:
            if spare is not None:
                spare.discard()
            for pid in keepers:
                os.kill(pid, signal.SIGKILL)
            return
        if isinstance(message, Kill):
            if message.id in by_id:
                os.kill(by_id[message.id], signal.SIGTERM)
            continue
        if not isinstance(message, Spawn) or len(fds) not in (1, 2) or message.id in by_id:
            for fd in fds:
                os.close(fd)
            continue  # only the launcher talks to us; a malformed packet is dropped
        worker_id, recipe = message.id, message.recipe
        pid = 0
        if spare is not None:
            if spare.fits(recipe.namespaces) and spare.hand_over(message, fds):
                pid = spare.pid
            else:
                spare.discard()
            spare = None
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
        # The next job's keeper, made now that this one's is on its way (off its path).
        spare = _fork_spare(sock, (wake_r, wake_w), recipe.namespaces)


def main() -> None:
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if seccomp.supported():
        seccomp._program()  # built here once, inherited by every worker
    launcher_pid = int(sys.argv[2])
    if os.getppid() != launcher_pid:
        sys.exit("zygote: the launcher is already gone")
    sock = socket.socket(fileno=int(sys.argv[1]))
    serve(sock)


if __name__ == "__main__":
    main()
