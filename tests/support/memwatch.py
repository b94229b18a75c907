"""Peak RSS of another process while a block runs (polled with psutil every few ms)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil


class PeakRss:
    def __init__(self) -> None:
        self.before = 0
        self.peak = 0

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.before) / (1 << 20)


@contextmanager
def peak_rss(pid: int, interval: float = 0.005) -> Iterator[PeakRss]:
    proc = psutil.Process(pid)
    result = PeakRss()
    result.before = result.peak = proc.memory_info().rss
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            result.peak = max(result.peak, proc.memory_info().rss)
            stop.wait(interval)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
