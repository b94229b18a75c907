"""Per-worker cgroups (v1 here, v2 where present): limits, OOM proof, kill, removal.

Cgroups are created only below the launcher's own cgroup, one per worker, named
``<prefix>-<launcher pid>-<n>``; leftovers of a dead launcher are removed at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from launcher.spec import LauncherSpec

_V1_CONTROLLERS = ("memory", "cpu", "pids")
REPORTED = ("memory", "cpu", "pids", "io")
#: Workers write into a tmpfs (charged to memory), so block I/O is not what bounds them.
_IO_NOT_LIMITED = "off: not limited (a worker's writable space is tmpfs, charged to memory)"
_CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class CgroupHost:
    """Where this launcher may create worker cgroups: controller → parent directory."""

    version: int
    parents: dict[str, Path]
    memsw: bool  # v1: swap accounting present

    #: Each controller (memory, cpu, pids, io) with "on" or "off: <reason>".
    controllers: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return f"v{self.version} ({', '.join(sorted(self.parents))})"

    def has(self, controller: str) -> bool:
        return self.controllers.get(controller) == "on"


def _mount_points() -> list[tuple[str, str, str, set[str]]]:
    """(mount root, mount point, fs type, options) for each cgroup mount."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if rfields and rfields[0] in ("cgroup", "cgroup2"):
            opts = set(rfields[2].split(",")) if len(rfields) > 2 else set()
            out.append((fields[3], fields[4], rfields[0], opts))
    return out


def _own_dir(mount_root: str, mount_point: str, own_path: str) -> Path:
    rel = os.path.relpath(own_path, mount_root) if own_path.startswith(mount_root) else own_path
    return Path(mount_point) / rel.lstrip("/").removeprefix(".")


def _writable(parent: Path, probe_name: str) -> str | None:
    """None when a child cgroup can be made and removed below ``parent``, else why not."""
    probe = parent / probe_name
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return f"cannot create a cgroup in {parent}: {exc.strerror}"
    return None


def detect(prefix: str) -> tuple[CgroupHost | None, str]:
    """The usable cgroup host, or None and the reason."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            own[name] = path
    mounts = _mount_points()
    probe = f"{prefix}-probe-{os.getpid()}"
    v1: dict[str, Path] = {}
    for root, point, fstype, opts in mounts:
        for ctl in _V1_CONTROLLERS:
            if fstype == "cgroup" and ctl in opts and ctl in own:
                v1[ctl] = _own_dir(root, point, own[ctl])
    if "memory" in v1:
        why = _writable(v1["memory"], probe)
        if why:
            return None, why
        usable = {}
        states = {"io": _IO_NOT_LIMITED}
        for ctl in _V1_CONTROLLERS:
            why = "not mounted for this process" if ctl not in v1 else _writable(v1[ctl], probe)
            states[ctl] = f"off: {why}" if why else "on"
            if not why:
                usable[ctl] = v1[ctl]
        memsw = (v1["memory"] / "memory.memsw.limit_in_bytes").exists()
        return CgroupHost(1, usable, memsw, states), ""
    for root, point, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in own:
            parent = _own_dir(root, point, own[""])
            available = (parent / "cgroup.controllers").read_text().split()
            if "memory" not in available:
                continue
            why = _writable(parent, probe)
            if why:
                return None, why
            states = {"io": _IO_NOT_LIMITED}
            for ctl in ("memory", "cpu", "pids"):
                if ctl not in available:
                    states[ctl] = "off: not delegated to this cgroup"
                    continue
                try:
                    (parent / "cgroup.subtree_control").write_text(f"+{ctl}")
                    states[ctl] = "on"
                except OSError as exc:
                    states[ctl] = f"off: cannot enable it in {parent}: {exc.strerror}"
            if states["memory"] != "on":
                return None, f"memory controller {states['memory']}"
            return CgroupHost(2, {"unified": parent}, True, states), ""
    return None, "no writable memory cgroup controller (v1 or v2) for this process"


def remove_stale(host: CgroupHost, prefix: str) -> None:
    """Remove worker cgroups left behind by launchers that are gone."""
    for parent in host.parents.values():
        for child in parent.glob(f"{prefix}-*"):
            pid = child.name.removeprefix(f"{prefix}-").split("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                for grandchild in child.glob(f"{prefix}-*"):  # workers of a stale group
                    with contextlib.suppress(OSError):
                        grandchild.rmdir()
                with contextlib.suppress(OSError):
                    child.rmdir()


def _apply_limits(
    version: int, dirs: dict[str, Path], memsw: bool, spec: LauncherSpec, pids_max: int
) -> None:
    memory = spec.memory_mebibytes * 1024 * 1024
    swap = (spec.swap_mebibytes or 0) * 1024 * 1024
    quota = max(1000, int(spec.cpus * _CFS_PERIOD_US))
    if version == 1:
        mem = dirs["memory"]
        (mem / "memory.limit_in_bytes").write_text(str(memory))
        if memsw:
            (mem / "memory.memsw.limit_in_bytes").write_text(str(memory + swap))
        if "cpu" in dirs:
            (dirs["cpu"] / "cpu.cfs_period_us").write_text(str(_CFS_PERIOD_US))
            (dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(quota))
        if "pids" in dirs:
            (dirs["pids"] / "pids.max").write_text(str(pids_max))
    else:
        unified = dirs["unified"]
        (unified / "memory.max").write_text(str(memory))
        (unified / "memory.swap.max").write_text(str(swap))
        with contextlib.suppress(OSError):
            (unified / "cpu.max").write_text(f"{quota} {_CFS_PERIOD_US}")
        with contextlib.suppress(OSError):
            (unified / "pids.max").write_text(str(pids_max))


def group_dirs(host: CgroupHost, prefix: str, group: str) -> dict[str, Path]:
    """The parent cgroup of a group's workers (a persistent launcher's shared budget)."""
    name = f"{prefix}-{os.getpid()}-group-{group}"
    return {ctl: parent / name for ctl, parent in host.parents.items()}


def ensure_group(
    host: CgroupHost, prefix: str, group: str, spec: LauncherSpec, pids_max: int
) -> dict[str, Path]:
    """Create (or refresh the limits of) a group's shared cgroup; the parents of its workers."""
    dirs = group_dirs(host, prefix, group)
    for path in dirs.values():
        path.mkdir(exist_ok=True)
    if host.version == 2:
        unified = dirs["unified"]
        available = (unified / "cgroup.controllers").read_text().split()
        with contextlib.suppress(OSError):
            (unified / "cgroup.subtree_control").write_text(
                " ".join(f"+{c}" for c in ("memory", "cpu", "pids") if c in available)
            )
    _apply_limits(host.version, dirs, host.memsw, spec, pids_max)
    return dirs


