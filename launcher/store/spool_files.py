"""Spool files kept for the next upload, with their pages.

On a virtual machine whose freed memory goes back to the host (free page reporting), the first
write to memory the guest freed a moment before costs a fault to the host for each page:
256 MiB written into a new file took 0.45-0.9 s on the machines this runs on, into a file kept
from the last upload 25-55 ms. So the file of a param of at least ``MIN_BYTES``, once its job
is over, is kept open here (``give``) and the next spool of the same folder takes it
(``take``): written over from offset 0, cut to its own size when it is finished.

Bounds: ``MAX_FILES`` files and ``MAX_BYTES`` in all, each kept ``MAX_IDLE`` seconds at most
(less than the kernel waits before writing dirty pages of a file to disk, so an idle launcher
writes nothing), and none while the folder's file system would have less than
``MIN_FREE_FRACTION`` of its size free with it kept (a small data disk needs its room for
states). A kept file is an unnamed file (``O_TMPFILE``) held open: nothing is left behind when
the launcher dies. Its old bytes (another job's) are never read: every read of a param goes
by the ranges of the tensors written over them, and the file is cut to the param's size.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

#: Smaller files are closed as before (their pages are few; keeping them saves nothing).
MIN_BYTES = 8 << 20
MAX_FILES = 4
MAX_BYTES = 1 << 30
#: Seconds a file is kept unused (the kernel writes dirty pages out after 30 s by default).
MAX_IDLE = 20.0
MIN_FREE_FRACTION = 0.1


class SpoolFiles:
    """Open spool files waiting for the next upload, per spool folder."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._kept: list[tuple[str, int, int, float]] = []  # (folder, fd, size, kept since)
        self._reaper: threading.Thread | None = None

    def take(self, spool_dir: Path) -> int | None:
        """A kept file of ``spool_dir`` (the most recently kept), or None."""
        folder = str(spool_dir)
        with self._cond:
            for i in range(len(self._kept) - 1, -1, -1):
                if self._kept[i][0] == folder:
                    return self._kept.pop(i)[1]
        return None

    def give(self, fd: int, spool_dir: Path) -> None:
        """Keep ``fd`` (a spool file of ``spool_dir`` no one uses any more) or close it."""
        try:
            size = os.fstat(fd).st_size
            keep = MIN_BYTES <= size <= MAX_BYTES and _room_left(spool_dir)
        except OSError:
            keep = False
        if keep:
            with self._cond:
                held = sum(entry[2] for entry in self._kept)
                if len(self._kept) < MAX_FILES and held + size <= MAX_BYTES:
                    self._kept.append((str(spool_dir), fd, size, time.monotonic()))
                    self._start_reaper()
                    self._cond.notify()
                    return
        os.close(fd)

    def clear(self) -> None:
        """Close every kept file (the launcher stopping, or a test)."""
        with self._cond:
            kept, self._kept = self._kept, []
        for _, fd, _, _ in kept:
            os.close(fd)

    @property
    def kept(self) -> int:
        with self._cond:
            return len(self._kept)

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap, name="spool-reaper", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        """Close the files kept longer than ``MAX_IDLE`` (a thread of its own, asleep while
        nothing is kept)."""
        with self._cond:
            while True:
                now = time.monotonic()
                stale = [entry for entry in self._kept if now - entry[3] >= MAX_IDLE]
                self._kept = [entry for entry in self._kept if now - entry[3] < MAX_IDLE]
                for _, fd, _, _ in stale:
                    os.close(fd)
                if self._kept:
                    self._cond.wait(min(entry[3] for entry in self._kept) + MAX_IDLE - now)
                else:
                    self._cond.wait()


def _room_left(spool_dir: Path) -> bool:
    """Whether ``spool_dir``'s file system has ``MIN_FREE_FRACTION`` of its size free (with
    the file to keep still holding its room)."""
    st = os.statvfs(spool_dir)
    return st.f_bavail >= st.f_blocks * MIN_FREE_FRACTION


#: The launcher's kept spool files (inline params of createState, HTTP or gRPC).
SPOOL_FILES = SpoolFiles()
