"""Memory watchdog: the fallback memory limit when no memory cgroup can be had.

It sums the resident memory of a process tree a few times a second and kills the tree when
it passes the limit; the kill is then known to be for memory, so ``oom`` is reported true.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psutil

POLL_SECONDS = 0.05


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (0 when it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


async def watch_memory(pid: int, limit_bytes: int, on_exceeded: Callable[[], None]) -> None:
    """Poll until cancelled; call ``on_exceeded`` once when the tree passes ``limit_bytes``."""
    while True:
        if tree_rss(pid) > limit_bytes:
            on_exceeded()
            return
        await asyncio.sleep(POLL_SECONDS)
