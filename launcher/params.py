"""ParamSource: one parameter's elements as byte ranges of an open file.

Inline params (spooled to disk as they stream in), dataset keys and other models' state
keys are all served to the worker the same way: each element is ``length`` bytes at
``offset`` of ``fd``. The source owns its file descriptor; an open descriptor keeps the
bytes readable even if the file is unlinked meanwhile (a dataset deleted while a job
reads it), which is how a job keeps reading the version it started with.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ParamSource:
    name: str
    fd: int
    offsets: np.ndarray  # uint64, one per element, in the source's own (physical) order
    lengths: np.ndarray  # uint64, same length as offsets
    #: How ``fd`` is let go of (an inline param's spool file may be kept for the next upload).
    release: Callable[[int], None] = field(default=os.close, repr=False)
    _closed: bool = field(default=False, repr=False)
    _holds: int = field(default=0, repr=False)  # readers still to come (``hold``)

    @property
    def amount(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def total_byte_size(self) -> int:
        return int(self.lengths.sum()) if self.amount else 0

    def read(self, index: int) -> bytes:
        """The element's bytes (for small elements; large ones are streamed with ``fd``)."""
        return os.pread(self.fd, int(self.lengths[index]), int(self.offsets[index]))

    def hold(self) -> None:
        """A reader of ``fd`` to come (an answer queued for the worker): the file is let go of
        only once it ``let_go`` (on the event loop, as ``close``)."""
        self._holds += 1

    def let_go(self) -> None:
        self._holds -= 1
        if self._closed and self._holds == 0:
            self.release(self.fd)

    def close(self) -> None:
        """No more use by the job; the file goes once no held reader is left (a spool file
        may then be written over by another upload: never while an answer still reads it)."""
        if not self._closed:
            self._closed = True
            if self._holds == 0:
                self.release(self.fd)
