"""The Ray side of a node: a task (or an actor's method) that starts ``launcher run-job`` there.

It runs in a Ray worker process on the chosen node, unpacks the model bundle into the
node's cache (only when that digest is not there yet), and hands the job (on stdin) to a
``run-job``; ``run-job`` dies with this process (parent-death signal), so ``ray.cancel``
and a dead Ray worker take the sandboxed worker with them.

Each Ray worker process keeps one ``run-job`` started ahead for its next job (``Spare``):
made once a job is over (not beside its start), for that job's node folder and sandbox
settings; it has imported everything, detected the sandbox's layers and started its zygote
while it waited. A job finds it or, when there is none (the first job of this process) or
it does not fit, starts one from scratch as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import ray

from launcher.executors.ray import bundle
from launcher.executors.ray.sampling import NodeSampler


def _die_with_parent() -> None:
    from launcher.sandbox import libc

    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)


#: The nice value a spare prepares at, where it can raise it again once its job comes (root):
#: it takes no CPU from jobs running beside it on the node.
SPARE_NICE = 10


def _spare_child() -> None:
    _die_with_parent()
    os.nice(SPARE_NICE)


def _start(ahead: list[str] | None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "launcher.executors.ray.node"]  # = run-job, imports less
    niced = ahead is not None and os.geteuid() == 0  # root: it can raise its priority again
    if ahead is not None:
        # (the nice it goes back to once its job comes: this Ray worker's)
        argv += [*ahead, str(os.getpriority(os.PRIO_PROCESS, 0))] if niced else ahead
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, preexec_fn=_spare_child if niced else _die_with_parent
    )


def _ahead_args(job: dict[str, Any]) -> list[str]:
    """What a ``run-job`` started ahead prepares for: the node folder and sandbox settings."""
    disabled = ",".join(sorted(str(name) for name in job.get("sandboxDisable", [])))
    return ["--ahead", str(job["nodeDir"]), disabled]


def _dismiss(proc: subprocess.Popen[bytes]) -> None:
    """An unused spare: EOF tells it to tidy up and go; reaped in the background."""
    with contextlib.suppress(OSError):
        assert proc.stdin is not None
        proc.stdin.close()
    threading.Thread(target=proc.wait, name="run-job-reaper", daemon=True).start()


class Spare:
    """The next job's ``run-job``, started ahead (one per Ray worker process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: tuple[list[str], subprocess.Popen[bytes]] | None = None

    def take(self, job: dict[str, Any]) -> subprocess.Popen[bytes]:
        """The spare when it is alive and fits ``job``, else a ``run-job`` started now."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            args, proc = spare
            if args == _ahead_args(job) and proc.poll() is None:
                return proc
            _dismiss(proc)
        return _start(None)

    def refill(self, job: dict[str, Any]) -> None:
        """Start the spare for the next job like ``job``, unless one is there already."""
        args = _ahead_args(job)
        with self._lock:
            current = self._spare
            if current is not None and current[0] == args and current[1].poll() is None:
                return
            self._spare = (args, _start(args))
        if current is not None:
            _dismiss(current[1])


_spare = Spare()


def run_on_node(job: dict[str, Any], bundle_refs: list[Any]) -> dict[str, Any]:
    cache = Path(job["nodeDir"]) / "bundles"
    model_dir = bundle.cached(cache, job["digest"])
    if model_dir is None:
        model_dir = bundle.unpack(cache, job["digest"], ray.get(bundle_refs[0]))
    mount_dirs = {}
    for mount, ref in zip(job.get("mounts", []), bundle_refs[1:], strict=True):
        folder = bundle.cached(cache, mount["digest"])
        if folder is None:
            folder = bundle.unpack(cache, mount["digest"], ray.get(ref))
        mount_dirs[mount["path"]] = str(folder)
    context = ray.get_runtime_context()
    job = {
        **job,
        "modelDir": str(model_dir),
        "mountDirs": mount_dirs,
        "nodeId": context.get_node_id(),
        "gpuIds": [str(g) for g in ray.get_gpu_ids()],
    }
    proc = _spare.take(job)
    proc.communicate(json.dumps(job).encode())
    _spare.refill(job)  # once this job is over: its start had the machine to itself
    return {"returncode": proc.returncode, "nodeId": job["nodeId"]}


node_task = ray.remote(max_retries=0)(run_on_node)


class LauncherActor:
    """A persistent launcher on a node: it holds the launcher's spec for its life, and its
    workers run here, one ``run`` call each (they share the spec as one budget there). It
    samples the launcher's usage on this node from its creation (``samples``)."""

    def __init__(
        self, group: str, interval: float, window: int, node_dir: str, cgroup: bool
    ) -> None:
        self._sampler = NodeSampler(group, interval, window, Path(node_dir), cgroup)
        self._node_id = ray.get_runtime_context().get_node_id()

    def samples(self, since: float | None) -> dict[str, Any]:
        """This node's id, where the samples come from, and those at or after ``since``."""
        return {
            "nodeId": self._node_id,
            "source": self._sampler.source,
            "samples": self._sampler.since(since),
        }

    def run(self, job: dict[str, Any], bundle_refs: list[Any]) -> dict[str, Any]:
        return run_on_node(job, bundle_refs)


_actor_options: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0, "max_concurrency": 64}
launcher_actor = ray.remote(**_actor_options)(LauncherActor)
