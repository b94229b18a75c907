"""Write-behind for a large upload written straight into a data file: rolling writeback.

An upload's bytes are ``pwrite``'d into the page cache and made durable by one ``fsync`` at
commit. Left alone, a 1 GiB upload leaves 1 GiB of dirty pages for that ``fsync`` to write
(hundreds of milliseconds at the end of the call) and takes 1 GiB of page cache from
everything else; on a virtual machine whose idle memory is handed back to the host, first
touching that much fresh memory costs more than the copy itself (2-3 s a GiB measured, against
0.2 s for memory recently used).

``WriteBehind`` therefore starts the writeback of each ``WINDOW`` of new bytes as soon as it is
written (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which does not wait), and when the next
window is started it waits for the previous one and drops its now clean pages
(``POSIX_FADV_DONTNEED``), so the upload holds about two windows of page cache and keeps
reusing the same recently freed pages. Durability still comes from the commit's ``fsync``
(this only makes it short: the data is on the device by then), so where ``sync_file_range``
is missing (not Linux) or refused by the file system, nothing is done early and the commit's
``fsync`` writes everything, as before. The price: a key's freshly uploaded bytes are read
back from the device, not from the page cache, by the first job that reads them.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

#: Bytes written before their writeback is started (and the window before them dropped).
WINDOW = 32 << 20

_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4
#: Errors that say the file (system) does not do this, rather than that a write failed.
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP}


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_sync_file_range = _load_sync_file_range()


def _sync_range(fd: int, start: int, size: int, flags: int) -> None:
    assert _sync_file_range is not None
    if _sync_file_range(fd, start, size, flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class WriteBehind:
    """Rolling writeback of the bytes written to ``fd`` from ``start`` on, in order."""

    def __init__(self, fd: int, start: int, window: int | None = None) -> None:
        self._fd = fd
        self._window = WINDOW if window is None else window
        self._dropped = start  # pages below this are written back and dropped
        self._started = start  # writeback started below this
        self.enabled = _sync_file_range is not None

    def written(self, end: int) -> None:
        """The bytes up to ``end`` are written: start the writeback of a full new window."""
        if not self.enabled or end - self._started < self._window:
            return
        try:
            _sync_range(self._fd, self._started, end - self._started, _WRITE)
            if self._started > self._dropped:
                size = self._started - self._dropped
                _sync_range(self._fd, self._dropped, size, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
                os.posix_fadvise(self._fd, self._dropped, size, os.POSIX_FADV_DONTNEED)
                self._dropped = self._started
        except OSError as err:
            if err.errno not in _UNSUPPORTED:
                # A write error (EIO, ENOSPC): waiting consumed it, so the commit's fsync
                # would not see it again; the upload fails here instead.
                raise
            # Not supported for this file: the commit's fsync writes everything.
            self.enabled = False
            return
        self._started = end
