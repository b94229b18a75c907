"""The worker keeps memory it frees for its next call, and gives it back once idle (glibc)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os
    import runtime._memory as memory

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    memory.KEEP_SECONDS = 0.05
    kept = memory.FreedMemory()
    base = rss()
    block = bytearray(256 << 20)
    held = rss()
    del block
    after_free = rss()

    async def calls():
        loop = asyncio.get_running_loop()
        kept.idle(loop)
        kept.busy()  # another call came: nothing given back
        await asyncio.sleep(0.2)
        busy = rss()
        kept.idle(loop)
        await asyncio.sleep(0.3)
        return busy, rss()

    busy, idle = asyncio.run(calls())
    print(json.dumps({"keeping": kept.keeping, "base": base, "held": held,
                      "after_free": after_free, "busy": busy, "idle": idle}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_is_kept_between_calls_and_given_back_when_idle() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["keeping"]
    mib = 1 << 20
    assert figures["held"] - figures["base"] > 200 * mib
    assert figures["after_free"] - figures["base"] > 200 * mib  # kept for the next call
    assert figures["busy"] - figures["base"] > 200 * mib  # a call came: still kept
    assert figures["idle"] - figures["base"] < 64 * mib  # idle: given back
