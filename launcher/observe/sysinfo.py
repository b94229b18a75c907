"""Usage samples (CPU, memory, disk) on an interval, for a bounded window: of the machine
(``SysinfoSampler``, psutil), and of each persistent launcher's own workers
(``LauncherSamplers``, from the cgroup they share, sampled from the launcher's creation)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

#: How often a persistent launcher's usage is sampled, and how many samples are kept (also
#: on a Ray node, where its actor samples it).
INTERVAL = 5.0
WINDOW = 720

#: No reading says more cores were in use than the machine has.
_CORES = psutil.cpu_count() or 1


@dataclass(frozen=True)
class Sample:
    timestamp: float
    cpus: float  # cores in use
    memory: int  # bytes in use
    disk: int  # bytes in use on the data root's filesystem


class SysinfoSampler:
    def __init__(self, root: Path, interval: float = 5.0, window: int = 720) -> None:
        self.root = root
        self.interval = interval
        self.samples: collections.deque[Sample] = collections.deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None
        psutil.cpu_percent(None)  # prime: the first reading is measured from here

    def sample(self) -> Sample:
        cores = psutil.cpu_count() or 1
        sample = Sample(
            timestamp=time.time(),
            cpus=psutil.cpu_percent(None) / 100.0 * cores,
            memory=int(psutil.virtual_memory().used),
            disk=int(psutil.disk_usage(str(self.root)).used),
        )
        self.samples.append(sample)
        return sample

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await asyncio.to_thread(self.sample)
                await asyncio.sleep(self.interval)

        self._task = asyncio.create_task(loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def since(self, timestamp: float | None) -> list[Sample]:
        if not self.samples:
            self.sample()
        return [s for s in self.samples if timestamp is None or s.timestamp >= timestamp]


class LauncherSampler:
    """One persistent launcher's own usage (the cgroup its workers share), sampled from its
    creation, the last ``window`` samples kept. CPU is cores in use between two samples."""

    def __init__(self, usage: Callable[[], Any], window: int = 720) -> None:
        self._usage = usage
        self.samples: collections.deque[Sample] = collections.deque(maxlen=window)
        self._last: tuple[float, int] | None = None  # (monotonic seconds, cpu ns)

    def sample(self) -> Sample:
        wall = time.time()
        usage = self._usage()
        now = time.monotonic()  # after the reading, as the previous one was
        if usage is None:  # no worker alive: its cgroup is gone, nothing in use
            sample = Sample(timestamp=wall, cpus=0.0, memory=0, disk=0)
            self._last = None
        else:
            cpus = 0.0
            if self._last is not None and now > self._last[0]:
                elapsed = now - self._last[0]
                # A counter that went down belongs to a cgroup made again: count from 0 (when
                # what it holds could have been used since; else nothing is known: 0).
                used = usage.cpu_ns - self._last[1]
                if used < 0:
                    used = usage.cpu_ns if usage.cpu_ns <= elapsed * 1e9 * _CORES else 0
                cpus = min(used / 1e9 / elapsed, float(_CORES))
            self._last = (now, usage.cpu_ns)
            sample = Sample(timestamp=wall, cpus=cpus, memory=usage.memory, disk=usage.disk)
        self.samples.append(sample)
        return sample


class LauncherSamplers:
    """A ``LauncherSampler`` per persistent launcher, all sampled every ``interval`` seconds
    (a fresh sample too when asked and the last is older than ``FRESH``)."""

    FRESH = 1.0

    def __init__(
        self,
        usage: Callable[[str], Any],
        interval: float = INTERVAL,
        window: int = WINDOW,
        max_launchers: int = 10_000,
    ) -> None:
        self._usage = usage
        self.interval = interval
        self.window = window
        self.max_launchers = max_launchers
        self.launchers: dict[str, LauncherSampler] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, launcher_id: str) -> LauncherSampler:
        sampler = self.launchers.get(launcher_id)
        if sampler is None:
            if len(self.launchers) >= self.max_launchers:
                self.launchers.pop(next(iter(self.launchers)))
            sampler = LauncherSampler(lambda: self._usage(launcher_id), self.window)
            self.launchers[launcher_id] = sampler
            sampler.sample()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return sampler

    def remove(self, launcher_id: str) -> None:
        self.launchers.pop(launcher_id, None)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for sampler in list(self.launchers.values()):
                await asyncio.to_thread(sampler.sample)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def since(self, launcher_id: str, timestamp: float | None) -> list[Sample]:
        sampler = self.add(launcher_id)
        last = sampler.samples[-1] if sampler.samples else None
        if last is None or time.time() - last.timestamp > self.FRESH:
            sampler.sample()
        return [s for s in sampler.samples if timestamp is None or s.timestamp >= timestamp]
