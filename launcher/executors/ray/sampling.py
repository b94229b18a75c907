"""A persistent launcher's usage samples, taken on the node whose actor holds the launcher.

The actor samples from its creation, on the hub's interval and window (as
``LauncherSamplers`` does locally): the launcher's own cgroup on that node when the node's
sandbox has cgroups (the one its workers share; nothing in use while no worker lives), else
the node's machine figures. The hub asks for them with ``LauncherActor.samples``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil

from launcher.observe.sysinfo import LauncherSampler, Sample
from launcher.sandbox.cgroups import CgroupHost, GroupUsage, _read_int, _stat_field, detect
from launcher.sandbox.config import SandboxConfig

#: A fresh sample is taken when asked and the last is older than this (as locally).
FRESH = 1.0


def _machine_usage(disk_root: Path) -> GroupUsage:
    """The node's machine figures as counters: busy CPU time so far, memory and disk in use."""
    while not disk_root.exists() and disk_root != disk_root.parent:  # made with its first job
        disk_root = disk_root.parent
    times = psutil.cpu_times()
    # The busy fields summed (never ``total - idle``: idle and iowait move both ways, and
    # the difference of large floats can go down a nanosecond, read as a counter reset).
    busy = sum(
        getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal")
    )
    return GroupUsage(
        int(busy * 1e9),
        int(psutil.virtual_memory().used),
        int(psutil.disk_usage(str(disk_root)).used),
    )


def _groups_usage(host: CgroupHost, prefix: str, group: str) -> GroupUsage | None:
    """The launcher's cgroups on this node, summed: each ``run-job`` (one a worker) makes the
    group's cgroup named by its own pid, ``<prefix>-<pid>-group-<group>``; None when there is
    none now (no worker alive)."""
    pattern = f"{prefix}-*-group-{group}"
    if host.version == 2:
        read = [(_read_int(d / "memory.current"), d) for d in host.parents["unified"].glob(pattern)]
        found = [(m, d) for m, d in read if m is not None]
        if not found:
            return None
        return GroupUsage(
            sum((_stat_field(d / "cpu.stat", ("usage_usec",)) or 0) * 1000 for _, d in found),
            sum(m for m, _ in found),
            sum(_stat_field(d / "memory.stat", ("shmem",)) or 0 for _, d in found),
        )
    memory_parent = host.parents.get("memory")
    if memory_parent is None:
        return None
    cpu_parent = next(
        (host.parents[c] for c in ("cpuacct", "cpu,cpuacct", "cpu") if c in host.parents), None
    )
    cpu_ns = memory = disk = 0
    seen = False
    for d in memory_parent.glob(pattern):
        used = _read_int(d / "memory.usage_in_bytes")
        if used is None:
            continue
        seen = True
        memory += used
        disk += _stat_field(d / "memory.stat", ("total_shmem", "shmem")) or 0
        if cpu_parent is not None:
            cpu_ns += _read_int(cpu_parent / d.name / "cpuacct.usage") or 0
    return GroupUsage(cpu_ns, memory, disk) if seen else None


class NodeSampler:
    """Samples ``group``'s usage on this node every ``interval`` seconds in a thread."""

    def __init__(
        self, group: str, interval: float, window: int, disk_root: Path, cgroup: bool
    ) -> None:
        prefix = SandboxConfig.cgroup_prefix
        host = detect(prefix)[0] if cgroup else None
        self.source = "cgroup" if host is not None else "machine"
        if host is not None:
            usage: Any = lambda: _groups_usage(host, prefix, group)  # noqa: E731
        else:
            usage = lambda: _machine_usage(disk_root)  # noqa: E731
        self.interval = interval
        self._sampler = LauncherSampler(usage, window)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._sample()  # from the launcher's creation
        threading.Thread(target=self._loop, name="launcher-samples", daemon=True).start()

    def _sample(self) -> None:
        with self._lock:
            self._sampler.sample()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            self._sample()

    def since(self, timestamp: float | None) -> list[tuple[float, float, int, int]]:
        with self._lock:
            last = self._sampler.samples[-1] if self._sampler.samples else None
        if last is None or time.time() - last.timestamp > FRESH:
            self._sample()
        with self._lock:
            return [
                (s.timestamp, s.cpus, s.memory, s.disk)
                for s in self._sampler.samples
                if timestamp is None or s.timestamp >= timestamp
            ]

    def stop(self) -> None:
        self._stopped.set()


def to_samples(rows: Any) -> list[Sample]:
    """The actor's answer as samples (checked: it crossed a process boundary)."""
    out = []
    for ts, cpus, memory, disk in rows:
        out.append(Sample(float(ts), float(cpus), int(memory), int(disk)))
    return out
