"""Freed memory kept for the worker's next call, for a while (glibc's malloc).

By default a large buffer (a param's elements, a state key, a model's array) is a fresh
``mmap``: every page of it faults and is zeroed by the kernel on first touch, call after
call (measured here: 256 MiB in 110 to 140 ms, about half of a 256 MiB param's whole job). A
warm session serves call after call, so the worker keeps what it frees: malloc takes large
buffers from its heap too (``M_MMAP_MAX`` 0, one arena for every thread) and does not give
the heap's free top back at once (``M_TRIM_THRESHOLD``); ``idle`` gives everything free back
to the system (``malloc_trim``) once no call has run for ``KEEP_SECONDS``. What is kept never
exceeds what the worker held at its peak, so never its memory limit. Elsewhere than glibc,
nothing changes.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

#: How long freed memory is kept after a call for the next one.
KEEP_SECONDS = 2.0

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_INT_MAX = (1 << 31) - 1


class FreedMemory:
    """Set up before the worker starts a thread; then ``busy`` and ``idle`` around calls."""

    def __init__(self) -> None:
        self._trim = None
        self._timer: asyncio.TimerHandle | None = None
        try:
            libc = ctypes.CDLL(None)
            mallopt, trim = libc.mallopt, libc.malloc_trim
        except (OSError, AttributeError):
            return
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        trim.argtypes = [ctypes.c_size_t]
        if mallopt(_M_ARENA_MAX, 1) and mallopt(_M_MMAP_MAX, 0):
            mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
            self._trim = trim

    @property
    def keeping(self) -> bool:
        return self._trim is not None

    def busy(self) -> None:
        """A command arrived: keep what is free for it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """A call ended: give free memory back unless another comes within KEEP_SECONDS."""
        if self._trim is None:
            return
        self.busy()
        self._timer = loop.call_later(KEEP_SECONDS, self.give_back)

    def give_back(self) -> None:
        self._timer = None
        if self._trim is not None:
            self._trim(0)
