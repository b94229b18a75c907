"""The Sandbox: turns a WorkerPlan into a Recipe with every available layer, and starts it.

Three ways to start, strongest first: fork from the warm zygote; the exec'd entry helper
(zygote off); the plain fallback (no child-side layer available or wanted).
"""

from __future__ import annotations

import math
import os
import sys
import sysconfig
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path

from launcher.sandbox import libc
from launcher.sandbox.cgroups import (
    GroupUsage,
    WorkerCgroup,
    ensure_group,
    group_usage,
    remove_group,
)
from launcher.sandbox.config import SandboxConfig
from launcher.sandbox.detect import NAMESPACE_LAYERS, Layers, detect
from launcher.sandbox.mounts import FsLayout, open_folder, real_path_of
from launcher.sandbox.plain import start_entered, start_plain
from launcher.sandbox.recipe import Recipe
from launcher.sandbox.types import WorkerPlan, WorkerProcess
from launcher.sandbox.zygote_host import ZygoteHost

_NS_FLAGS = {
    "pidns": libc.CLONE_NEWPID,
    "netns": libc.CLONE_NEWNET,
    "mountns": libc.CLONE_NEWNS,
    "ipcns": libc.CLONE_NEWIPC,
    "utsns": libc.CLONE_NEWUTS,
}
_CHILD_SIDE = ("uid", "seccomp", "rlimits", "cgroup", *NAMESPACE_LAYERS)


