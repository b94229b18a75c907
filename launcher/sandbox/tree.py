"""The child side: the worker's process tree, built from a Recipe in a single-threaded process.

Three processes, each with one job:
- the *keeper* (host pid namespace, root): unshares the namespaces, moves the init into the
  worker's cgroups, is the child subreaper, waits, cleans up, and finally ends exactly as the
  worker did (re-raising its signal, so a SIGKILL stays a SIGKILL). SIGTERM asks it to kill
  the whole tree.
- the *init* (pid 1 of the new pid namespace): builds the file system view (meanwhile the
  keeper joins it to the cgroups; it forks the worker only once that is done), reaps
  orphans; when it exits the kernel kills everything left in the namespace.
- the *worker*: rlimits, uid drop, capabilities dropped, no_new_privs, seccomp, then exec
  (or, forked from the zygote, runs the module in place).
Each sets PR_SET_PDEATHSIG, so the chain dies with the launcher.
``spare.py`` builds the same tree ahead of its job, from these parts.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import select
import signal
import struct
import traceback
from collections.abc import Callable
from pathlib import Path

from launcher.sandbox import confine, libc
from launcher.sandbox.mounts import build_root
from launcher.sandbox.recipe import SETUP_FAILED, Recipe


def die_with_parent(alive_fd: int | None = None) -> None:
    """PDEATHSIG, then make sure the parent did not already go (alive_fd: EOF if so)."""
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if alive_fd is not None and select.select([alive_fd], [], [], 0)[0]:
        os._exit(SETUP_FAILED)


def _children() -> list[int]:
    me = str(os.getpid())
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                out.append(int(entry.name))
    return out


def kill_descendants() -> None:
    """Kill and reap every child until none is left (orphans keep arriving: subreaper)."""
    while True:
        for pid in _children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def end_like(status: int) -> None:
    """Exit the way a wait status says (a signal is re-raised on ourselves)."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if number not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [number])
        os.kill(os.getpid(), number)
        os._exit(128 + number)
    os._exit(os.waitstatus_to_exitcode(status))


def become_keeper(parent_pid: int) -> None:
    """The keeper's own process settings: a session of its own, dying with its parent (which
    must still be ``parent_pid``), the reaper of its orphans."""
    os.setsid()
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(SETUP_FAILED)
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)


def redirect_output(log_fd: int, err_fd: int | None) -> None:
    """stdin from /dev/null, stdout to ``log_fd``, stderr to ``err_fd`` (or ``log_fd``)."""
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd if err_fd is None else err_fd, 2)
    if null > 2:
        os.close(null)


class Pipes:
    """The keeper's pipes to its init: the worker's wait status (init → keeper), the
    keeper's life (EOF: it is gone), and the byte that says the cgroup joins are done."""

    def __init__(self) -> None:
        self.status_r, self.status_w = os.pipe()
        self.alive_r, self.alive_w = os.pipe()
        self.joined_r, self.joined_w = os.pipe()

    def init_side(self) -> None:
        """In the init: close the keeper's ends."""
        for fd in (self.status_r, self.alive_w, self.joined_w):
            os.close(fd)

    def keeper_side(self) -> None:
        """In the keeper, once the init is forked: close the init's ends."""
        for fd in (self.status_w, self.alive_r, self.joined_r):
            os.close(fd)


def run_keeper(recipe: Recipe, log_fd: int, parent_pid: int, err_fd: int | None = None) -> None:
    """Body of the keeper process; never returns. The worker's stdout goes to ``log_fd``, its
    stderr to ``err_fd`` (or ``log_fd`` too)."""
    try:
        become_keeper(parent_pid)
        redirect_output(log_fd, err_fd)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        if recipe.namespaces:
            libc.unshare(recipe.namespaces)
        pipes = Pipes()
        # Opened before the init exists: its pivot_root moves this process's root too.
        procs, tasks = open_joins(recipe.cgroup_procs)
    except OSError as exc:
        os.write(2, f"sandbox: setting up the worker failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    keeper = Keeper()
    init = os.fork()
    if init == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        pipes.init_side()
        for fd in procs:
            os.close(fd)
        run_init(recipe, pipes, tasks)
    for fd in tasks:
        os.close(fd)
    keeper.forked(init)
    pipes.keeper_side()
    keeper.serve(pipes, procs)


class Keeper:
    """The keeper's part once its init is forked: SIGTERM kills the tree, the cgroup joins,
    the wait, the cleanup and the ending like the worker's."""

    def __init__(self) -> None:
        self.killed = False
        self.init = 0
        # Before the fork: a kill request that arrives while forking is not lost.
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, _signum: int, _frame: object) -> None:
        self.killed = True
        if self.init:
            # The host may have killed it through the cgroup already (and we reaped it).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init, signal.SIGKILL)

    def forked(self, init: int) -> None:
        self.init = init
        if self.killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)

    def serve(self, pipes: Pipes, procs: list[int]) -> None:
        """Join the init to the cgroups, wait for it, clean up, end as the worker did."""
        join_cgroups(procs, self.init, pipes.joined_w)
        while True:
            pid, init_status = os.waitpid(-1, 0)
            if pid == self.init:
                break
        report = os.read(pipes.status_r, 4)
        kill_descendants()
        if self.killed:
            end_like(signal.SIGKILL)
        end_like(struct.unpack("i", report)[0] if len(report) == 4 else init_status)