@dataclass(frozen=True)
class GroupUsage:
    """What a group's workers use now: CPU time so far, memory, and of it tmpfs (their disk)."""

    cpu_ns: int
    memory: int
    disk: int


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stat_field(path: Path, names: tuple[str, ...]) -> int | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(" ")
        if key in names and value.strip().isdigit():
            return int(value)
    return None


def group_usage(host: CgroupHost, prefix: str, group: str) -> GroupUsage | None:
    """The group's cgroup counters, or None when it has none now (no worker alive)."""
    dirs = group_dirs(host, prefix, group)
    if host.version == 2:
        unified = dirs["unified"]
        memory = _read_int(unified / "memory.current")
        if memory is None:
            return None
        usec = _stat_field(unified / "cpu.stat", ("usage_usec",)) or 0
        disk = _stat_field(unified / "memory.stat", ("shmem",)) or 0
        return GroupUsage(usec * 1000, memory, disk)
    memory_dir = dirs.get("memory")
    memory = _read_int(memory_dir / "memory.usage_in_bytes") if memory_dir else None
    if memory is None or memory_dir is None:
        return None
    cpu_ns = 0
    for ctl in ("cpuacct", "cpu,cpuacct", "cpu"):
        if ctl in dirs:
            cpu_ns = _read_int(dirs[ctl] / "cpuacct.usage") or 0
            break
    disk = _stat_field(memory_dir / "memory.stat", ("total_shmem", "shmem")) or 0
    return GroupUsage(cpu_ns, memory, disk)


def remove_group(host: CgroupHost, prefix: str, group: str) -> None:
    """Remove a group's cgroup (a no-op while workers still live in it)."""
    for path in group_dirs(host, prefix, group).values():
        with contextlib.suppress(OSError):
            path.rmdir()


class WorkerCgroup:
    """The cgroup(s) of one worker, below its group's cgroup when it has one."""

    _counter = itertools.count()

    def __init__(
        self,
        host: CgroupHost,
        prefix: str,
        spec: LauncherSpec,
        pids_max: int,
        parents: dict[str, Path] | None = None,
    ) -> None:
        name = f"{prefix}-{os.getpid()}-{next(self._counter)}"
        self.version = host.version
        self.dirs = {ctl: parent / name for ctl, parent in (parents or host.parents).items()}
        for path in self.dirs.values():
            path.mkdir()
        _apply_limits(host.version, self.dirs, host.memsw, spec, pids_max)

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a worker writes itself into."""
        return [str(path / "cgroup.procs") for path in self.dirs.values()]

    def oom_killed(self) -> bool:
        """Proven from the cgroup's own counter: did the OOM killer act in it?"""
        if self.version == 1:
            text = (self.dirs["memory"] / "memory.oom_control").read_text()
        else:
            text = (self.dirs["unified"] / "memory.events").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value) > 0
        return False

    def _pids(self) -> set[int]:
        pids: set[int] = set()
        for path in self.dirs.values():
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (path / "cgroup.procs").read_text().split())
        return pids

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup, again while new ones appear (a fork bomb keeps
        forking). Killed processes stay listed until reaped; they are not waited for here."""
        killed: set[int] = set()
        for _ in range(100):
            fresh = set(self._pids()) - killed
            if not fresh:
                return
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed |= fresh

    async def remove(self) -> None:
        """Kill what is left and remove the directories (processes may take a moment to go)."""
        for _ in range(50):
            self.kill_all()
            for path in self.dirs.values():
                with contextlib.suppress(OSError):  # gone already, or still busy: retried
                    path.rmdir()
            if not any(path.exists() for path in self.dirs.values()):
                return
            await asyncio.sleep(0.02)