def _support_paths(packages: tuple[str, ...]) -> list[str]:
    """What the worker's interpreter reads: installations, site-packages, project packages."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib"))
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    for name in packages:
        spec = find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            paths.update(spec.submodule_search_locations)
    return sorted(p for p in paths if p and os.path.exists(p))


def _validate(plan: WorkerPlan) -> None:
    if not plan.argv:
        raise ValueError("the worker plan has an empty argv")
    if not plan.job_dir.is_dir():
        raise ValueError(f"the job directory {plan.job_dir} does not exist")
    if not plan.model_dir.is_dir():
        raise ValueError(f"the model directory {plan.model_dir} does not exist")
    for mount in plan.mounts:
        if not mount.is_dir():
            raise ValueError(f"the mounted model directory {mount} does not exist")


def verified_folder(path: Path, bindable: tuple[Path, ...], hidden: tuple[Path, ...]) -> str:
    """The real path of a model or mount folder: a second line of defence behind the store's
    own check. It must lie inside one of the ``bindable`` folders (when given), else never in a
    hidden path; a ``ValueError`` says why not. The folder is opened O_PATH|O_NOFOLLOW at its
    real path and that fd's path must be the same (the child binds it the same way, so a
    folder swapped in between is refused there)."""
    real = os.path.realpath(path)
    try:
        fd = open_folder(real)
    except OSError as exc:
        raise ValueError(f"refusing to bind the model folder {path}: {exc.strerror}") from exc
    try:
        if real_path_of(fd) != real:
            raise ValueError(f"refusing to bind {path}: it changed while being checked")
    finally:
        os.close(fd)
    if bindable:
        if not any(real.startswith(os.path.realpath(d).rstrip("/") + "/") for d in bindable):
            raise ValueError(
                f"refusing to bind {path}: it is not inside the models or snapshots folder"
            )
        return real
    for secret in hidden:
        if (real + "/").startswith(os.path.realpath(secret).rstrip("/") + "/"):
            raise ValueError(f"refusing to bind {path}: it lies inside a hidden path")
    return real


class LayeredSandbox:
    """The Sandbox implementation; see the module docstring."""

    def __init__(self, config: SandboxConfig, layers: Layers) -> None:
        self._config = config
        self._layers = layers
        self._support = _support_paths(config.packages)
        self._zygote: ZygoteHost | None = None
        if layers.on("zygote"):
            self._zygote = ZygoteHost(config.state_dir, spare=layers.on("spare"))
        self._child_side = any(layers.on(name) for name in _CHILD_SIDE)

    def layers(self) -> dict[str, str]:
        return dict(self._layers.states)

    def recipe(self, plan: WorkerPlan, cgroup: WorkerCgroup | None, forked: bool) -> Recipe:
        """The plan joined with every layer that is on."""
        on = self._layers.on
        config = self._config
        env = dict(plan.env)
        if plan.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(plan.gpu_ids)
        recipe = Recipe(argv=list(plan.argv), env=env, cwd=str(plan.job_dir))
        recipe.blas_threads = _blas_threads(env, plan.spec.cpus)
        if forked and plan.fork_runtime and len(plan.argv) == 3 and plan.argv[1] == "-m":
            if os.path.realpath(plan.argv[0]) == os.path.realpath(sys.executable):
                recipe.run_module = plan.argv[2]
        for name, flag in _NS_FLAGS.items():
            if on(name):
                recipe.namespaces |= flag
        if on("mountns"):
            disk = plan.spec.disk_mebibytes or config.default_disk_mebibytes
            staging = config.state_dir / "root"
            staging.mkdir(parents=True, exist_ok=True)
            folders = [plan.model_dir, *plan.mounts]
            recipe.layout = FsLayout(
                staging=str(staging),
                support=[*self._support, *(str(p) for p in config.expose)],
                read_only=[str(p) for p in folders],
                read_only_real=[
                    verified_folder(p, config.bindable_dirs, config.hide) for p in folders
                ],
                writable=[str(plan.job_dir)],
                hidden=[str(p) for p in (*config.hide, config.state_dir)],
                devices=gpu_devices(plan.gpu_ids, config.dev_dir) if plan.gpu_ids else [],
                tmp_mebibytes=disk,
                disk_inodes=disk_inodes(disk),
                fresh_proc=on("pidns"),
                scratch=str(config.state_dir / "scratch"),
            )
        if cgroup is not None:
            recipe.cgroup_procs = cgroup.procs_files()
        if on("uid"):
            recipe.uid, recipe.gid = config.uid, config.gid
        recipe.seccomp = on("seccomp")
        if on("rlimits"):
            recipe.rlimits = {"RLIMIT_CORE": 0, "RLIMIT_NOFILE": config.open_files}
            if plan.spec.disk_mebibytes is not None and recipe.layout is None:
                # No mount namespace, so no budget tmpfs: at least bound each file.
                recipe.rlimits["RLIMIT_FSIZE"] = plan.spec.disk_mebibytes * 1024 * 1024
            pids_cgroup = (
                cgroup is not None
                and "pids" in cgroup.dirs
                or (cgroup is not None and cgroup.version == 2 and self._layers.on("cgroup_pids"))
            )
            if not pids_cgroup and on("uid"):
                # Per-uid, not per-worker: a coarse fork-bomb guard when no pids cgroup.
                recipe.rlimits["RLIMIT_NPROC"] = config.pids_max
        return recipe

    async def start(self, plan: WorkerPlan) -> WorkerProcess:
        _validate(plan)
        memory = plan.spec.memory_mebibytes * 1024 * 1024
        if not self._child_side and self._zygote is None:
            env = dict(plan.env)
            if plan.gpu_ids:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(plan.gpu_ids)
            return await start_plain(replace(plan, env=env), watchdog_bytes=memory)
        host = self._layers.cgroup
        cgroup = None
        if host is not None:
            prefix, pids_max = self._config.cgroup_prefix, self._config.pids_max
            parents = (
                ensure_group(host, prefix, plan.group, plan.spec, pids_max)
                if plan.group is not None
                else None
            )
            cgroup = WorkerCgroup(host, prefix, plan.spec, pids_max, parents)
        watchdog = None if cgroup is not None else memory
        try:
            if self._zygote is not None:
                return await self._zygote.start(self.recipe(plan, cgroup, True), cgroup, watchdog)
            return await start_entered(self.recipe(plan, cgroup, False), cgroup, watchdog)
        except BaseException:
            if cgroup is not None:
                await cgroup.remove()
            raise

    def release_group(self, group: str) -> None:
        """Remove a group's shared cgroup (a no-op while workers still live in it)."""
        if self._layers.cgroup is not None:
            remove_group(self._layers.cgroup, self._config.cgroup_prefix, group)

    def group_usage(self, group: str) -> GroupUsage | None:
        """What the group's workers use now (its cgroup), None without a cgroup for it."""
        if self._layers.cgroup is None:
            return None
        return group_usage(self._layers.cgroup, self._config.cgroup_prefix, group)

    async def warm_up(self) -> None:
        """Start what can be started ahead of the first worker (the zygote)."""
        if self._zygote is not None:
            await self._zygote.warm_up()

    def helper_pids(self) -> list[int]:
        """The sandbox's own processes that outlive a spawn (the zygote, when it runs)."""
        pid = self._zygote.pid if self._zygote is not None else None
        return [] if pid is None else [pid]

    async def close(self) -> None:
        if self._zygote is not None:
            await self._zygote.close()


def _blas_threads(env: dict[str, str], cpus: float) -> int:
    """What a fresh interpreter's OpenBLAS would use, bounded by the CPU share."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if env.get(name, "").isdigit() and int(env[name]) > 0:
            return int(env[name])
    return max(1, min(math.ceil(cpus), os.cpu_count() or 1))


#: Device nodes every GPU worker gets besides its own /dev/nvidiaN.
GPU_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


def gpu_devices(gpu_ids: list[str], dev_dir: Path = Path("/dev")) -> list[str]:
    """The device nodes of exactly the allocated GPUs, plus the control nodes that exist."""
    names = [*(f"nvidia{i}" for i in gpu_ids), *GPU_CONTROL_NODES]
    return [
        str(dev_dir / n) for n in names if (dev_dir / n).exists() and not (dev_dir / n).is_dir()
    ]


def disk_inodes(disk_mebibytes: int) -> int:
    """Inodes of the disk budget: 64 per MiB (a 64 MiB budget holds 4096 files), at least 1024."""
    return max(1024, disk_mebibytes * 64)


async def create_sandbox(config: SandboxConfig) -> LayeredSandbox:
    """Detect every layer once (logged) and return the sandbox."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    return LayeredSandbox(config, await detect(config))