def open_joins(paths: list[str]) -> tuple[list[int], list[int]]:
    """The cgroups' files to join the init through: ``(procs, tasks)``. On cgroup v1 the init
    joins each itself, by writing ``0`` (itself, one thread) to the group's ``tasks`` file:
    the kernel moves a single thread that moves itself without the global lock whose first
    write waits out an RCU grace period (up to ~12 ms measured on v1, on the cold path). A
    ``cgroup.procs`` with no ``tasks`` beside it (v2) is written by the keeper, the init's pid."""
    procs, tasks = [], []
    for path in paths:
        folder, name = os.path.split(path)
        single = os.path.join(folder, "tasks")
        if name == "cgroup.procs" and os.path.exists(single):
            tasks.append(os.open(single, os.O_WRONLY | os.O_CLOEXEC))
        else:
            procs.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
    return procs, tasks


def join_cgroups(procs: list[int], init: int, joined_w: int) -> None:
    """Move the init into the worker's cgroups, from the keeper while the init builds its
    file system view: the first ``cgroup.procs`` write waits out an RCU grace period (~5-8 ms
    on cgroup v1), which so overlaps the view instead of preceding it. The init forks the
    worker only after the byte that says every join succeeded (EOF: one failed, it exits)."""
    try:
        for fd in procs:
            os.write(fd, str(init).encode())
        os.write(joined_w, b"1")
    except ProcessLookupError:
        pass  # the init is gone already (killed): its own end is the worker's
    except OSError as exc:
        os.write(2, f"sandbox: setting up the worker failed: {exc}\n".encode())
    for fd in procs:
        os.close(fd)
    os.close(joined_w)


def run_init(recipe: Recipe, pipes: Pipes, tasks: list[int]) -> None:
    try:
        die_with_parent(pipes.alive_r)
        join_self(tasks)  # before anything else: all it does from here on is charged there
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        if recipe.namespaces & libc.CLONE_NEWUTS:
            libc.sethostname(recipe.hostname)
        if recipe.layout is not None:
            build_root(recipe.layout)
    except OSError as exc:
        os.write(2, f"sandbox: setting up the worker failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    start_worker(recipe, pipes)


def join_self(tasks: list[int], close: bool = True) -> None:
    """Move this process into the cgroups whose ``tasks`` files are ``tasks`` (v1)."""
    for fd in tasks:
        os.write(fd, b"0")
        if close:
            os.close(fd)


def start_worker(recipe: Recipe, pipes: Pipes, hand_over: Callable[[], int] | None = None) -> None:
    """The rest of the init, its view built: the job folder's owner, the wait for the
    cgroup joins, the worker's fork (or ``hand_over``: the job given to a worker forked
    ahead, its pid; 0 if it could not take it), the reaping until the worker ends; never
    returns."""
    try:
        if recipe.uid is not None:
            for path in [recipe.cwd, *[str(p) for p in Path(recipe.cwd).iterdir()]]:
                os.lchown(path, recipe.uid, recipe.gid if recipe.gid is not None else -1)
        # Not one step of the worker before the keeper joined this process to its cgroups.
        joined = os.read(pipes.joined_r, 1) == b"1"
        os.close(pipes.joined_r)
    except OSError as exc:
        os.write(2, f"sandbox: setting up the worker failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    if not joined:
        os._exit(SETUP_FAILED)
    me = os.getpid()
    worker = hand_over() if hand_over is not None else 0
    if not worker:
        worker = os.fork()
        if worker == 0:
            os.close(pipes.status_w)
            confine.run_worker(recipe, me, pipes.alive_r)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == worker:
            break
    os.write(pipes.status_w, struct.pack("i", status))
    if not recipe.namespaces & libc.CLONE_NEWPID:
        kill_descendants()
    os._exit(0)


def main_from_zygote(
    recipe: Recipe, log_fd: int, zygote_pid: int, err_fd: int | None = None
) -> None:
    """Entry of a process just forked from the zygote: a clean slate, then the keeper."""
    clean_slate()
    try:
        run_keeper(recipe, log_fd, zygote_pid, err_fd)
    finally:
        # Never unwind into the zygote's loop, whose frames are still on this stack.
        traceback.print_exc()
        os._exit(SETUP_FAILED)


def clean_slate() -> None:
    """A process just forked from the zygote: no collector, the default signal handling."""
    gc.disable()  # the keeper and the init make no garbage worth a scan; the worker turns it on
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
