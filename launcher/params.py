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

    @property
    def amount(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def total_byte_size(self) -> int:
        return int(self.lengths.sum()) if self.amount else 0

    def read(self, index: int) -> bytes:
        """The element's bytes (for small elements; large ones are streamed with ``fd``)."""
        return os.pread(self.fd, int(self.lengths[index]), int(self.offsets[index]))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.release(self.fd)
