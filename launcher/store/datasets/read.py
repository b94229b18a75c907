"""Reading entries back: which entries a selection names, and streaming them from a snapshot.

A selection is a half-open range ``[start, end)`` or a list of indexes, checked against the
dataset's entry count with ``invalid_parameter`` reasons naming the offending field. An
``EntriesSnapshot`` holds one version's index and a read fd per key, so the entries it yields
are those of that version even if entries are removed or the dataset deleted meanwhile.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from launcher.errors import invalid

BATCH_BYTES = 4 << 20


@dataclass(frozen=True)
class EntryRange:
    start: int
    end: int  # exclusive


Selection = EntryRange | Sequence[int]


def resolve(selection: Selection, count: int) -> np.ndarray:
    """Entry positions (int64) for ``selection``, refusing anything past the ``count`` entries."""
    if isinstance(selection, EntryRange):
        if selection.start > selection.end:
            raise invalid(
                "entries.start",
                f"start {selection.start} is after end {selection.end} (end is exclusive)",
            )
        if selection.end > count:
            raise invalid(
                "entries.end",
                f"end {selection.end} is past the dataset's {count} entries (end is exclusive)",
            )
        return np.arange(selection.start, selection.end, dtype=np.int64)
    for i, value in enumerate(selection):
        if not 0 <= value < count:
            raise invalid(
                f"entries.indexes[{i}]",
                f"index {value} is out of range: the dataset has {count} entries",
            )
    return np.asarray(selection, dtype=np.int64)


#: The largest piece of one entry read at a time.
PART_BYTES = 2 << 20


@dataclass(frozen=True)
class EntryPart:
    """``data`` is bytes ``start ..`` of entry ``index`` of key ``key`` (``size`` bytes in all)."""

    key: str
    index: int
    size: int
    start: int
    data: bytes


class EntriesSnapshot:
    """The selected entries of one dataset version, key by key, read in bounded batches."""

    def __init__(
        self, key_names: list[str], fds: list[int], index: np.ndarray, positions: np.ndarray
    ) -> None:
        self.key_names = key_names
        self._fds = fds
        self._index = index
        self._positions = positions
        # A cancelled stream closes the snapshot while a worker thread may still be reading.
        self._lock = threading.Lock()

    def batches(
        self, max_bytes: int = BATCH_BYTES, part: int = PART_BYTES
    ) -> Iterator[list[EntryPart]]:
        """Every present entry, key by key, as parts of at most ``part`` bytes, grouped up to
        ``max_bytes``: a big entry is never read whole."""
        for pos, name in enumerate(self.key_names):
            batch: list[EntryPart] = []
            size = 0
            column = self._index[:, pos, :]
            for entry in self._positions:
                offset, length = (int(v) for v in column[entry])
                if length == 0:
                    continue  # this optional key is absent from the entry
                for start in range(0, length, part):
                    with self._lock:
                        if not self._fds:
                            return
                        data = os.pread(self._fds[pos], min(part, length - start), offset + start)
                    batch.append(EntryPart(name, int(entry), length, start, data))
                    size += len(data)
                    if size >= max_bytes:
                        yield batch
                        batch, size = [], 0
            if batch:
                yield batch

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
