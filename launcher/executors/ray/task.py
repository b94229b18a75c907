"""The Ray side of a node: a task (or an actor's method) that starts ``launcher run-job`` there.

It runs in a Ray worker process on the chosen node, unpacks the model bundle into the
node's cache (only when that digest is not there yet), and starts ``run-job`` with the
job on stdin; ``run-job`` dies with this process (parent-death signal), so ``ray.cancel``
and a dead Ray worker take the sandboxed worker with them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import ray

from launcher.executors.ray import bundle
from launcher.executors.ray.sampling import NodeSampler


def _die_with_parent() -> None:
    from launcher.sandbox import libc

    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)


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
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher.executors.ray.node"],  # = launcher run-job, imports less
        stdin=subprocess.PIPE,
        preexec_fn=_die_with_parent,
    )
    proc.communicate(json.dumps(job).encode())
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
