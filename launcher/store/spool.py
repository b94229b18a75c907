"""Spooling one inline param to disk: validated tensor by tensor as its bytes arrive.

A param's bytes go to a file without a name (``O_TMPFILE``) in ``<root>/tmp``, opened only
when its first byte arrives, so an idle stream holds no descriptor for it. Each tensor's byte
range is kept in two compact ``array('Q')`` columns (16 bytes a tensor, not an object), and
the validator is fed in slices so that no call builds more than a slice's worth of tensor
records. ``Spool.feed`` blocks (validation and ``pwrite``): callers run it in a thread.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path

import numpy as np

from launcher import faults, rules
from launcher.errors import invalid
from launcher.params import ParamSource
from launcher.store.spool_files import MIN_BYTES, SPOOL_FILES
from runtime.tensor import StreamValidator, TensorError, TensorInfo

SPOOL_PREFIX = "param-"
#: The validator is fed this many bytes at a time (at most this many tensor records at once).
_FEED_SLICE = 64 << 10
#: A slice of at least this many tensors is validated by Python code tensor by tensor while
#: holding the GIL (~0.25 us each): after it the thread sleeps ``_GIL_PAUSE``, so the event
#: loop and other calls wait for it a slice at most, not a switch interval at every
#: hand-over. A real sleep, not ``sleep(0)``: that releases the GIL but the thread takes it
#: straight back before a waiting one wakes (~730 pauses, ~45 ms, in a 10^6-tensor upload).
_YIELD_AFTER_TENSORS = 1024
_TINY_SLICE = 4 << 10
_GIL_PAUSE = 50e-6


def open_spool_file(spool_dir: Path) -> int:
    """A file without a name (O_TMPFILE) in ``spool_dir``: nothing is left behind, whenever
    the launcher dies. Where the file system lacks O_TMPFILE, a named file is unlinked at
    once, and ``remove_spool_leftovers`` clears what a crash in between leaves."""
    try:
        return os.open(spool_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:
        fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, dir=spool_dir)
        os.unlink(name)
        return fd


def remove_spool_leftovers(spool_dir: Path) -> None:
    """At start: named spool files of a launcher that crashed between creating and unlinking."""
    for leftover in spool_dir.glob(SPOOL_PREFIX + "*"):
        leftover.unlink(missing_ok=True)


class Spool:
    """One inline param being received. ``path`` names it in reasons (``params[2]``);
    ``allowed_types``/``shape`` are its ``model.toml`` rule (None: anything)."""

    def __init__(
        self,
        spool_dir: Path,
        path: str,
        size: int,
        max_tensors: int,
        allowed_types: tuple[str, ...] | None = None,
        shape: tuple[int, ...] | None = None,
    ) -> None:
        self.spool_dir = spool_dir
        self.path = path
        self.size = size
        self.allowed_types = allowed_types
        self.shape = shape
        self.received = 0
        self.validator = StreamValidator(max_tensors=max_tensors)
        self.starts = array("Q")
        self.ends = array("Q")
        self.fd: int | None = None
        # ``feed`` runs in a thread while the event loop may ``close`` (a cancelled call): the
        # lock keeps a close from landing in the middle of a write to the descriptor.
        self._lock = threading.Lock()
        self._closed = False
        self._reused = False  # the file was kept from an earlier upload

    @property
    def complete(self) -> bool:
        return self.received == self.size

    @property
    def tensors(self) -> int:
        return len(self.starts)

    def feed(self, data: bytes) -> None:
        """Validate and write the next bytes (blocking)."""
        with self._lock:
            if self._closed:
                raise invalid(f"{self.path}.data", "the request ended while it was received")
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        if self.received + len(data) > self.size:
            raise invalid(f"{self.path}.data", f"more bytes than the declared {self.size}")
        if not data:
            return
        view = memoryview(data)
        checked = self.allowed_types is not None or self.shape is not None
        at, step = 0, _FEED_SLICE
        while at < len(view):
            piece = view[at : at + step]
            at += len(piece)
            before = self.validator.completed
            infos: list[TensorInfo] = []
            try:
                if not checked:  # no rule: only where each tensor lies is kept
                    self.validator.feed_ranges(piece, self.starts, self.ends)
                else:
                    infos = self.validator.feed(piece)
            except TensorError as e:
                # feed_ranges has appended the tensors before the failing one; feed has not
                index = self.tensors + (0 if not checked else self.validator.completed - before)
                raise invalid(f"{self.path}.data[{index}]", str(e)) from None
            for index, info in enumerate(infos, self.tensors):
                rules.check_tensor(
                    f"{self.path}.data[{index}]",
                    info.type,
                    info.shape,
                    self.allowed_types,
                    self.shape,
                )
            self.starts.extend([info.start for info in infos])
            self.ends.extend([info.end for info in infos])
            if self.validator.completed - before >= _YIELD_AFTER_TENSORS:
                step = _TINY_SLICE  # a flood of tiny tensors: small slices, the GIL given up
                time.sleep(_GIL_PAUSE)
        if self.fd is None:
            self.fd = self._open()
        os.pwrite(self.fd, data, self.received)
        self.received += len(data)
        faults.point("upload_chunk")

    def finish(self, name: str) -> ParamSource:
        """The received param as a source (which then owns the file); refuses a short one."""
        if self.received != self.size:
            raise invalid(
                f"{self.path}.data", f"received {self.received} of the declared {self.size} bytes"
            )
        try:
            self.validator.finish()
        except TensorError as e:
            raise invalid(f"{self.path}.data[{self.tensors}]", str(e)) from None
        fd = self.fd if self.fd is not None else self._open()
        self.fd = None
        if self._reused:  # a kept file holds another upload's bytes past this one's
            try:
                os.ftruncate(fd, self.size)
            except OSError:
                os.close(fd)
                raise
        starts = np.frombuffer(self.starts, np.uint64) if self.starts else np.zeros(0, np.uint64)
        ends = np.frombuffer(self.ends, np.uint64) if self.ends else np.zeros(0, np.uint64)
        source = ParamSource(
            name, fd, starts.copy(), ends - starts, release=self._release_later(self.size)
        )
        self.starts = array("Q")
        self.ends = array("Q")
        return source

    def close(self) -> None:
        """Release the file of a param that was not finished."""
        with self._lock:
            self._closed = True
            if self.fd is not None:
                self._release_later(self.received)(self.fd)
                self.fd = None

    def _open(self) -> int:
        """A kept spool file of this folder (its pages are there already), else a new one."""
        # (a small param would cut a kept file down to nothing worth keeping)
        fd = SPOOL_FILES.take(self.spool_dir) if self.size >= MIN_BYTES else None
        self._reused = fd is not None
        return fd if fd is not None else open_spool_file(self.spool_dir)

    def _release_later(self, size: int) -> Callable[[int], None]:
        """How the file is let go of: kept for the next upload when it is big enough to be
        worth it (``spool_files``), else closed."""
        if size < MIN_BYTES:
            return os.close
        return functools.partial(SPOOL_FILES.give, spool_dir=self.spool_dir)
