"""The spare sandbox: the next job's keeper, init and worker, made before that job asks.

After each spawn the zygote forks one spare for the next job, off the job's path: the keeper
takes its process settings and unshares the namespaces, forks the init (pid 1 of the new pid
namespace), and the init builds the part of the file system view that every job of this
launcher shares (``mounts.build_base``: system directories, /etc, /dev, the budget's tmpfs,
the interpreter and packages, the hidden paths covered), then forks the worker-to-be
(``spare_worker``). All three then wait, named ``sandbox-spare``, holding no job's data.

A Spawn whose recipe wants the same base (namespaces, hostname, the shared part of the
layout) is handed to the spare: its recipe and log fds go to the keeper over a socketpair,
the keeper opens the job's cgroup files and passes recipe, log fds and the ``tasks`` files on
to the init, which joins the cgroups, resizes the budget to the job's disk, binds the job's
devices, model folders and job folder, covers the hidden paths again, pivots into the view
and hands the job to its waiting worker; from there on it is the same tree as a fork from
scratch (``tree``). Any other Spawn, or a spare older than ``MAX_AGE`` (its mount namespace
copies the host's mounts of its time), gets a keeper forked from scratch, and the spare is
replaced.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import socket
import time
import traceback
from dataclasses import replace

from launcher.sandbox import libc, spare_worker, tree
from launcher.sandbox.claim_packets import MAX_RECIPE, pair, receive, send
from launcher.sandbox.mounts import build_base, finish_root, resize_budget
from launcher.sandbox.recipe import SETUP_FAILED, Recipe

#: A spare older than this is replaced, not used.
MAX_AGE = 30.0
#: The budget tmpfs a spare mounts before it knows its job's disk (resized when claimed).
SPARE_BUDGET_MEBIBYTES = 1
#: What ``ps`` shows for an idle spare (``/proc/PID/comm``); a claimed one drops the name.
NAME = b"sandbox-spare"
#: Whether the zygote makes spares (``--sandbox-disable spare`` turns it off).
ENABLED = True
#: Whether a spare's init forks its worker ahead too (``spare_worker``).
WORKER_AHEAD = True


def base_of(recipe: Recipe) -> str:
    """What a spare must share with its job: everything it builds before the job is known."""
    layout = recipe.layout
    shared = None
    if layout is not None:
        shared = {
            "staging": layout.staging,
            "support": layout.support,
            "hidden": layout.hidden,
            "fresh_proc": layout.fresh_proc,
            "scratch": layout.scratch,
        }
    return json.dumps([recipe.namespaces, recipe.hostname, shared], sort_keys=True)


# ---- the zygote's side ----


class Spare:
    """A spare the zygote made (``fork``): its keeper's pid and the channel to claim it."""

    def __init__(self, pid: int, channel: socket.socket, base: str) -> None:
        self.pid = pid
        self.channel = channel
        self.base = base
        self.born = time.monotonic()

    def fits(self, recipe: Recipe) -> bool:
        return base_of(recipe) == self.base and time.monotonic() - self.born < MAX_AGE

    def claim(self, recipe: Recipe, fds: list[int]) -> bool:
        """Hand it the job (the log fds stay the caller's to close); False if it cannot take
        it, and then it is discarded."""
        data = json.dumps(recipe.to_json(), separators=(",", ":")).encode()
        try:
            if len(data) > MAX_RECIPE:
                raise OSError("recipe too large for a spare")
            send(self.channel, data, fds)
        except OSError:
            self.discard()
            return False
        self.channel.close()
        return True

    def discard(self) -> None:
        self.channel.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def base_recipe(recipe: Recipe) -> Recipe:
    """What a spare for jobs like ``recipe`` is built from: its base alone, none of the job's
    own data (the spare's memory, and so its job's, holds no other job's recipe)."""
    base = Recipe(argv=[], env={}, cwd="/", namespaces=recipe.namespaces, hostname=recipe.hostname)
    if recipe.layout is not None:
        base.layout = replace(
            recipe.layout,
            read_only=[],
            read_only_real=[],
            writable=[],
            devices=[],
            tmp_mebibytes=SPARE_BUDGET_MEBIBYTES,
            disk_inodes=1024,
        )
    return base


def fork(base: Recipe) -> Spare:
    """Fork a spare from ``base`` (``base_recipe``)."""
    ours, theirs = pair()
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            tree.clean_slate()
            _keeper(base, theirs, zygote_pid)
        finally:
            # Never unwind into the zygote's loop, whose frames are still on this stack.
            traceback.print_exc()
            os._exit(SETUP_FAILED)
    theirs.close()
    return Spare(pid, ours, base_of(base))


