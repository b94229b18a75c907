"""The spare's worker: forked by the spare's init before any job is known, so that a claim
does not wait for a fork of a whole interpreter and its first page copies.

Once the init has built the shared view it forks the worker-to-be. That process closes what
is the init's alone, empties its capability bounding set (its effective capabilities stay
until ``confine`` drops them: the cgroup joins and the uid drop need them) and waits on its
socket, named like its spare, holding no job's data; it dies with its init.

When a job claims the spare, the init finishes the view (its pivot moves the root and the
working folder of every process of the mount namespace that shares its own, this one's too),
joins itself to the job's cgroups, waits for the keeper's joins, then hands the worker its
recipe, the job's stdout and stderr and the cgroups' ``tasks`` files. The worker joins those
itself before anything else, refuses to go on unless its root is the init's (the device and
inode the init sends), and from there runs as a worker forked at that moment does
(``confine.run_worker``). A claim whose joins are not all ``tasks`` files (cgroup v2: the
keeper moves the init by pid, which would leave this process behind) dismisses it, and the
init forks its worker then, as without a spare.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import traceback

from launcher.sandbox import confine, libc, tree
from launcher.sandbox.claim_packets import pair, receive, send
from launcher.sandbox.recipe import SETUP_FAILED, Recipe

#: The hand-over's header: the device and inode of the init's root after its pivot.
_ROOT = struct.Struct("QQ")


class Waiting:
    """The init's handle on its waiting worker."""

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self.channel = channel

    def hand_over(self, data: bytes, tasks: list[int]) -> int:
        """Give it the job (``data``: the recipe as the keeper sent it; stdout and stderr are
        this process's own 1 and 2); its pid, or 0 when it cannot take it (then it is gone
        and the caller forks a worker)."""
        root = os.stat("/")
        try:
            send(self.channel, _ROOT.pack(root.st_dev, root.st_ino) + data, [1, 2, *tasks])
        except OSError:
            self.dismiss()
            return 0
        self.channel.close()
        return self.pid

    def dismiss(self) -> None:
        """End it (the init's reaping takes its exit like any orphan's)."""
        self.channel.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def fork(pipes: tree.Pipes, keeper: socket.socket, comm: bytes) -> Waiting | None:
    """In the spare's init, its view's shared part built: fork the waiting worker (None: it
    could not be forked; the job's worker is then forked at the claim). ``keeper``: the init's
    channel from its keeper, closed in the child; ``comm``: the name a claimed worker takes."""
    try:
        ours, theirs = pair()
    except OSError:
        return None
    init = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return None
    if pid == 0:
        try:
            ours.close()
            keeper.close()
            _wait(theirs, pipes, init, comm)
        finally:
            traceback.print_exc()
            os._exit(SETUP_FAILED)  # never back into the init's code on this stack
    theirs.close()
    return Waiting(pid, ours)


def _wait(channel: socket.socket, pipes: tree.Pipes, init: int, comm: bytes) -> None:
    """The waiting worker's body; never returns."""
    for fd in (pipes.status_w, pipes.joined_r):  # the init's ends alone (the keeper waits on
        os.close(fd)  # the status pipe's EOF to tell that the init is gone)
    tree.die_with_parent(pipes.alive_r)
    if os.getppid() != init:
        os._exit(SETUP_FAILED)
    os.chdir("/")  # the pivot moves a working folder at the old root, and no other
    if libc.capabilities_held():
        libc.drop_bounding_set(confine.LAST_CAP)
        libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    try:
        data, fds = receive(channel)
    except OSError:
        os._exit(SETUP_FAILED)
    channel.close()
    if not data:
        os._exit(0)  # the spare was dismissed
    if len(data) < _ROOT.size or len(fds) < 2:
        os._exit(SETUP_FAILED)
    try:
        tree.redirect_output(fds[0], fds[1])
        tree.join_self(fds[2:])  # before any step of the job's: charged to its cgroups
        for fd in fds[:2]:
            os.close(fd)
        root = os.stat("/")
        if (root.st_dev, root.st_ino) != _ROOT.unpack_from(data):
            os.write(2, b"sandbox: the waiting worker is not in its job's view\n")
            os._exit(SETUP_FAILED)
        with contextlib.suppress(OSError):
            libc.set_name(comm)
        recipe = Recipe.from_json(json.loads(data[_ROOT.size :]))
    except (OSError, ValueError, TypeError) as exc:
        os.write(2, f"sandbox: setting up the worker failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    confine.run_worker(recipe, init, pipes.alive_r)
