"""Machine samples (CPU, memory, disk) taken with psutil on an interval, for a bounded window."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


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