# ---- the spare's side ----


def _set_name(name: bytes) -> None:
    with contextlib.suppress(OSError):
        libc.set_name(name)


def _keeper(base: Recipe, channel: socket.socket, zygote_pid: int) -> None:
    """The spare's keeper: ready its namespaces and init, wait for the job, then keep it."""
    comm = libc.get_name()
    tree.become_keeper(zygote_pid)
    _set_name(NAME)
    os.closerange(3, channel.fileno())
    os.closerange(channel.fileno() + 1, os.sysconf("SC_OPEN_MAX"))
    if base.namespaces:
        libc.unshare(base.namespaces)
    pipes = tree.Pipes()
    to_init, from_keeper = pair()
    keeper = tree.Keeper()
    init = os.fork()
    if init == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        channel.close()
        to_init.close()
        pipes.init_side()
        _init(base, pipes, from_keeper, comm)
    keeper.forked(init)
    from_keeper.close()
    pipes.keeper_side()
    # Until claimed: a spare whose init ended (it could not build the view) ends too, before
    # any job is handed to it (the status pipe's EOF: only the init holds its write end).
    ready = select.select([channel.fileno(), pipes.status_r], [], [])[0]
    if pipes.status_r in ready:
        os._exit(SETUP_FAILED)
    data, fds = receive(channel)  # b"": the zygote is done with it
    channel.close()
    if not data:
        os._exit(0)
    if keeper.killed:  # a Kill right after the hand-over ends it as the worker would have
        tree.end_like(signal.SIGKILL)
    recipe = Recipe.from_json(json.loads(data))
    if base_of(recipe) != base_of(base) or len(fds) not in (1, 2):
        os.write(2, b"sandbox: a spare was claimed for another base\n")
        os._exit(SETUP_FAILED)
    tree.redirect_output(fds[0], fds[1] if len(fds) > 1 else None)
    for fd in fds:
        os.close(fd)
    _set_name(comm)
    try:
        # Before the init pivots (it moves this process's root too).
        procs, tasks = tree.open_joins(recipe.cgroup_procs)
        send(to_init, data, [1, 2, *tasks])
    except OSError as exc:
        if keeper.killed:  # the init is gone because we were told to kill it
            tree.end_like(signal.SIGKILL)
        os.write(2, f"sandbox: setting up the worker failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    for fd in tasks:
        os.close(fd)
    to_init.close()
    keeper.serve(pipes, procs)


def _init(base: Recipe, pipes: tree.Pipes, keeper: socket.socket, comm: bytes) -> None:
    """The spare's init: build the shared view, wait for the job, finish it, start the worker."""
    try:
        tree.die_with_parent(pipes.alive_r)
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        if base.namespaces & libc.CLONE_NEWUTS:
            libc.sethostname(base.hostname)
        if base.layout is not None:
            build_base(base.layout, SPARE_BUDGET_MEBIBYTES)
        waiting = spare_worker.fork(pipes, keeper, comm) if WORKER_AHEAD else None
        data, fds = receive(keeper)
        keeper.close()
        if not data or len(fds) < 2:
            os._exit(SETUP_FAILED if data else 0)
        tree.redirect_output(fds[0], fds[1])
        os.close(fds[0])
        os.close(fds[1])
        tasks = fds[2:]
        tree.join_self(tasks, close=False)  # before the job's own work: charged to its cgroups
        _set_name(comm)
        recipe = Recipe.from_json(json.loads(data))
        if waiting is not None and len(tasks) != len(recipe.cgroup_procs):
            waiting.dismiss()  # a join by pid (v2) would leave it behind: fork at the end
            waiting = None
        if waiting is None:
            for fd in tasks:
                os.close(fd)
        if recipe.layout is not None:
            resize_budget(recipe.layout)
            finish_root(recipe.layout)
    except OSError as exc:
        os.write(2, f"sandbox: setting up the worker failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    if waiting is None:
        tree.start_worker(recipe, pipes)
    else:
        tree.start_worker(recipe, pipes, functools.partial(_hand_over, waiting, data, tasks))


def _hand_over(waiting: spare_worker.Waiting, data: bytes, tasks: list[int]) -> int:
    """The job to the spare's waiting worker (its pid; 0: fork one), the joins' files closed."""
    try:
        return waiting.hand_over(data, tasks)
    finally:
        for fd in tasks:
            os.close(fd)
